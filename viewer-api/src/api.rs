//! Admin and convenience API: health, statistics and index look-ups.

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::{blocking, ApiState};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/statistics", get(statistics))
        .route("/api/studies", get(list_studies))
        .route(
            "/api/studies/{study}",
            get(study).patch(crate::corrections_api::update_study),
        )
        .route("/api/series/{series}", get(series))
        .route("/api/instances/{instance}", get(instance))
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn statistics(State(s): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let stats = blocking(move || s.store.index.statistics()).await?;
    Ok(Json(json!(stats)))
}

#[derive(Debug, Deserialize)]
struct Paging {
    after: Option<String>,
    limit: Option<usize>,
}

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 10_000;

async fn list_studies(
    State(s): State<ApiState>,
    Query(p): Query<Paging>,
) -> Result<Json<Value>, ApiError> {
    let limit = p.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::BadRequest(format!(
            "limit must be 1..={MAX_PAGE}"
        )));
    }
    let uids = blocking(move || s.store.index.list_studies(p.after.as_deref(), limit)).await?;
    Ok(Json(json!(uids)))
}

async fn study(
    State(s): State<ApiState>,
    Path(uid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let found = blocking(move || {
        let Some(study) = s.store.index.study(&uid)? else {
            return Ok(None);
        };
        let series = s.store.index.series_uids(&uid)?;
        Ok(Some(json!({ "study": study, "series": series })))
    })
    .await?;
    found.map(Json).ok_or(ApiError::NotFound("study"))
}

async fn series(
    State(s): State<ApiState>,
    Path(uid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let found = blocking(move || {
        let Some(series) = s.store.index.series(&uid)? else {
            return Ok(None);
        };
        let instances = s.store.index.instance_uids(&uid, usize::MAX)?;
        Ok(Some(json!({ "series": series, "instances": instances })))
    })
    .await?;
    found.map(Json).ok_or(ApiError::NotFound("series"))
}

async fn instance(
    State(s): State<ApiState>,
    Path(uid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let found = blocking(move || s.store.index.instance(&uid)).await?;
    found
        .map(|r| Json(json!(r)))
        .ok_or(ApiError::NotFound("instance"))
}
