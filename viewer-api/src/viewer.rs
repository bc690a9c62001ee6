//! A static viewer build (OHIF's `dist/`) at `/viewer`, on the same origin as DICOMweb so the
//! viewer needs no CORS. Client-side routes (`/viewer/viewer?StudyInstanceUIDs=...`) get
//! `index.html`; a missing file with an extension stays a 404 so a broken asset is visible.

use std::path::PathBuf;

use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tower_http::services::ServeDir;

use crate::ApiState;

pub fn routes(dir: PathBuf) -> Router<ApiState> {
    let index = dir.join("index.html");
    let fallback = get(move |uri: Uri| {
        let index = index.clone();
        async move { client_route(uri, index).await }
    });
    let files = ServeDir::new(&dir)
        .append_index_html_on_directories(true)
        .fallback(fallback.with_state(()));
    Router::new().nest_service("/viewer", files)
}

async fn client_route(uri: Uri, index: PathBuf) -> Response {
    let last = uri.path().rsplit('/').next().unwrap_or_default();
    if last.contains('.') {
        return (StatusCode::NOT_FOUND, "no such file in the viewer build").into_response();
    }
    match tokio::fs::read(&index).await {
        Ok(html) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            html,
        )
            .into_response(),
        Err(e) => (
            StatusCode::NOT_FOUND,
            format!("viewer build has no index.html: {e}"),
        )
            .into_response(),
    }
}
