//! The change feed and the event delivery API:
//! - `GET /api/changefeed?offset=N&limit=M`: instance creations and deletions in commit order
//!   (sequence, timestamp, action, state, UIDs), for pull-style consumers;
//! - `GET /api/outbox?offset=N&limit=M`: every event (stability, study deletion too);
//! - `GET /api/events?worker=W&state=S&after=SEQ&limit=M`: deliveries of events to workers
//!   (across workers, `after=WORKER:SEQ` continues from a page's last delivery);
//! - `POST /api/events/{worker}/{seq}/retry`: put a dead letter back in the queue.

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use pacs_storage::{DeliveryState, EventKind};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::{blocking, ApiState};

const MAX_PAGE: usize = 1000;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/changefeed", get(changefeed))
        .route("/api/changefeed/latest", get(latest))
        .route("/api/outbox", get(outbox))
        .route("/api/events", get(events))
        .route("/api/events/{worker}/{seq}/retry", post(retry))
}

#[derive(Debug, Deserialize)]
struct FeedQuery {
    offset: Option<u64>,
    limit: Option<usize>,
}

fn page(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit.unwrap_or(100) {
        0 => Err(ApiError::BadRequest("limit must be at least 1".into())),
        n if n > MAX_PAGE => Err(ApiError::BadRequest(format!(
            "limit must be at most {MAX_PAGE}"
        ))),
        n => Ok(n),
    }
}

