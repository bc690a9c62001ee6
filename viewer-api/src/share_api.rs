//! What a patient-portal share link opens: `GET /api/share/{token}` (the study's summary and
//! series) and its thumbnails. The token is checked on every request and names the only study
//! it shows; an altered or expired one is refused (403) with the reason.

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use pacs_auth::share;
use pacs_storage::records::first_value;
use serde_json::{json, Value};

use crate::dicomweb::rendered;
use crate::dicomweb::urls::service_base;
use crate::error::ApiError;
use crate::{blocking, ApiState};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/share/{token}", get(summary))
        .route("/api/share/{token}/thumbnail", get(study_thumbnail))
        .route(
            "/api/share/{token}/series/{series}/thumbnail",
            get(series_thumbnail),
        )
}

fn granted(s: &ApiState, token: &str) -> Result<String, ApiError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    share::verify(&s.config.share_secret, token, now)
        .map_err(|e| ApiError::Forbidden(e.to_string()))
}

async fn summary(
    State(s): State<ApiState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let study_uid = granted(&s, &token)?;
    let base = service_base(
        &headers,
        s.config.public_url.as_deref(),
        &s.config.local_addr,
    );
    let link = format!("{}/api/share/{token}", base.trim_end_matches("/dicom-web"));
    let store = s.store.clone();
    let found = blocking(move || {
        let Some(study) = store.index.study(&study_uid)? else {
            return Ok(None);
        };
        let mut series = Vec::new();
        for uid in store.index.series_uids(&study_uid)? {
            if let Some(se) = store.index.series(&uid)? {
                series.push(json!({
                    "series_instance_uid": uid,
                    "modality": first_value(&se.attributes, "00080060"),
                    "description": first_value(&se.attributes, "0008103E"),
                    "number_of_instances": se.num_instances,
                    "thumbnail": format!("{link}/series/{uid}/thumbnail"),
                }));
            }
        }
        let a = &study.attributes;
        Ok(Some(json!({
            "study_instance_uid": study.study_instance_uid,
            "patient_name": first_value(a, "00100010"),
            "study_date": first_value(a, "00080020"),
            "description": first_value(a, "00081030"),
            "modalities": study.modalities,
            "thumbnail": format!("{link}/thumbnail"),
            "series": series,
        })))
    })
    .await?;
    found.map(Json).ok_or(ApiError::NotFound("study"))
}

async fn study_thumbnail(
    State(s): State<ApiState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let study = granted(&s, &token)?;
    let path = HashMap::from([("study".to_string(), study)]);
    rendered::thumbnail(State(s), Path(path), RawQuery(None), headers).await
}

async fn series_thumbnail(
    State(s): State<ApiState>,
    Path((token, series)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let study = granted(&s, &token)?;
    let path = HashMap::from([("study".to_string(), study), ("series".to_string(), series)]);
    rendered::thumbnail(State(s), Path(path), RawQuery(None), headers).await
}
