//! DICOMweb (PS3.18): QIDO-RS search, WADO-RS retrieve, STOW-RS store, under `/dicom-web`.

mod delete;
pub mod json;
pub mod media;
mod multipart;
pub mod qido;
pub(crate) mod rendered;
mod stow;
pub mod urls;
mod wado;
pub mod wado_uri;

/// The STOW-RS Content-Type check, public for the fuzz target.
pub use stow::boundary_of;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use pacs_storage::query::Level;
use pacs_storage::Store;
use serde_json::Value as Json;

use crate::access::Grant;
use crate::error::ApiError;
use crate::ApiState;

pub use urls::DICOMWEB_ROOT;

/// What a DICOMweb request needs beside its parameters.
#[derive(Clone)]
pub struct Ctx {
    pub store: Arc<Store>,
    /// Absolute base URL of the service for this request (RetrieveURL, BulkDataURI).
    pub base: String,
    pub max_stow_bytes: u64,
    /// STOW-RS from the AI service when its sends are de-identified: the pseudonym project
    /// whose UIDs and patients are put back before storing.
    pub reidentify: Option<String>,
}

impl Ctx {
    pub fn new(s: &ApiState, headers: &HeaderMap) -> Ctx {
        Ctx {
            store: s.store.clone(),
            base: urls::service_base(
                headers,
                s.config.public_url.as_deref(),
                &s.config.local_addr,
            ),
            max_stow_bytes: s.config.max_stow_bytes,
            reidentify: None,
        }
    }
}

/// UIDs in paths are digits and dots (at most 64): anything else is refused before it
/// reaches the index (and can never name a file).
pub fn check_uid(uid: &str) -> Result<(), ApiError> {
    let ok =
        !uid.is_empty() && uid.len() <= 64 && uid.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "{:?} is not a UID (digits and dots, at most 64)",
            uid.chars().take(80).collect::<String>()
        )))
    }
}

/// A record key as an administrator may name it: any stored UID, even one that breaks PS3.5
/// (records indexed before UN values were read with their VR, or by a lenient older version),
/// so that every record can be found and deleted. Keys only reach the index, never a file name.
pub fn check_record_key(key: &str) -> Result<(), ApiError> {
    if !key.is_empty() && key.len() <= 256 && !key.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "{:?} is not a record key (1 to 256 characters, no control characters)",
            key.chars().take(80).collect::<String>()
        )))
    }
}

/// A DICOM JSON response body.
pub fn dicom_json_response(status: StatusCode, body: &Json) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/dicom+json"),
    );
    r
}

/// The DICOMweb routes, to be nested at [`DICOMWEB_ROOT`].
pub fn routes(max_stow_bytes: u64) -> Router<ApiState> {
    let stow_limit = usize::try_from(max_stow_bytes).unwrap_or(usize::MAX);
    let instance = "/studies/{study}/series/{series}/instances/{instance}";
    Router::new()
        .route(
            "/studies",
            get(search_studies)
                .post(stow::store)
                .layer(DefaultBodyLimit::max(stow_limit)),
        )
        .route(
            "/studies/{study}",
            get(wado::retrieve)
                .post(stow::store)
                .delete(delete::delete)
                .layer(DefaultBodyLimit::max(stow_limit)),
        )
        .route("/studies/{study}/metadata", get(wado::metadata))
        .route("/studies/{study}/series", get(search_study_series))
        .route("/studies/{study}/instances", get(search_study_instances))
        .route(
            "/studies/{study}/series/{series}",
            get(wado::retrieve).delete(delete::delete),
        )
        .route(
            "/studies/{study}/series/{series}/metadata",
            get(wado::metadata),
        )
        .route(
            "/studies/{study}/series/{series}/instances",
            get(search_series_instances),
        )
        .route(instance, get(wado::retrieve).delete(delete::delete))
        .route(&format!("{instance}/metadata"), get(wado::metadata))
        .route(&format!("{instance}/frames/{{frames}}"), get(wado::frames))
        .route(&format!("{instance}/bulk/{{*path}}"), get(wado::bulk))
        .route("/studies/{study}/rendered", get(rendered::rendered))
        .route("/studies/{study}/thumbnail", get(rendered::thumbnail))
        .route(
            "/studies/{study}/series/{series}/rendered",
            get(rendered::rendered),
        )
        .route(
            "/studies/{study}/series/{series}/thumbnail",
            get(rendered::thumbnail),
        )
        .route(&format!("{instance}/rendered"), get(rendered::rendered))
        .route(&format!("{instance}/thumbnail"), get(rendered::thumbnail))
        .route(
            &format!("{instance}/frames/{{frames}}/rendered"),
            get(rendered::rendered),
        )
        .route(
            &format!("{instance}/frames/{{frames}}/thumbnail"),
            get(rendered::thumbnail),
        )
        .route("/series", get(search_all_series))
        .route("/instances", get(search_all_instances))
}

/// Run one QIDO-RS search.
async fn search(
    s: ApiState,
    grant: Grant,
    level: Level,
    path: HashMap<String, String>,
    raw_query: Option<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    media::require_json(&headers, "search results")?;
    let mut path_keys: Vec<(&str, &str)> = Vec::new();
    for (param, tag) in [("study", "0020000D"), ("series", "0020000E")] {
        if let Some(uid) = path.get(param) {
            check_uid(uid)?;
            path_keys.push((tag, uid));
        }
    }
    let mut search = qido::Search::parse(
        level,
        &path_keys,
        raw_query.as_deref().unwrap_or_default(),
        s.config.match_options,
    )?;
    search.query.keys.extend(grant.scope.query_keys());
    let scope = grant.scope.clone();
    search.admit_only(move |attrs| scope.admits_match(attrs));
    let ctx = Ctx::new(&s, &headers);
    let mut warnings = search.warnings.clone();
    let (results, more) =
        tokio::task::spawn_blocking(move || search.run(ctx.store.index.as_ref(), &ctx.base))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
    let mut response = (StatusCode::OK, results).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/dicom+json"),
    );
    if more {
        warnings.push(
            "The number of results exceeded the limit; more results can be requested with offset"
                .into(),
        );
    }
    for w in warnings {
        let text = w.replace(['"', '\r', '\n'], "'");
        if let Ok(v) = HeaderValue::from_str(&format!("299 pacs \"{text}\"")) {
            response.headers_mut().append(header::WARNING, v);
        }
    }
    Ok(response)
}

async fn search_studies(
    State(s): State<ApiState>,
    Extension(g): Extension<Grant>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    search(s, g, Level::Study, HashMap::new(), q, headers).await
}

async fn search_all_series(
    State(s): State<ApiState>,
    Extension(g): Extension<Grant>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    search(s, g, Level::Series, HashMap::new(), q, headers).await
}

async fn search_all_instances(
    State(s): State<ApiState>,
    Extension(g): Extension<Grant>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    search(s, g, Level::Image, HashMap::new(), q, headers).await
}

async fn search_study_series(
    State(s): State<ApiState>,
    Extension(g): Extension<Grant>,
    Path(p): Path<HashMap<String, String>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    search(s, g, Level::Series, p, q, headers).await
}

async fn search_study_instances(
    State(s): State<ApiState>,
    Extension(g): Extension<Grant>,
    Path(p): Path<HashMap<String, String>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    search(s, g, Level::Image, p, q, headers).await
}

async fn search_series_instances(
    State(s): State<ApiState>,
    Extension(g): Extension<Grant>,
    Path(p): Path<HashMap<String, String>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    search(s, g, Level::Image, p, q, headers).await
}
