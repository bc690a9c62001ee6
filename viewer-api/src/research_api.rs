//! Research links: `POST /api/studies/{study}/share?profile=NAME&project=P&hours=H` (admin)
//! makes a signed link that downloads that one study de-identified with the profile, under
//! the project's pseudonyms, until it expires (default 168 h, at most 90 days);
//! `GET /api/research/{token}/study.zip` is that download, open to whoever holds the link
//! (the token is checked on every request, refused when altered or expired, and names no
//! other study; it opens nothing else). Each download is audited with the study.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pacs_auth::share::{self, ResearchGrant};
use pacs_storage::audit::rfc3339_millis;
use serde::Deserialize;
use serde_json::json;

use crate::access::guard::AuditNote;
use crate::dicomweb::urls::service_base;
use crate::error::ApiError;
use crate::export_api::{profile_named, zip_download};
use crate::{off_runtime, ApiState};

const DEFAULT_HOURS: f64 = 168.0;
const MAX_HOURS: f64 = 90.0 * 24.0;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/studies/{study}/share", post(make_link))
        .route("/api/research/{token}/study.zip", get(download))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkQuery {
    profile: Option<String>,
    project: Option<String>,
    hours: Option<f64>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn make_link(
    State(s): State<ApiState>,
    Path(study): Path<String>,
    Query(q): Query<LinkQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let profile = q.profile.unwrap_or_else(|| "basic".into());
    profile_named(&s, &profile)?;
    let project = q.project.unwrap_or_else(|| "default".into());
    if project.contains('\n') || profile.contains('\n') {
        return Err(ApiError::BadRequest(
            "profile and project are one line each".into(),
        ));
    }
    let hours = q.hours.unwrap_or(DEFAULT_HOURS);
    if !(hours.is_finite() && hours > 0.0 && hours <= MAX_HOURS) {
        return Err(ApiError::BadRequest(format!(
            "hours must be more than 0 and at most {MAX_HOURS}"
        )));
    }
    let (st, uid) = (s.clone(), study.clone());
    if off_runtime(move || st.store.index.study(&uid))
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound("study"));
    }
    let expires = now_secs() + (hours * 3600.0) as u64;
    let grant = ResearchGrant {
        study: study.clone(),
        profile: profile.clone(),
        project: project.clone(),
    };
    let token = share::sign_research(&s.config.share_secret, &grant, expires);
    let base = service_base(
        &headers,
        s.config.public_url.as_deref(),
        &s.config.local_addr,
    );
    let url = format!(
        "{}/api/research/{token}/study.zip",
        base.trim_end_matches("/dicom-web")
    );
    let expires_at = rfc3339_millis(UNIX_EPOCH + Duration::from_secs(expires));
    let mut r = Json(json!({"url": url, "expires": expires_at})).into_response();
    r.extensions_mut().insert(AuditNote {
        action: Some("study.share"),
        study_uid: Some(study),
        detail: Some(format!(
            "research link, profile {profile}, project {project}, until {expires_at}"
        )),
        ..AuditNote::default()
    });
    Ok(r)
}

async fn download(
    State(s): State<ApiState>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    // The guard checked the link; read its grant again here.
    let grant = share::verify_research(&s.config.share_secret, &token, now_secs())
        .map_err(|e| ApiError::Forbidden(e.to_string()))?;
    let profile = profile_named(&s, &grant.profile)?;
    let (mut r, count) =
        zip_download(&s, vec![grant.study.clone()], profile, &grant.project).await?;
    r.extensions_mut().insert(AuditNote {
        action: Some("study.export"),
        study_uid: Some(grant.study.clone()),
        detail: Some(format!(
            "research link, profile {}, project {}, {count} instances de-identified",
            grant.profile, grant.project
        )),
        ..AuditNote::default()
    });
    Ok(r)
}
