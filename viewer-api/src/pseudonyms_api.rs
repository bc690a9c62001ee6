//! `GET /api/pseudonyms?project=P&value=V`: what a pseudonymous value handed out by a
//! de-identified export stands for (admin only, like every `/api` route not classified
//! otherwise; audited with the value asked about).

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::access::guard::AuditNote;
use crate::error::ApiError;
use crate::{off_runtime, ApiState};

pub fn routes() -> Router<ApiState> {
    Router::new().route("/api/pseudonyms", get(reidentify))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Lookup {
    project: Option<String>,
    value: String,
}

async fn reidentify(
    State(s): State<ApiState>,
    Query(q): Query<Lookup>,
) -> Result<Response, ApiError> {
    let project = q.project.unwrap_or_else(|| "default".into());
    let value = q.value.trim().to_string();
    if value.is_empty() || value.contains('\0') {
        return Err(ApiError::BadRequest("value is empty or holds a NUL".into()));
    }
    let (p, v) = (project.clone(), value.clone());
    let entries = off_runtime(move || s.store.pseudonyms.reidentify(&p, &v)).await?;
    if entries.is_empty() {
        return Err(ApiError::Missing(format!(
            "pseudonym {value:?} in project {project:?}"
        )));
    }
    let mut r =
        Json(json!({"project": project, "value": value, "entries": entries})).into_response();
    r.extensions_mut().insert(AuditNote {
        action: Some("pseudonym.reidentify"),
        detail: Some(format!("project {project}, value {value}")),
        ..AuditNote::default()
    });
    Ok(r)
}
