//! The access guard in front of every route: authenticate, decide through
//! [`policy::authorize`], check that a study named in the path is inside the caller's scope,
//! hand the decision ([`Grant`]) to the handler for filtering, and record the outcome in the
//! audit trail, allowed or refused.

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use pacs_auth::share;
use pacs_storage::audit::{AuditEntry, Interface, Outcome};
use pacs_storage::records::first_value;

use crate::error::ApiError;
use crate::{ApiState, PeerInfo};

use super::authn::AuthnError;
use super::policy::{self, Scope};
use super::principal::{AuthMethod, Principal};
use super::routes::{classify, path_params, RouteKind};
use crate::dicomweb::wado_uri;

/// The access decision for one request, for handlers that filter results.
#[derive(Debug, Clone)]
pub struct Grant {
    pub principal: Principal,
    pub scope: Scope,
}

/// What a handler adds to its request's audit record (set as a response extension).
#[derive(Debug, Clone, Default)]
pub struct AuditNote {
    /// Who tried to log in, for login records.
    pub user: Option<String>,
    pub patient_id: Option<String>,
    pub study_uid: Option<String>,
    pub detail: Option<String>,
    /// A more precise action name than the route's (an order update that cancelled).
    pub action: Option<&'static str>,
}

/// Refusals carry a reason in the body like every other error.
fn refuse(status: StatusCode, reason: &str) -> Response {
    let mut r = (status, axum::Json(serde_json::json!({ "error": reason }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        let challenge = format!(
            "Bearer realm=\"pacs\", error=\"invalid_token\", error_description=\"{}\"",
            reason.replace(['"', '\\', '\r', '\n'], "'")
        );
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
    }
    r
}

pub async fn guard(State(s): State<ApiState>, mut req: Request, next: Next) -> Response {
    let Some(pattern) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
    else {
        return next.run(req).await;
    };
    let peer = req
        .extensions()
        .get::<ConnectInfo<PeerInfo>>()
        .map(|c| c.0.clone());
    let mut kind = classify(req.method(), &pattern);
    let path = req.uri().path().to_owned();
    let mut params: Vec<(String, String)> = path_params(&pattern, &path)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // WADO-URI names its study, series and instance in the query: checked, scoped and audited
    // as path parameters are; a request for the object is a retrieve.
    if pattern == wado_uri::PATH {
        let query = req.uri().query().unwrap_or_default();
        params.extend(wado_uri::uids(query));
        if wado_uri::wants_dicom(query) {
            kind = RouteKind::Guarded(super::policy::Action::Retrieve);
        }
    }
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut entry = AuditEntry::new(
        Interface::Http,
        "anonymous",
        peer.as_ref()
            .map(|p| p.addr.to_string())
            .unwrap_or_default(),
        "",
        Outcome::Success,
    );
    entry.target = Some(format!("{} {}", req.method(), path));
    entry.study_uid = param("study");
    entry.series_uid = param("series");
    entry.instance_uid = param("instance");

    let (principal, action) = match kind {
        RouteKind::Public => return next.run(req).await,
        RouteKind::Login(name) => {
            entry.action = name.into();
            let response = next.run(req).await;
            return finish(&s, entry, response);
        }
        RouteKind::Authenticated(name) => {
            entry.action = name.into();
            match s.auth.authenticate(req.headers(), peer.as_ref()).await {
                Ok(p) => (p, None),
                Err(e) => return deny(&s, entry, StatusCode::UNAUTHORIZED, &e.to_string()),
            }
        }
        RouteKind::Share(action) => {
            entry.action = action.audit_name().into();
            entry.user = "share-link".into();
            let token = param("token").unwrap_or_default();
            let (secret, now) = (&s.config.share_secret, now_secs());
            let verified = if action == super::policy::Action::ResearchDownload {
                share::verify_research(secret, &token, now)
                    .map(|grant| Principal::research_link(grant.study))
            } else {
                share::verify(secret, &token, now).map(Principal::share_link)
            };
            match verified {
                Ok(principal) => (principal, Some(action)),
                Err(e) => return deny(&s, entry, StatusCode::FORBIDDEN, &e.to_string()),
            }
        }
        RouteKind::Guarded(action) => {
            entry.action = action.audit_name().into();
            match s.auth.authenticate(req.headers(), peer.as_ref()).await {
                Ok(p) => (p, Some(action)),
                Err(e) => {
                    if let AuthnError::Invalid(_) = e {
                        entry.detail = Some("invalid credentials".into());
                    }
                    return deny(&s, entry, StatusCode::UNAUTHORIZED, &e.to_string());
                }
            }
        }
    };
    entry.user = principal.name.clone();
    entry.role = Some(principal.role.to_string());
    if matches!(
        principal.method,
        AuthMethod::ShareLink | AuthMethod::ResearchLink
    ) {
        entry.study_uid = principal.share_study.clone();
    }
    let scope = match action {
        None => Scope::All,
        Some(action) => match policy::authorize(&principal, action) {
            Ok(scope) => scope,
            Err(denied) => return deny(&s, entry, StatusCode::FORBIDDEN, &denied.0),
        },
    };
    // Administrators may name any stored record (to find and delete one with a malformed
    // UID); everyone else only well-formed UIDs.
    let check = match action {
        Some(super::policy::Action::Delete | super::policy::Action::IndexAdmin) => {
            crate::dicomweb::check_record_key
        }
        _ => crate::dicomweb::check_uid,
    };
    for name in ["study", "series", "instance"] {
        if let Some(uid) = param(name) {
            if let Err(e) = check(&uid) {
                entry.detail = Some(e.to_string());
                return finish(&s, entry, e.into_response());
            }
        }
    }
    if let Some(study) = entry.study_uid.clone() {
        // The study's patient, for the audit record and the scope check. Outside the scope,
        // the study does not exist as far as this caller can tell.
        let patient = match s.store.index.study(&study) {
            Ok(Some(rec)) => s
                .store
                .index
                .patient(&rec.patient_key)
                .ok()
                .flatten()
                .map(|p| {
                    (
                        first_value(&p.attributes, "00100020").to_string(),
                        first_value(&p.attributes, "00100021").to_string(),
                    )
                }),
            Ok(None) => None,
            Err(e) => {
                let e = ApiError::from(e);
                entry.detail = Some(e.to_string());
                return finish(&s, entry, e.into_response());
            }
        };
        let (patient_id, issuer) = patient.unwrap_or_default();
        entry.patient_id = Some(patient_id.clone()).filter(|p| !p.is_empty());
        if !scope.admits(&study, &patient_id, &issuer) {
            entry.detail = Some("study outside the caller's scope".into());
            let response = ApiError::NotFound("study").into_response();
            return finish_as(&s, entry, response, Outcome::Denied);
        }
    }
    req.extensions_mut().insert(Grant { principal, scope });
    let response = next.run(req).await;
    finish(&s, entry, response)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn deny(s: &ApiState, mut entry: AuditEntry, status: StatusCode, reason: &str) -> Response {
    entry.detail = Some(reason.to_string());
    finish_as(s, entry, refuse(status, reason), Outcome::Denied)
}

/// Record the request with the outcome its status says.
fn finish(s: &ApiState, entry: AuditEntry, response: Response) -> Response {
    let status = response.status();
    let outcome = if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        Outcome::Denied
    } else if status.is_client_error() || status.is_server_error() {
        Outcome::Failure
    } else {
        Outcome::Success
    };
    finish_as(s, entry, response, outcome)
}

fn finish_as(
    s: &ApiState,
    mut entry: AuditEntry,
    response: Response,
    outcome: Outcome,
) -> Response {
    entry.outcome = outcome;
    if let Some(note) = response.extensions().get::<AuditNote>() {
        if let Some(u) = &note.user {
            entry.user = u.clone();
        }
        if note.patient_id.is_some() {
            entry.patient_id = note.patient_id.clone();
        }
        if note.study_uid.is_some() {
            entry.study_uid = note.study_uid.clone();
        }
        if note.detail.is_some() {
            entry.detail = note.detail.clone();
        }
        if let Some(a) = note.action {
            entry.action = a.into();
        }
    }
    if entry.detail.is_none() && outcome != Outcome::Success {
        entry.detail = Some(format!("HTTP {}", response.status().as_u16()));
    }
    if let Err(e) = s.store.audit.record(entry) {
        tracing::error!(error = %e, "cannot record audit entry");
    }
    response
}
