//! Absolute URLs for RetrieveURL and BulkDataURI: a client must be able to follow them as
//! given, so they carry the scheme, host and port the client used (or a configured public base).

use axum::http::HeaderMap;

/// Where the DICOMweb service is mounted under the HTTP root.
pub const DICOMWEB_ROOT: &str = "/dicom-web";

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(',').next().unwrap_or(v).trim())
        .filter(|v| !v.is_empty())
}

/// A host value is safe to echo into a URL: no path, userinfo or whitespace.
fn plausible_host(h: &str) -> bool {
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
}

/// The base URL of the DICOMweb service for this request, e.g. `http://127.0.0.1:8080/dicom-web`.
/// Order: configured public URL, `X-Forwarded-Proto/Host` (a proxy in front), then `Host`.
pub fn service_base(headers: &HeaderMap, public_url: Option<&str>, fallback_host: &str) -> String {
    if let Some(base) = public_url {
        return format!("{}{DICOMWEB_ROOT}", base.trim_end_matches('/'));
    }
    let proto = header(headers, "x-forwarded-proto")
        .filter(|p| *p == "http" || *p == "https")
        .unwrap_or("http");
    if let Some(host) = header(headers, "x-forwarded-host").filter(|h| plausible_host(h)) {
        return format!("{proto}://{host}{DICOMWEB_ROOT}");
    }
    let Some(host) = header(headers, "host").filter(|h| plausible_host(h)) else {
        return format!("{proto}://{fallback_host}{DICOMWEB_ROOT}");
    };
    // Some clients (python-requests via dicomweb-client) send Host without the port; the
    // client reached us on our listening port, so name it.
    let has_port = host.rsplit_once(':').is_some_and(|(_, p)| !p.contains(']'));
    let port = fallback_host
        .rsplit_once(':')
        .map(|(_, p)| p)
        .unwrap_or("80");
    if has_port || port == "80" {
        format!("{proto}://{host}{DICOMWEB_ROOT}")
    } else {
        format!("{proto}://{host}:{port}{DICOMWEB_ROOT}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn base_follows_host_proxy_headers_and_configuration() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("127.0.0.1:8042"));
        assert_eq!(
            service_base(&h, None, "x"),
            "http://127.0.0.1:8042/dicom-web"
        );
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert(
            "x-forwarded-host",
            HeaderValue::from_static("pacs.example.org"),
        );
        assert_eq!(
            service_base(&h, None, "x"),
            "https://pacs.example.org/dicom-web"
        );
        assert_eq!(
            service_base(&h, Some("https://img.example.org/"), "x"),
            "https://img.example.org/dicom-web"
        );
        let mut portless = HeaderMap::new();
        portless.insert("host", HeaderValue::from_static("127.0.0.1"));
        assert_eq!(
            service_base(&portless, None, "127.0.0.1:8042"),
            "http://127.0.0.1:8042/dicom-web"
        );
        let mut bad = HeaderMap::new();
        bad.insert("host", HeaderValue::from_static("evil/path?x"));
        assert_eq!(
            service_base(&bad, None, "127.0.0.1:1"),
            "http://127.0.0.1:1/dicom-web"
        );
    }
}
