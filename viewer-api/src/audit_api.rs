//! `GET /api/audit` (admin): the audit trail, filtered and paged, as JSON, JSON lines or
//! RFC 5424 syslog lines carrying DICOM PS3.15 audit messages (IHE ATNA), and
//! `GET /api/audit/verify`: the hash chain checked now.

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use pacs_storage::audit::{to_json_line, to_syslog, AuditFilter, Interface, Outcome};
use serde_json::json;

use crate::error::ApiError;
use crate::{blocking, ApiState};

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 10_000;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/audit", get(list))
        .route("/api/audit/verify", get(verify))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    JsonLines,
    Syslog,
}

struct Params {
    filter: AuditFilter,
    after: u64,
    limit: usize,
    newest_first: bool,
    format: Format,
}

fn parse(q: &str) -> Result<Params, ApiError> {
    let mut p = Params {
        filter: AuditFilter::default(),
        after: 0,
        limit: DEFAULT_LIMIT,
        newest_first: false,
        format: Format::Json,
    };
    for (name, value) in form_urlencoded::parse(q.as_bytes()) {
        let v = value.into_owned();
        match name.as_ref() {
            "user" => p.filter.user = Some(v),
            "action" => p.filter.action = Some(v),
            "patient_id" => p.filter.patient_id = Some(v),
            "study" => p.filter.study_uid = Some(v),
            "since" => p.filter.since = Some(v),
            "until" => p.filter.until = Some(v),
            "outcome" => {
                p.filter.outcome = Some(match v.as_str() {
                    "success" => Outcome::Success,
                    "denied" => Outcome::Denied,
                    "failure" => Outcome::Failure,
                    _ => {
                        return Err(ApiError::BadRequest(format!(
                            "outcome {v:?} is not success, denied or failure"
                        )))
                    }
                })
            }
            "interface" => {
                p.filter.interface = Some(match v.as_str() {
                    "http" => Interface::Http,
                    "dimse" => Interface::Dimse,
                    "cli" => Interface::Cli,
                    "hl7" => Interface::Hl7,
                    _ => {
                        return Err(ApiError::BadRequest(format!(
                            "interface {v:?} is not http, dimse, cli or hl7"
                        )))
                    }
                })
            }
            "after" => {
                p.after = v
                    .parse()
                    .map_err(|_| ApiError::BadRequest(format!("after {v:?} is not a number")))?
            }
            "limit" => {
                let n: usize = v
                    .parse()
                    .map_err(|_| ApiError::BadRequest(format!("limit {v:?} is not a number")))?;
                p.limit = n.clamp(1, MAX_LIMIT);
            }
            "order" => {
                p.newest_first = match v.as_str() {
                    "newest" => true,
                    "oldest" => false,
                    _ => {
                        return Err(ApiError::BadRequest(format!(
                            "order {v:?} is not newest or oldest"
                        )))
                    }
                }
            }
            "format" => {
                p.format = match v.as_str() {
                    "json" => Format::Json,
                    "jsonl" => Format::JsonLines,
                    "syslog" => Format::Syslog,
                    _ => {
                        return Err(ApiError::BadRequest(format!(
                            "format {v:?} is not json, jsonl or syslog"
                        )))
                    }
                }
            }
            other => return Err(ApiError::BadRequest(format!("unknown parameter {other:?}"))),
        }
    }
    Ok(p)
}

async fn list(State(s): State<ApiState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let p = parse(q.as_deref().unwrap_or_default())?;
    let audit = s.store.audit.clone();
    let filter = p.filter.clone();
    let (after, limit, newest) = (p.after, p.limit, p.newest_first);
    let records = blocking(move || {
        // Everything recorded before this request is included.
        audit.flush().map_err(storage_error)?;
        audit
            .query(&filter, after, limit, newest)
            .map_err(storage_error)
    })
    .await?;
    let text = |body: String, ct: &'static str| {
        let mut r = body.into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        r
    };
    Ok(match p.format {
        Format::Json => {
            let next = records.last().map(|r| r.seq);
            Json(json!({ "records": records, "next_after": next })).into_response()
        }
        Format::JsonLines => text(
            records.iter().map(|r| to_json_line(r) + "\n").collect(),
            "application/x-ndjson",
        ),
        Format::Syslog => {
            let host = pacs_storage::audit::hostname();
            text(
                records
                    .iter()
                    .map(|r| to_syslog(r, &host, "pacs") + "\n")
                    .collect(),
                "text/plain; charset=utf-8",
            )
        }
    })
}

async fn verify(State(s): State<ApiState>) -> Result<Response, ApiError> {
    let audit = s.store.audit.clone();
    let report = blocking(move || {
        audit.flush().map_err(storage_error)?;
        audit.verify().map_err(storage_error)
    })
    .await?;
    let problems: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
    Ok(Json(json!({
        "records": report.records,
        "ok": problems.is_empty(),
        "problems": problems,
    }))
    .into_response())
}

fn storage_error(e: pacs_storage::audit::AuditError) -> pacs_storage::StorageError {
    pacs_storage::StorageError::Audit(e.to_string())
}
