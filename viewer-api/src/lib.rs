//! The HTTP side of the PACS (axum): DICOMweb (QIDO-RS, WADO-RS, STOW-RS) under `/dicom-web`,
//! an admin API under `/api`, and an optional static viewer build under `/viewer`.

pub mod access;
mod api;
mod audit_api;
mod corrections_api;
pub mod dicomweb;
mod error;
mod events_api;
mod export_api;
mod export_query;
mod export_stow;
mod fhir_api;
mod fhir_merge;
mod fhir_outcome;
mod flags_api;
mod orders_api;
mod pseudonyms_api;
pub mod reidentify;
mod rejected_api;
mod remote_api;
pub mod render;
mod research_api;
mod share_api;
mod viewer;
mod worklist_api;

use std::path::PathBuf;
use std::sync::Arc;

use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::Router;
use pacs_storage::query::MatchOptions;
use pacs_storage::Store;
use tower_http::compression::predicate::Predicate;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use error::ApiError;
pub use export_api::{deidentified, record_pseudonyms};
pub use export_stow::{stow_records, Deidentify, ExportTarget};
pub use remote_api::{RemoteArchives, RemoteError, RemoteFuture, RetrieveCounts};

/// Settings of the HTTP API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Base of absolute URLs when clients reach us through a proxy that rewrites the host.
    pub public_url: Option<String>,
    /// Largest STOW-RS request body.
    pub max_stow_bytes: u64,
    /// Origins allowed by CORS (`*` for any); empty: same origin only.
    pub cors_origins: Vec<String>,
    /// A static viewer build (e.g. OHIF's `dist/`) served at `/viewer`.
    pub viewer_dir: Option<PathBuf>,
    pub match_options: MatchOptions,
    /// Rendering threads (0: one per core).
    pub render_threads: usize,
    /// Thumbnails kept in memory.
    pub thumbnail_cache_entries: usize,
    /// Key of the portal's share links (HMAC-SHA256).
    pub share_secret: Vec<u8>,
    /// De-identification profiles for exports, by name.
    pub deid_profiles: Vec<pacs_deid::Profile>,
    /// `host:port` the HTTP listener is bound to (for URLs when a request names no host).
    pub local_addr: String,
    /// The pseudonym project of the AI worker's de-identified sends: what the AI service
    /// returns (STOW-RS results, flags) is re-identified through it. None: sent as stored.
    pub ai_project: Option<String>,
}

/// Who is at the other end of an HTTP connection (from the listener, for every request).
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub addr: std::net::SocketAddr,
    /// Common name of the client's verified TLS certificate (HTTPS with client certificates).
    pub client_cn: Option<String>,
}

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<Store>,
    pub config: Arc<ApiConfig>,
    pub render: render::pool::RenderPool,
    pub thumbnails: Arc<render::thumbnails::ThumbnailCache>,
    pub auth: Arc<access::authn::Authenticator>,
    pub login_throttle: Arc<access::login_api::Throttle>,
    /// Query/retrieve against other archives (the server's DIMSE SCU); None: not offered.
    pub remote: Option<Arc<dyn remote_api::RemoteArchives>>,
}

impl ApiState {
    pub fn new(
        store: Arc<Store>,
        config: ApiConfig,
        auth: access::authn::Authenticator,
    ) -> Result<ApiState, ApiError> {
        let render = render::pool::RenderPool::new(config.render_threads)
            .map_err(|e| ApiError::Internal(format!("starting the render pool: {e}")))?;
        let thumbnails = Arc::new(render::thumbnails::ThumbnailCache::new(
            config.thumbnail_cache_entries,
        ));
        Ok(ApiState {
            store,
            config: Arc::new(config),
            render,
            thumbnails,
            auth: Arc::new(auth),
            login_throttle: Arc::default(),
            remote: None,
        })
    }
}

/// Compress JSON answers only: DICOM files and pixel data gain little and cost CPU.
#[derive(Clone, Copy)]
struct JsonOnly;

impl Predicate for JsonOnly {
    fn should_compress<B>(&self, response: &axum::http::Response<B>) -> bool
    where
        B: axum::body::HttpBody,
    {
        response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                ct.starts_with("application/dicom+json") || ct.starts_with("application/json")
            })
    }
}

fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .allow_headers([header::ACCEPT, header::CONTENT_TYPE, header::AUTHORIZATION])
            .expose_headers([
                header::WARNING,
                header::CONTENT_LOCATION,
                header::ETAG,
                HeaderName::from_static("content-type"),
            ]),
    )
}

/// All routes of the HTTP API.
pub fn router(state: ApiState) -> Router {
    let config = state.config.clone();
    let mut app = Router::new()
        .merge(api::routes())
        .merge(corrections_api::routes())
        .merge(events_api::routes())
        .merge(export_api::routes())
        .merge(fhir_api::routes())
        .merge(fhir_merge::routes())
        .merge(pseudonyms_api::routes())
        .merge(rejected_api::routes())
        .merge(remote_api::routes())
        .merge(research_api::routes())
        .merge(export_query::routes())
        .merge(flags_api::routes())
        .merge(orders_api::routes())
        .merge(worklist_api::routes())
        .merge(share_api::routes())
        .merge(access::login_api::routes())
        .merge(audit_api::routes())
        .nest(
            dicomweb::DICOMWEB_ROOT,
            dicomweb::routes(config.max_stow_bytes),
        )
        .route(
            dicomweb::wado_uri::PATH,
            axum::routing::get(dicomweb::wado_uri::wado),
        )
        // Every matched route passes the access guard (authentication, policy, audit).
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::guard::guard,
        ));
    if let Some(dir) = &config.viewer_dir {
        app = app.merge(viewer::routes(dir.clone()));
    }
    let mut app = app
        .with_state(state)
        .layer(CompressionLayer::new().compress_when(JsonOnly));
    if let Some(layer) = cors(&config.cors_origins) {
        app = app.layer(layer);
    }
    app
}

/// Run an index read off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, pacs_storage::StorageError> + Send + 'static,
) -> Result<T, ApiError> {
    off_runtime(f).await
}

/// Run blocking work (index, files, codecs) off the async runtime, with any error the API
/// turns into a status.
pub(crate) async fn off_runtime<T: Send + 'static, E: Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError>
where
    ApiError: From<E>,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(ApiError::from)
}
