//! Media types of DICOMweb: lenient `Accept` parsing (PS3.18 8.7) and the media type of each
//! compressed transfer syntax (PS3.18 Table 8.7.3-2).

/// Explicit VR Little Endian: the default transfer syntax of WADO-RS (PS3.18 8.7.3.3).
pub const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

/// One media range of an Accept header.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaRange {
    /// Lower-cased `type/subtype`.
    pub mime: String,
    /// Lower-cased `type=` parameter of multipart ranges, unquoted.
    pub part_type: Option<String>,
    /// `transfer-syntax=` parameter, unquoted (`*` = as stored).
    pub transfer_syntax: Option<String>,
    pub q: f32,
}

impl MediaRange {
    pub fn is_any(&self) -> bool {
        self.mime == "*/*"
    }
}

/// Split at `sep` outside double quotes.
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Parse an Accept header into media ranges, best first (stable for equal q). Malformed
/// ranges are skipped; no header means `*/*`.
pub fn parse_accept(header: Option<&str>) -> Vec<MediaRange> {
    let Some(header) = header.filter(|h| !h.trim().is_empty()) else {
        return vec![MediaRange {
            mime: "*/*".into(),
            part_type: None,
            transfer_syntax: None,
            q: 1.0,
        }];
    };
    let mut out: Vec<MediaRange> = split_unquoted(header, ',')
        .into_iter()
        .filter_map(parse_range)
        .filter(|r| r.q > 0.0)
        .collect();
    out.sort_by(|a, b| b.q.total_cmp(&a.q));
    out
}

fn parse_range(text: &str) -> Option<MediaRange> {
    let mut fields = split_unquoted(text, ';').into_iter();
    let mime = fields.next()?.trim().to_ascii_lowercase();
    if !mime.contains('/') {
        return None;
    }
    let mut range = MediaRange {
        mime,
        part_type: None,
        transfer_syntax: None,
        q: 1.0,
    };
    for field in fields {
        let Some((name, value)) = field.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"').trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "type" => range.part_type = Some(value.to_ascii_lowercase()),
            "transfer-syntax" => range.transfer_syntax = Some(value.to_string()),
            "q" => range.q = value.parse().unwrap_or(1.0),
            _ => {}
        }
    }
    Some(range)
}

/// 406 unless the request's Accept allows DICOM JSON (`what` names the resource).
pub fn require_json(
    headers: &axum::http::HeaderMap,
    what: &str,
) -> Result<(), crate::error::ApiError> {
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let ok = parse_accept(accept).iter().any(|r| {
        matches!(
            r.mime.as_str(),
            "application/dicom+json" | "application/json" | "application/*" | "*/*"
        )
    });
    if ok {
        Ok(())
    } else {
        Err(crate::error::ApiError::NotAcceptable(format!(
            "{what} are available as application/dicom+json"
        )))
    }
}

/// A Content-Type header as its lower-cased media type and its parameters (names lower-cased,
/// values unquoted).
pub fn parse_content_type(text: &str) -> (String, std::collections::HashMap<String, String>) {
    let mut fields = split_unquoted(text, ';').into_iter();
    let mime = fields
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let params = fields
        .filter_map(|f| f.split_once('='))
        .map(|(n, v)| {
            (
                n.trim().to_ascii_lowercase(),
                v.trim().trim_matches('"').to_string(),
            )
        })
        .collect();
    (mime, params)
}

/// The media type frames of a compressed transfer syntax are sent as (PS3.18 Table 8.7.3-2).
pub fn frame_media_type(transfer_syntax: &str) -> &'static str {
    match transfer_syntax {
        "1.2.840.10008.1.2.4.50"
        | "1.2.840.10008.1.2.4.51"
        | "1.2.840.10008.1.2.4.57"
        | "1.2.840.10008.1.2.4.70" => "image/jpeg",
        "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => "image/jls",
        "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => "image/jp2",
        "1.2.840.10008.1.2.4.92" | "1.2.840.10008.1.2.4.93" => "image/jpx",
        "1.2.840.10008.1.2.4.201" | "1.2.840.10008.1.2.4.202" | "1.2.840.10008.1.2.4.203" => {
            "image/jphc"
        }
        "1.2.840.10008.1.2.5" => "image/dicom-rle",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_is_parsed_leniently() {
        let r = parse_accept(Some(
            "multipart/related; type=\"application/dicom\"; transfer-syntax=*, */*;q=0.1",
        ));
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].mime, "multipart/related");
        assert_eq!(r[0].part_type.as_deref(), Some("application/dicom"));
        assert_eq!(r[0].transfer_syntax.as_deref(), Some("*"));
        assert!(r[1].is_any());

        let r = parse_accept(Some(
            "application/json;q=0.5, multipart/related;type=application/octet-stream;transfer-syntax=1.2.840.10008.1.2.1",
        ));
        assert_eq!(r[0].part_type.as_deref(), Some("application/octet-stream"));
        assert_eq!(r[0].transfer_syntax.as_deref(), Some(EXPLICIT_LE));
        assert_eq!(r[1].mime, "application/json");

        assert!(parse_accept(None)[0].is_any());
        assert!(parse_accept(Some("garbage, text/html;q=0")).is_empty());
    }
}
