//! The one place API errors become HTTP statuses, each with a JSON body giving the reason.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not acceptable: {0}")]
    NotAcceptable(String),
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    #[error("payload too large: {0}")]
    PayloadTooLarge(String),
    /// A resource named in the request body or path, described (e.g. "patient 123").
    #[error("{0} not found")]
    Missing(String),
    /// The resource changed while the request was being done; repeating it may succeed.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A server the request sends to (an export target) refused or could not be reached.
    #[error("bad gateway: {0}")]
    BadGateway(String),
    /// The shared database or bucket is away for now; the client should try again.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<pacs_storage::corrections::CorrectionError> for ApiError {
    fn from(e: pacs_storage::corrections::CorrectionError) -> Self {
        use pacs_storage::corrections::CorrectionError as E;
        match e {
            E::NotFound(what) => ApiError::Missing(what),
            E::Invalid(why) => ApiError::BadRequest(why),
            E::Storage(e @ pacs_storage::StorageError::ChangedMeanwhile { .. }) => {
                ApiError::Conflict(e.to_string())
            }
            other => ApiError::Internal(pacs_storage::error_chain(&other)),
        }
    }
}

impl From<pacs_storage::StorageError> for ApiError {
    fn from(e: pacs_storage::StorageError) -> Self {
        if e.is_unavailable() {
            return ApiError::Unavailable(e.to_string());
        }
        ApiError::Internal(e.to_string())
    }
}

impl From<pacs_storage::ReceiveError> for ApiError {
    fn from(e: pacs_storage::ReceiveError) -> Self {
        if let pacs_storage::ReceiveError::Ingest(pacs_storage::IngestError::Storage(s)) = &e {
            if s.is_unavailable() {
                return ApiError::Unavailable(pacs_storage::error_chain(&e));
            }
        }
        ApiError::Internal(pacs_storage::error_chain(&e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Missing(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(error = %self, "request refused for now");
            let body = Json(json!({ "error": self.to_string() }));
            return (status, [(axum::http::header::RETRY_AFTER, "5")], body).into_response();
        }
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}
