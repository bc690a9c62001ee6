//! Instances hidden by IOCM rejection notes (admin only, like every `/api` route not
//! classified otherwise): `GET /api/rejected?study=&note=&limit=` lists them,
//! `POST /api/rejected/restore` puts them back, `POST /api/rejected/purge` deletes them for
//! good. The POST bodies name what they act on: `{"study": UID}`, `{"note": KOS UID}`,
//! `{"instances": [UID, ...]}` and, for a purge, `{"older_than_days": N}`; at least one.

use std::time::{Duration, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pacs_storage::audit::rfc3339_millis;
use pacs_storage::records::first_value;
use pacs_storage::rejection::RejectedInstance;
use pacs_storage::rejection_admin::{self, Selection};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::access::guard::AuditNote;
use crate::error::ApiError;
use crate::{off_runtime, ApiState};

/// Default and largest page of the listing.
const LIST_DEFAULT: usize = 1000;
const LIST_MAX: usize = 10_000;
const DAY_MS: u64 = 86_400_000;
/// UIDs named in a purge's audit record (the count is always there).
const AUDIT_UIDS: usize = 100;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/rejected", get(list))
        .route("/api/rejected/restore", post(restore))
        .route("/api/rejected/purge", post(purge))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    study: Option<String>,
    note: Option<String>,
    limit: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Target {
    study: Option<String>,
    note: Option<String>,
    instances: Option<Vec<String>>,
    older_than_days: Option<f64>,
}

impl Target {
    fn selection(self, now_ms: u64) -> Result<Selection, ApiError> {
        if self.study.is_none()
            && self.note.is_none()
            && self.instances.is_none()
            && self.older_than_days.is_none()
        {
            return Err(ApiError::BadRequest(
                "name what to act on: study, note, instances or older_than_days".into(),
            ));
        }
        let rejected_before_ms = match self.older_than_days {
            Some(d) if d.is_finite() && d >= 0.0 => {
                Some(now_ms.saturating_sub((d * DAY_MS as f64) as u64))
            }
            Some(d) => {
                return Err(ApiError::BadRequest(format!(
                    "older_than_days must be a number of days, not {d}"
                )))
            }
            None => None,
        };
        Ok(Selection {
            study_instance_uid: self.study,
            note_sop_instance_uid: self.note,
            sop_instance_uids: self.instances,
            rejected_before_ms,
        })
    }
}

fn describe(r: &RejectedInstance) -> Value {
    let rec = &r.record;
    json!({
        "sop_instance_uid": rec.sop_instance_uid,
        "sop_class_uid": rec.sop_class_uid,
        "series_instance_uid": rec.series_instance_uid,
        "study_instance_uid": rec.study_instance_uid,
        "patient_id": first_value(&r.patient, "00100020"),
        "patient_name": first_value(&r.patient, "00100010"),
        "bytes": rec.size,
        "reason": {
            "code": r.reason.code_value(),
            "scheme": "DCM",
            "meaning": r.reason.meaning(),
        },
        "note": r.note_sop_instance_uid,
        "rejected_by": r.rejected_by,
        "rejected_at": rfc3339_millis(UNIX_EPOCH + Duration::from_millis(r.rejected_ms)),
    })
}

async fn list(State(s): State<ApiState>, Query(q): Query<ListQuery>) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(LIST_DEFAULT).clamp(1, LIST_MAX);
    let selection = Selection {
        study_instance_uid: q.study,
        note_sop_instance_uid: q.note,
        ..Selection::default()
    };
    let found = off_runtime(move || rejection_admin::select(&s.store, &selection, limit)).await?;
    let items: Vec<Value> = found.iter().map(describe).collect();
    Ok(Json(json!({"count": items.len(), "instances": items})).into_response())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn restore(
    State(s): State<ApiState>,
    Json(target): Json<Target>,
) -> Result<Response, ApiError> {
    if target.older_than_days.is_some() {
        return Err(ApiError::BadRequest(
            "older_than_days selects what to purge; restore by study, note or instances".into(),
        ));
    }
    let selection = target.selection(now_ms())?;
    let study = selection.study_instance_uid.clone();
    let restored = off_runtime(move || rejection_admin::restore(&s.store, &selection)).await?;
    if restored.is_empty() {
        return Err(ApiError::Missing(
            "rejected instances matching the request".into(),
        ));
    }
    let mut r = Json(json!({"restored": restored.len(), "instances": restored})).into_response();
    r.extensions_mut().insert(AuditNote {
        action: Some("instance.restore"),
        study_uid: study,
        detail: Some(format!("{} rejected instances restored", restored.len())),
        ..AuditNote::default()
    });
    Ok(r)
}

async fn purge(
    State(s): State<ApiState>,
    Json(target): Json<Target>,
) -> Result<Response, ApiError> {
    let selection = target.selection(now_ms())?;
    let study = selection.study_instance_uid.clone();
    let purged = off_runtime(move || rejection_admin::purge(&s.store, &selection)).await?;
    let uids: Vec<&str> = purged
        .iter()
        .map(|r| r.record.sop_instance_uid.as_str())
        .collect();
    let mut r = Json(json!({"purged": uids.len(), "instances": uids})).into_response();
    r.extensions_mut().insert(AuditNote {
        action: Some("instance.purge"),
        study_uid: study,
        detail: Some(format!(
            "{} rejected instances deleted for good: {}{}",
            uids.len(),
            uids[..uids.len().min(AUDIT_UIDS)].join(", "),
            if uids.len() > AUDIT_UIDS { ", ..." } else { "" }
        )),
        ..AuditNote::default()
    });
    Ok(r)
}
