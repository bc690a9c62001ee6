//! Corrections over HTTP (admin only, like every `/api` route not classified otherwise):
//! `PATCH /api/studies/{study}` (routed in `api`, beside its GET), `PATCH /api/patients/{patient}`, `POST /api/patients/merge`,
//! `POST /api/series/{series}/move`, `POST /api/studies/{study}/split`, and the prior
//! versions of an instance (`GET /api/instances/{instance}/versions[/{n}]`). The audit record
//! of each carries what changed, before and after.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use pacs_storage::audit::Interface;
use pacs_storage::corrections::{self, AttributeEdits, Corrected};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::access::guard::AuditNote;
use crate::error::ApiError;
use crate::{off_runtime, ApiState};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/studies/{study}/split", post(split_study))
        .route("/api/patients/{patient}", patch(update_patient))
        .route("/api/patients/merge", post(merge_patients))
        .route("/api/series/{series}/move", post(move_series))
        .route("/api/instances/{instance}/versions", get(versions))
        .route("/api/instances/{instance}/versions/{n}", get(version_file))
}

/// The answer: the study as it is now, and an audit note with before and after.
fn answer(s: &ApiState, action: &'static str, done: Corrected) -> Result<Response, ApiError> {
    let study = match done.studies.first() {
        Some(uid) => s.store.index.study(uid)?,
        None => None,
    };
    let body = json!({
        "study": study,
        "studies": done.studies,
        "instances": done.instances,
        "before": done.before,
        "after": done.after,
    });
    let mut response = Json(body).into_response();
    response.extensions_mut().insert(AuditNote {
        study_uid: done.studies.first().cloned(),
        detail: Some(done.audit_detail()),
        action: Some(action),
        ..AuditNote::default()
    });
    Ok(response)
}

pub(crate) async fn update_study(
    State(s): State<ApiState>,
    Path(study): Path<String>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let edits = AttributeEdits::from_dicom_json(&body)?;
    off_runtime(move || {
        let done = corrections::update_study(&s.store, &study, &edits, Interface::Http)?;
        answer(&s, "study.update", done)
    })
    .await
}

#[derive(Debug, Deserialize)]
struct IssuerParam {
    issuer: Option<String>,
}

async fn update_patient(
    State(s): State<ApiState>,
    Path(patient_id): Path<String>,
    Query(q): Query<IssuerParam>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let edits = AttributeEdits::from_dicom_json(&body)?;
    off_runtime(move || {
        let key = corrections::find_patient(&s.store, &patient_id, q.issuer.as_deref())?
            .ok_or_else(|| ApiError::Missing(format!("patient {patient_id}")))?;
        let done = corrections::update_patient(&s.store, &key, &edits, Interface::Http)?;
        answer(&s, "patient.update", done)
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MergeRequest {
    from: String,
    into: String,
    #[serde(default)]
    from_issuer: Option<String>,
    #[serde(default)]
    into_issuer: Option<String>,
}

async fn merge_patients(
    State(s): State<ApiState>,
    Json(req): Json<MergeRequest>,
) -> Result<Response, ApiError> {
    off_runtime(move || {
        let find = |id: &str, issuer: Option<&str>, role: &str| {
            corrections::find_patient(&s.store, id, issuer)?
                .ok_or_else(|| ApiError::Missing(format!("patient {id} ({role})")))
        };
        let from = find(&req.from, req.from_issuer.as_deref(), "from")?;
        let into = find(&req.into, req.into_issuer.as_deref(), "into")?;
        let done = corrections::merge_patients(&s.store, &from, &into, Interface::Http)?;
        answer(&s, "patient.merge", done)
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveRequest {
    study: String,
}

async fn move_series(
    State(s): State<ApiState>,
    Path(series): Path<String>,
    Json(req): Json<MoveRequest>,
) -> Result<Response, ApiError> {
    crate::dicomweb::check_uid(&req.study)?;
    off_runtime(move || {
        let done = corrections::move_series(&s.store, &series, &req.study, Interface::Http)?;
        answer(&s, "series.move", done)
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SplitRequest {
    series: Vec<String>,
}

async fn split_study(
    State(s): State<ApiState>,
    Path(study): Path<String>,
    Json(req): Json<SplitRequest>,
) -> Result<Response, ApiError> {
    off_runtime(move || {
        let done = corrections::split_study(&s.store, &study, &req.series, Interface::Http)?;
        answer(&s, "study.split", done)
    })
    .await
}

/// The versions an instance had before corrections, oldest first, and the current one.
async fn versions(
    State(s): State<ApiState>,
    Path(uid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let rec = off_runtime(move || s.store.index.instance(&uid))
        .await?
        .ok_or(ApiError::NotFound("instance"))?;
    Ok(Json(json!({
        "sop_instance_uid": rec.sop_instance_uid,
        "current": {"size": rec.size, "sha256": rec.sha256},
        "versions": rec.versions.iter().enumerate().map(|(n, v)| json!({
            "version": n + 1,
            "size": v.size,
            "sha256": v.sha256,
            "transfer_syntax_uid": v.transfer_syntax_uid,
            "replaced_ms": v.replaced_ms,
            "reason": v.reason,
        })).collect::<Vec<_>>(),
    })))
}

/// A prior version's file as it was stored (application/dicom), checked against its hash.
async fn version_file(
    State(s): State<ApiState>,
    Path((uid, n)): Path<(String, usize)>,
) -> Result<Response, ApiError> {
    let bytes = off_runtime(move || {
        let rec = s
            .store
            .index
            .instance(&uid)?
            .ok_or(ApiError::NotFound("instance"))?;
        let version = n
            .checked_sub(1)
            .and_then(|i| rec.versions.get(i))
            .ok_or(ApiError::NotFound("version"))?;
        // Read as the record it was, so the integrity check covers the old file too.
        let mut old = rec.clone();
        old.blob = version.blob.clone();
        old.size = version.size;
        old.sha256 = version.sha256.clone();
        old.versions.clear();
        let mut reader = s.store.open_verified(&old, Interface::Http)?;
        let mut out = Vec::with_capacity(usize::try_from(version.size).unwrap_or(0));
        std::io::Read::read_to_end(&mut reader, &mut out)
            .map_err(|e| ApiError::Internal(format!("reading version {n} of {uid}: {e}")))?;
        if let Some(problem) = reader.problem_found() {
            return Err(ApiError::Internal(format!(
                "version {n} of {uid} failed its integrity check: {problem}"
            )));
        }
        Ok::<_, ApiError>(out)
    })
    .await?;
    let mut r = Response::new(Body::from(bytes));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/dicom"),
    );
    Ok(r)
}
