//! Worker modules beside the server: each reacts to events of the outbox and delivers to a
//! hospital system through the dispatcher (at least once, in order per study, retried, dead
//! letters kept), plus the stability detector that emits the quiet-period events.

pub mod agents;
pub mod ai;
pub mod billing;
pub mod dispatch;
pub mod ehr;
pub mod error;
pub mod order_link;
pub mod owned;
pub mod pharmacy;
pub mod portal;
pub mod priors;
pub mod quality;
mod queue;
pub mod rejected_purge;
pub mod route;
pub mod route_send;
pub mod route_settings;
mod send;
pub mod settings;
pub mod stability;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use pacs_storage::{Event, Store};

pub use error::WorkerError;

/// The base of the absolute URLs workers hand to other systems (the ImagingStudy endpoint,
/// portal links): `public_url` when set, else the scheme and an address this server really
/// serves (`https` with `[tls]`, since the HTTP port then speaks only TLS). A wildcard bind
/// names no address anyone can use: the host name stands in, and the operator is told to set
/// `public_url`.
pub fn public_base(public_url: Option<&str>, local: SocketAddr, https: bool) -> String {
    if let Some(u) = public_url {
        return u.trim_end_matches('/').to_string();
    }
    let scheme = if https { "https" } else { "http" };
    let port = local.port();
    let host = match local.ip() {
        ip if !ip.is_unspecified() => SocketAddr::new(ip, port).to_string(),
        ip => {
            let name = pacs_storage::audit::hostname();
            let host = if name != "-" {
                format!("{name}:{port}")
            } else if ip.is_ipv4() {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port).to_string()
            } else {
                SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port).to_string()
            };
            tracing::warn!(
                bind = %local,
                "HTTP listens on every address, so links and endpoints sent to other systems \
                 name {scheme}://{host}; set public_url to the address they should use"
            );
            host
        }
    };
    format!("{scheme}://{host}")
}

/// The enabled workers of the configuration, with their targets; `public_base` is from
/// `public_base()`.
pub fn configured(
    config: &settings::WorkersConfig,
    public_base: &str,
    share: &ShareSettings,
    profiles: &[pacs_deid::Profile],
) -> Vec<(settings::TargetConfig, std::sync::Arc<dyn Worker>)> {
    let wado_base = format!("{public_base}/dicom-web");
    let enabled = |t: &Option<settings::TargetConfig>| t.clone().filter(|t| t.enabled);
    let mut out: Vec<(settings::TargetConfig, std::sync::Arc<dyn Worker>)> = Vec::new();
    if let Some(t) = enabled(&config.ehr) {
        let w = ehr::EhrWorker {
            fhir_base: t.url.clone(),
            bearer: t.token.clone(),
            wado_base,
        };
        out.push((t, std::sync::Arc::new(w)));
    }
    if let Some(t) = enabled(&config.billing) {
        let w = billing::BillingWorker {
            url: t.url.clone(),
            bearer: t.token.clone(),
        };
        out.push((t, std::sync::Arc::new(w)));
    }
    if let Some(t) = enabled(&config.portal) {
        let w = portal::PortalWorker {
            url: t.url.clone(),
            bearer: t.token.clone(),
            secret: share.secret.clone(),
            public_base: public_base.to_string(),
            link_ttl_secs: share.ttl_secs,
        };
        out.push((t, std::sync::Arc::new(w)));
    }
    if let Some(t) = enabled(&config.ai) {
        let deid = t.profile.as_ref().and_then(|name| {
            let profile = profiles.iter().find(|p| &p.name == name)?.clone();
            Some(pacs_viewer_api::Deidentify {
                profile,
                project: t.project.clone().unwrap_or_else(|| "ai".into()),
                secret: share.secret.clone(),
            })
        });
        let w = ai::AiWorker {
            url: t.url.clone(),
            bearer: t.token.clone(),
            deid,
        };
        out.push((t, std::sync::Arc::new(w)));
    }
    if let Some(true) = config.quality {
        // Local analyzers: no target; retried like the others if the store fails.
        let t = settings::TargetConfig {
            enabled: true,
            url: "local:".into(),
            token: None,
            max_attempts: Some(3),
            backoff_ms: Some(1000),
            max_backoff_ms: Some(10_000),
            timeout_secs: None,
            max_in_flight: Some(2),
            profile: None,
            project: None,
        };
        out.push((t, std::sync::Arc::new(quality::QualityWorker)));
    }
    if let Some(t) = enabled(&config.pharmacy) {
        let w = pharmacy::PharmacyWorker {
            url: t.url.clone(),
            bearer: t.token.clone(),
        };
        out.push((t, std::sync::Arc::new(w)));
    }
    out
}

/// The key and lifetime of portal share links.
pub struct ShareSettings {
    pub secret: Vec<u8>,
    pub ttl_secs: u64,
}

