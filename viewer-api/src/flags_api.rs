//! Findings and the reading worklist:
//! - `POST /api/studies/{uid}/flags` (an AI service posting a result: label, score 0..1,
//!   severity, source, optional series/instance) and `GET /api/studies/{uid}/flags`;
//! - `POST` / `DELETE /api/studies/{uid}/read`: mark a study read / unread;
//! - `GET /api/worklist?limit=N`: unread studies, flagged first (most severe, then highest
//!   score), then the most recently updated.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pacs_storage::records::first_value;
use pacs_storage::{Flag, Severity};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::dicomweb::check_uid;
use crate::error::ApiError;
use crate::{blocking, ApiState};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/studies/{study}/flags", post(add).get(list))
        .route("/api/studies/{study}/read", post(read).delete(unread))
        .route("/api/worklist", get(worklist))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewFlag {
    label: String,
    score: f64,
    severity: Severity,
    source: String,
    series_instance_uid: Option<String>,
    sop_instance_uid: Option<String>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn add(
    State(s): State<ApiState>,
    Path(study): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_uid(&study)?;
    let new: NewFlag = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "a flag is {{label, score (0..1), severity (info|low|medium|high|critical), source[, series_instance_uid, sop_instance_uid]}}: {e}"
        ))
    })?;
    if new.label.trim().is_empty() || new.label.len() > 200 {
        return Err(ApiError::BadRequest(
            "label must be 1..200 characters".into(),
        ));
    }
    if new.source.trim().is_empty() || new.source.len() > 200 {
        return Err(ApiError::BadRequest(
            "source must be 1..200 characters".into(),
        ));
    }
    if !(0.0..=1.0).contains(&new.score) {
        return Err(ApiError::BadRequest(format!(
            "score {} is not within 0..1",
            new.score
        )));
    }
    for uid in [&new.series_instance_uid, &new.sop_instance_uid]
        .into_iter()
        .flatten()
    {
        check_uid(uid)?;
    }
    let store = s.store.clone();
    let project = s.config.ai_project.clone();
    let flag = blocking(move || {
        let (mut study, mut new) = (study, new);
        if store.index.study(&study)?.is_none() {
            // A finding on what the AI service was sent de-identified: the original study.
            let Some(project) = project else {
                return Ok(None);
            };
            let mut back = crate::reidentify::Reidentifier::new(&store, &project);
            let Some(original) = back.uid(&study)? else {
                return Ok(None);
            };
            study = original;
            for uid in [&mut new.series_instance_uid, &mut new.sop_instance_uid]
                .into_iter()
                .flatten()
            {
                if let Some(original) = back.uid(uid)? {
                    *uid = original;
                }
            }
            if store.index.study(&study)?.is_none() {
                return Ok(None);
            }
        }
        let flag = Flag {
            id: uuid::Uuid::new_v4().to_string(),
            study_instance_uid: study,
            label: new.label,
            score: new.score,
            severity: new.severity,
            source: new.source,
            series_instance_uid: new.series_instance_uid,
            sop_instance_uid: new.sop_instance_uid,
            created_ms: now_ms(),
        };
        store.flags.add_flag(&flag)?;
        Ok(Some(flag))
    })
    .await?
    .ok_or(ApiError::NotFound("study"))?;
    Ok((StatusCode::CREATED, Json(json!(flag))).into_response())
}

async fn list(
    State(s): State<ApiState>,
    Path(study): Path<String>,
) -> Result<Json<Value>, ApiError> {
    check_uid(&study)?;
    let store = s.store.clone();
    let flags = blocking(move || store.flags.flags(&study)).await?;
    Ok(Json(json!(flags)))
}

async fn set_read(s: ApiState, study: String, read: bool) -> Result<StatusCode, ApiError> {
    check_uid(&study)?;
    let store = s.store.clone();
    let found = blocking(move || {
        if store.index.study(&study)?.is_none() {
            return Ok(false);
        }
        store.flags.mark_read(&study, read)?;
        Ok(true)
    })
    .await?;
    if found {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("study"))
    }
}

async fn read(
    State(s): State<ApiState>,
    Path(study): Path<String>,
) -> Result<StatusCode, ApiError> {
    set_read(s, study, true).await
}

async fn unread(
    State(s): State<ApiState>,
    Path(study): Path<String>,
) -> Result<StatusCode, ApiError> {
    set_read(s, study, false).await
}

#[derive(Debug, Deserialize)]
struct WorklistQuery {
    limit: Option<usize>,
}

async fn worklist(
    State(s): State<ApiState>,
    Query(q): Query<WorklistQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let store = s.store.clone();
    let items = blocking(move || {
        let mut rows = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = store.index.list_studies(after.as_deref(), 1000)?;
            let Some(last) = page.last().cloned() else {
                break;
            };
            for uid in page {
                if store.flags.is_read(&uid)? {
                    continue;
                }
                let Some(study) = store.index.study(&uid)? else {
                    continue;
                };
                let flags = store.flags.flags(&uid)?;
                let top = flags.iter().map(|f| f.severity).max();
                let score = flags.iter().map(|f| f.score).fold(0.0, f64::max);
                rows.push((top, score, study.last_update_ms, study, flags));
            }
            after = Some(last);
        }
        // Flagged first (most severe, highest score), then newest.
        rows.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.total_cmp(&a.1)).then(b.2.cmp(&a.2)));
        Ok(rows
            .into_iter()
            .take(limit)
            .map(|(top, _, _, study, flags)| {
                let a = &study.attributes;
                json!({
                    "study_instance_uid": study.study_instance_uid,
                    "patient_name": first_value(a, "00100010"),
                    "patient_id": first_value(a, "00100020"),
                    "study_date": first_value(a, "00080020"),
                    "description": first_value(a, "00081030"),
                    "modalities": study.modalities,
                    "highest_severity": top,
                    "flags": flags,
                })
            })
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(Json(Value::Array(items)))
}