fn timestamp(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Instance-level entries after `offset`: create (state current, or deleted/replaced when a
/// later change superseded it) and delete.
async fn changefeed(
    State(s): State<ApiState>,
    Query(q): Query<FeedQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = page(q.limit)?;
    let offset = q.offset.unwrap_or(0);
    let store = s.store.clone();
    let entries = blocking(move || {
        let mut out = Vec::new();
        let mut after = offset;
        loop {
            let batch = store.outbox.events_after(after, MAX_PAGE)?;
            let Some(last) = batch.last() else { break };
            after = last.seq;
            for e in batch {
                let (Some(sop), Some(series)) = (&e.sop_instance_uid, &e.series_instance_uid)
                else {
                    continue;
                };
                let state = match e.kind {
                    EventKind::InstanceStored => match store.index.instance(sop)? {
                        Some(rec) if rec.received_ms <= e.time_ms => "current",
                        Some(_) => "replaced",
                        None => "deleted",
                    },
                    _ => "deleted",
                };
                out.push(json!({
                    "sequence": e.seq,
                    "timestamp": timestamp(e.time_ms),
                    "action": e.kind.action(),
                    "state": state,
                    "studyInstanceUid": e.study_instance_uid,
                    "seriesInstanceUid": series,
                    "sopInstanceUid": sop,
                }));
                if out.len() == limit {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    })
    .await?;
    Ok(Json(Value::Array(entries)))
}

/// Every event after `offset` (all kinds, including stability and study deletion).
async fn outbox(
    State(s): State<ApiState>,
    Query(q): Query<FeedQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = page(q.limit)?;
    let store = s.store.clone();
    let events = blocking(move || store.outbox.events_after(q.offset.unwrap_or(0), limit)).await?;
    Ok(Json(json!(events)))
}

async fn latest(State(s): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let store = s.store.clone();
    let seq = blocking(move || store.outbox.last_seq()).await?;
    Ok(Json(json!({ "sequence": seq })))
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    worker: Option<String>,
    state: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

/// Where a page of deliveries starts: after this (worker, seq). Deliveries are ordered by
/// worker, then sequence number, and sequence numbers repeat across workers, so without
/// `worker` the cursor must name both (`WORKER:SEQ`, the last delivery of the previous page);
/// with `worker`, a bare sequence number is enough.
fn cursor(worker: Option<&str>, after: Option<&str>) -> Result<Option<(String, u64)>, ApiError> {
    let Some(after) = after.map(str::trim).filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    let seq = |s: &str| {
        s.parse::<u64>().map_err(|_| {
            ApiError::BadRequest(format!("after {after:?}: {s:?} is not a sequence number"))
        })
    };
    match (after.rsplit_once(':'), worker) {
        (Some((w, _)), Some(worker)) if w != worker => Err(ApiError::BadRequest(format!(
            "after {after:?} names worker {w:?}, the query names {worker:?}"
        ))),
        (Some((w, s)), _) if !w.is_empty() => Ok(Some((w.to_string(), seq(s)?))),
        (None, Some(worker)) => Ok(Some((worker.to_string(), seq(after)?))),
        _ => Err(ApiError::BadRequest(format!(
            "after {after:?} without worker must be WORKER:SEQ (the last delivery's worker and seq)"
        ))),
    }
}

fn parse_state(s: &str) -> Result<DeliveryState, ApiError> {
    match s {
        "pending" => Ok(DeliveryState::Pending),
        "delivered" => Ok(DeliveryState::Delivered),
        "dead" => Ok(DeliveryState::Dead),
        "skipped" => Ok(DeliveryState::Skipped),
        "held" => Ok(DeliveryState::Held),
        other => Err(ApiError::BadRequest(format!(
            "state {other:?} is not pending, delivered, dead, skipped or held"
        ))),
    }
}

/// Deliveries, filtered by worker and state, paged by (worker, seq).
async fn events(
    State(s): State<ApiState>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = page(q.limit)?;
    let state = q.state.as_deref().map(parse_state).transpose()?;
    let start = cursor(q.worker.as_deref(), q.after.as_deref())?;
    let store = s.store.clone();
    let found = blocking(move || {
        let mut out = Vec::new();
        let mut after: Option<(String, u64)> = start;
        loop {
            let batch = store.outbox.deliveries(
                q.worker.as_deref(),
                after.as_ref().map(|(w, s)| (w.as_str(), *s)),
                MAX_PAGE,
            )?;
            let Some(last) = batch.last() else { break };
            after = Some((last.worker.clone(), last.seq));
            let full = batch.len() < MAX_PAGE;
            out.extend(
                batch
                    .into_iter()
                    .filter(|d| state.is_none_or(|s| d.state == s)),
            );
            if out.len() >= limit || full {
                break;
            }
        }
        out.truncate(limit);
        Ok(out)
    })
    .await?;
    Ok(Json(json!(found)))
}

/// Put a dead (or any) delivery back to pending, to be tried again now.
async fn retry(
    State(s): State<ApiState>,
    Path((worker, seq)): Path<(String, u64)>,
) -> Result<Json<Value>, ApiError> {
    let store = s.store.clone();
    let updated = blocking(move || store.outbox.retry(&worker, seq)).await?;
    updated
        .map(|d| Json(json!(d)))
        .ok_or(ApiError::NotFound("delivery"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn event_cursors_name_the_worker_when_the_query_does_not() {
        use super::cursor;
        assert_eq!(
            cursor(Some("ehr"), Some("5")).ok(),
            Some(Some(("ehr".into(), 5)))
        );
        assert_eq!(
            cursor(None, Some("ehr:5")).ok(),
            Some(Some(("ehr".into(), 5)))
        );
        assert_eq!(
            cursor(Some("ehr"), Some("ehr:5")).ok(),
            Some(Some(("ehr".into(), 5)))
        );
        assert_eq!(cursor(None, None).ok(), Some(None));
        assert!(cursor(None, Some("5")).is_err());
        assert!(cursor(Some("ehr"), Some("billing:5")).is_err());
        assert!(cursor(None, Some("ehr:x")).is_err());
        assert!(cursor(None, Some(":5")).is_err());
    }

    #[test]
    fn timestamps_are_iso_8601_utc() {
        assert_eq!(super::timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::timestamp(1_764_076_800_123),
            "2025-11-25T13:20:00.123Z"
        );
        assert_eq!(
            super::timestamp(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