/// The share-link key: `<data>/share.key`, made once (32 random bytes, owner-only).
pub fn share_secret(data: &std::path::Path) -> Result<Vec<u8>, crate::error::AppError> {
    let path = data.join("share.key");
    if let Ok(key) = std::fs::read(&path) {
        if key.len() >= 32 {
            return Ok(key);
        }
    }
    let mut key = uuid::Uuid::new_v4().as_bytes().to_vec();
    key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(crate::error::AppError::Io)?;
    f.write_all(&key).map_err(crate::error::AppError::Io)?;
    f.sync_all().map_err(crate::error::AppError::Io)?;
    Ok(key)
}

/// One request to a target system.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub method: reqwest::Method,
    pub url: String,
    pub content_type: String,
    pub body: Vec<u8>,
    pub bearer: Option<String>,
}

impl Outgoing {
    /// A FHIR JSON request.
    pub fn fhir(
        method: reqwest::Method,
        url: String,
        body: &serde_json::Value,
        bearer: Option<String>,
    ) -> Outgoing {
        Outgoing {
            method,
            url,
            content_type: "application/fhir+json".into(),
            body: body.to_string().into_bytes(),
            bearer,
        }
    }

    /// A FHIR PATCH with a JSON Patch document (RFC 6902): changes only the fields named.
    pub fn json_patch(url: String, ops: &serde_json::Value, bearer: Option<String>) -> Outgoing {
        Outgoing {
            method: reqwest::Method::PATCH,
            url,
            content_type: "application/json-patch+json".into(),
            body: ops.to_string().into_bytes(),
            bearer,
        }
    }
}

/// What a worker makes of one event.
#[derive(Debug, Clone)]
pub enum Prepared {
    Send(Outgoing),
    /// Handled here, nothing to send (e.g. built-in analyzers writing flags).
    Done,
    /// Nothing to send for this event.
    Skip,
    /// Deliberately not sent; the reason is recorded and listed (`state=held`).
    Hold(String),
}

/// A worker: which events it wants and what it sends for one (built on a blocking thread, with
/// the store at hand).
pub trait Worker: Send + Sync {
    fn name(&self) -> &str;
    /// CPU- or I/O-heavy work (decoding, whole-series uploads) that waits while instances are
    /// arriving, so it does not slow ingest; light workers deliver at once.
    fn yields_to_ingest(&self) -> bool {
        false
    }
    fn wants(&self, event: &Event) -> bool;
    fn prepare(&self, event: &Event, store: &Store) -> Result<Prepared, WorkerError>;
}

/// The headers (no pixels) of the first instance of each series of a study: where the data
/// set attributes the index does not keep (sequences, contrast, allergies) are read from.
pub fn study_headers(
    store: &Store,
    study_uid: &str,
) -> Result<Vec<dicom_object::DefaultDicomObject>, WorkerError> {
    let mut out = Vec::new();
    for s in store.index.series_uids(study_uid)? {
        for sop in store.index.instance_uids(&s, 1)? {
            if let Some(rec) = store.index.instance(&sop)? {
                out.push(pacs_storage::part10::read_instance(
                    store.blobs.as_ref(),
                    &rec.blob,
                    true,
                )?);
            }
        }
    }
    Ok(out)
}

/// The instance records of a series, in index order.
pub fn series_records(
    store: &Store,
    series: &str,
) -> Result<Vec<pacs_storage::InstanceRecord>, WorkerError> {
    Ok(store.index.series_instances(series)?)
}

/// A text attribute of a data set, trimmed; None when absent or empty.
pub fn text(obj: &dicom_object::InMemDicomObject, tag: dicom_core::Tag) -> Option<String> {
    obj.get(tag)
        .and_then(|e| e.value().to_str().ok())
        .map(|v| v.trim_end_matches(['\0', ' ']).trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The FHIR subject reference of a study's patient (by identifier).
pub fn subject(attrs: &pacs_storage::records::Attributes) -> serde_json::Value {
    use pacs_storage::records::first_value;
    let issuer = first_value(attrs, "00100021");
    serde_json::json!({
        "identifier": {
            "system": if issuer.is_empty() { "urn:pacs:patient-id".to_string() } else { format!("urn:pacs:issuer:{issuer}") },
            "value": first_value(attrs, "00100020"),
        },
        "display": first_value(attrs, "00100010"),
    })
}

#[cfg(test)]
mod tests {
    use super::public_base;

    #[test]
    fn absolute_urls_name_a_served_address_and_scheme() {
        let local = |s: &str| s.parse().expect("address");
        assert_eq!(
            public_base(None, local("127.0.0.1:8080"), false),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            public_base(None, local("127.0.0.1:8443"), true),
            "https://127.0.0.1:8443"
        );
        assert_eq!(
            public_base(None, local("[::1]:8443"), true),
            "https://[::1]:8443"
        );
        assert_eq!(
            public_base(
                Some("https://pacs.example.org/"),
                local("0.0.0.0:80"),
                false
            ),
            "https://pacs.example.org"
        );
        let wildcard = public_base(None, local("0.0.0.0:8443"), true);
        assert!(wildcard.starts_with("https://"), "{wildcard}");
        assert!(wildcard.ends_with(":8443"), "{wildcard}");
        assert!(!wildcard.contains("0.0.0.0"), "{wildcard}");
    }
}
