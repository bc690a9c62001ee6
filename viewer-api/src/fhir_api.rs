//! Read-only FHIR for the EHR: `GET /fhir/ImagingStudy?patient=&identifier=&started=&modality=`
//! answers a searchset Bundle of ImagingStudy resources, matched by the query engine.

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use pacs_storage::query::{self, Level, Matcher, Query, QueryKey};
use serde_json::{json, Value};

use crate::access::Grant;
use crate::dicomweb::urls::service_base;
use crate::error::ApiError;
use crate::{blocking, ApiState};

const DEFAULT_COUNT: usize = 50;
const MAX_COUNT: usize = 500;

pub fn routes() -> Router<ApiState> {
    Router::new().route("/fhir/ImagingStudy", get(search))
}

fn key(tag: &str, vr: &str, value: &str) -> Result<QueryKey, ApiError> {
    Ok(QueryKey {
        tag: tag.into(),
        vr: vr.into(),
        matcher: Matcher::parse(vr, value).map_err(|e| ApiError::BadRequest(e.to_string()))?,
    })
}

/// `[system|]value` → value.
fn token_value(v: &str) -> &str {
    v.rsplit_once('|').map_or(v, |(_, value)| value)
}

/// A FHIR date search value (`ge2024-01-01`, `2024-03`, `lt2024-05-01`) as a DICOM date range.
fn date_range(v: &str) -> Result<String, ApiError> {
    let (prefix, date) = match v.get(..2) {
        Some(p @ ("eq" | "ge" | "le" | "gt" | "lt")) => (p, &v[2..]),
        _ => ("eq", v),
    };
    let digits: String = date.chars().filter(|c| c.is_ascii_digit()).collect();
    if !matches!(digits.len(), 4 | 6 | 8) || date.len() > 10 {
        return Err(ApiError::BadRequest(format!(
            "started {v:?} is not [eq|ge|le|gt|lt]YYYY[-MM[-DD]]"
        )));
    }
    let low = match digits.len() {
        4 => format!("{digits}0101"),
        6 => format!("{digits}01"),
        _ => digits.clone(),
    };
    let high = match digits.len() {
        4 => format!("{digits}1231"),
        6 => format!("{digits}31"),
        _ => digits.clone(),
    };
    Ok(match prefix {
        "ge" | "gt" => format!("{low}-"),
        "le" | "lt" => format!("-{high}"),
        _ => format!("{low}-{high}"),
    })
}

async fn search(
    State(s): State<ApiState>,
    Extension(grant): Extension<Grant>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // A patient's search only ever reaches their own studies.
    let mut keys = grant.scope.query_keys();
    let mut count = DEFAULT_COUNT;
    for (name, value) in form_urlencoded::parse(q.unwrap_or_default().as_bytes()) {
        let v = value.trim();
        match name.as_ref() {
            "patient" | "subject" => {
                let id = token_value(v.trim_start_matches("Patient/"));
                keys.push(key("00100020", "LO", id)?);
            }
            "identifier" => {
                let id = token_value(v);
                match id.strip_prefix("urn:oid:") {
                    Some(uid) => keys.push(key("0020000D", "UI", uid)?),
                    None => keys.push(key("00080050", "SH", id)?),
                }
            }
            "started" => keys.push(key("00080020", "DA", &date_range(v)?)?),
            "modality" => keys.push(key("00080061", "CS", token_value(v))?),
            "_count" => {
                count = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_COUNT).contains(n))
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!("_count must be 1..{MAX_COUNT}"))
                    })?
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unsupported search parameter {other:?}: patient, identifier, started, modality, _count"
                )))
            }
        }
    }
    let wado_base = service_base(
        &headers,
        s.config.public_url.as_deref(),
        &s.config.local_addr,
    );
    let fhir_base = wado_base.trim_end_matches("/dicom-web").to_string() + "/fhir";
    let store = s.store.clone();
    let scope = grant.scope.clone();
    let query = Query {
        level: Level::Study,
        keys,
        options: s.config.match_options,
        relational: false,
    };
    let resources = blocking(move || {
        let mut uids = Vec::new();
        store
            .index
            .find(&query, &mut |m| {
                if !scope.admits_match(&m.attributes) {
                    return true;
                }
                if let Some(uid) = m.attributes.get("0020000D").and_then(|a| a.first()) {
                    uids.push(uid.to_string());
                }
                uids.len() < count
            })
            .map_err(|e| match e {
                query::QueryError::Storage(s) => s,
                other => pacs_storage::StorageError::BatchFailed {
                    detail: other.to_string(),
                    out_of_space: false,
                },
            })?;
        Ok(uids
            .iter()
            .filter_map(|uid| {
                pacs_fhir::imaging_study(&store, uid, &wado_base)
                    .ok()
                    .flatten()
                    .map(|r| (uid.clone(), r))
            })
            .collect::<Vec<_>>())
    })
    .await?;
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": resources.len(),
        "entry": resources.into_iter().map(|(uid, r)| json!({
            "fullUrl": format!("{fhir_base}/ImagingStudy/{uid}"),
            "resource": r,
            "search": {"mode": "match"},
        })).collect::<Vec<Value>>(),
    });
    let mut resp = (StatusCode::OK, bundle.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/fhir+json"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fhir_dates_become_dicom_ranges() {
        assert_eq!(date_range("2024-03-05").expect("day"), "20240305-20240305");
        assert_eq!(date_range("ge2024-01-01").expect("ge"), "20240101-");
        assert_eq!(date_range("lt2024").expect("lt"), "-20241231");
        assert_eq!(date_range("2024-03").expect("month"), "20240301-20240331");
        assert!(date_range("yesterday").is_err());
    }
}
