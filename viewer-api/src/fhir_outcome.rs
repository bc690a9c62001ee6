//! FHIR errors: an OperationOutcome resource with the HTTP status that says what went wrong
//! (400 invalid resource, 404 unknown, 409 conflict, 412 ambiguous condition, 413 too large,
//! 415 wrong media type, 422 business rule, 500 only for bugs and storage failures).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use pacs_storage::order_intake::IntakeError;
use pacs_storage::OrderError;
use serde_json::json;

use crate::access::AuditNote;

pub const FHIR_JSON: &str = "application/fhir+json";

#[derive(Debug)]
pub struct FhirError {
    pub status: StatusCode,
    /// OperationOutcome issue code (invalid, not-found, conflict, business-rule, ...).
    pub code: &'static str,
    pub reason: String,
}

impl FhirError {
    pub fn new(status: StatusCode, code: &'static str, reason: impl Into<String>) -> FhirError {
        FhirError {
            status,
            code,
            reason: reason.into(),
        }
    }

    pub fn invalid(reason: impl Into<String>) -> FhirError {
        FhirError::new(StatusCode::BAD_REQUEST, "invalid", reason)
    }
}

impl From<pacs_fhir::service_request::ServiceRequestError> for FhirError {
    fn from(e: pacs_fhir::service_request::ServiceRequestError) -> Self {
        FhirError::invalid(e.to_string())
    }
}

impl From<IntakeError> for FhirError {
    fn from(e: IntakeError) -> Self {
        use StatusCode as S;
        match &e {
            IntakeError::Invalid(OrderError::Closed(..)) => {
                FhirError::new(S::UNPROCESSABLE_ENTITY, "business-rule", e.to_string())
            }
            IntakeError::Invalid(_) => FhirError::invalid(e.to_string()),
            IntakeError::Unknown(_) => FhirError::new(S::NOT_FOUND, "not-found", e.to_string()),
            IntakeError::Taken(_) | IntakeError::Contended(_) => {
                FhirError::new(S::CONFLICT, "conflict", e.to_string())
            }
            IntakeError::Storage(_) => FhirError::new(
                S::INTERNAL_SERVER_ERROR,
                "exception",
                pacs_storage::error_chain(&e),
            ),
        }
    }
}

impl From<crate::ApiError> for FhirError {
    fn from(e: crate::ApiError) -> Self {
        use crate::ApiError as A;
        let (status, code) = match &e {
            A::NotFound(_) | A::Missing(_) => (StatusCode::NOT_FOUND, "not-found"),
            A::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            A::BadGateway(_) => (StatusCode::BAD_GATEWAY, "transient"),
            A::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid"),
            A::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            A::NotAcceptable(_) | A::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "not-supported")
            }
            A::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too-costly"),
            A::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "transient"),
            A::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "exception"),
        };
        FhirError::new(status, code, e.to_string())
    }
}

/// A FHIR JSON response.
/// A request body, or why axum could not read it, as an OperationOutcome (413 `too-costly`
/// over `max` bytes) rather than axum's plain-text rejection.
pub fn body_bytes(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
    max: usize,
) -> Result<axum::body::Bytes, FhirError> {
    body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            FhirError::new(
                status,
                "too-costly",
                format!("the body is over {max} bytes"),
            )
        } else {
            FhirError::new(status, "invalid", rejection.body_text())
        }
    })
}

pub fn fhir_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    r
}

impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(reason = %self.reason, "FHIR request failed");
        }
        let outcome = json!({
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": self.code, "diagnostics": self.reason}],
        });
        let mut r = fhir_response(self.status, &outcome);
        r.extensions_mut().insert(AuditNote {
            detail: Some(self.reason),
            ..AuditNote::default()
        });
        r
    }
}
