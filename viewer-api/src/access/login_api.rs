//! Local-account login for small sites: `POST /api/login` trades a password (and TOTP code)
//! for a short-lived session token; `POST /api/logout` ends it; `GET /api/whoami` tells who a
//! token is. Repeated failures lock a user name, and a source address, out for a while
//! (password guessing; see [`super::throttle`]).

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use pacs_auth::accounts::{LoginError, SESSION_PREFIX};
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use crate::{ApiState, PeerInfo};

use super::guard::{AuditNote, Grant};
use super::throttle::Locked;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/whoami", get(whoami))
}

pub use super::throttle::Throttle;

#[derive(Deserialize)]
struct LoginRequest {
    username: String,
    password: String,
    #[serde(default)]
    totp: Option<String>,
}

fn with_note(mut response: Response, user: &str, detail: Option<String>) -> Response {
    response.extensions_mut().insert(AuditNote {
        user: Some(user.to_string()),
        detail,
        ..AuditNote::default()
    });
    response
}

async fn login(
    State(s): State<ApiState>,
    peer: Option<Extension<ConnectInfo<PeerInfo>>>,
    body: axum::body::Bytes,
) -> Response {
    let source = peer.map(|Extension(ConnectInfo(p))| p.addr.ip());
    let req: LoginRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return ApiError::BadRequest(format!(
                "login needs JSON {{\"username\", \"password\", \"totp\"}}: {e}"
            ))
            .into_response()
        }
    };
    let user: String = req.username.chars().take(64).collect();
    let Some(accounts) = s.auth.accounts.clone() else {
        return ApiError::BadRequest("local accounts are not configured".into()).into_response();
    };
    if let Err(locked) = s.login_throttle.check(&user, source) {
        let (error, detail) = match locked {
            Locked::Name => (
                "too many failed logins for this user; try again later",
                "user locked out after repeated failures",
            ),
            Locked::Source => (
                "too many failed logins from this address; try again later",
                "address locked out after repeated failures",
            ),
        };
        let r = (StatusCode::TOO_MANY_REQUESTS, Json(json!({"error": error}))).into_response();
        return with_note(r, &user, Some(detail.into()));
    }
    let name = user.clone();
    let checked = tokio::task::spawn_blocking(move || {
        accounts.verify_password(&name, &req.password, req.totp.as_deref())
    })
    .await;
    let who = match checked {
        Ok(Ok(who)) => who,
        Ok(Err(e)) => {
            s.login_throttle.failed(&user, source);
            let status = StatusCode::UNAUTHORIZED;
            let r = (status, Json(json!({"error": e.to_string()}))).into_response();
            let detail = match e {
                LoginError::TotpRequired | LoginError::TotpInvalid => "second factor failed",
                LoginError::Disabled => "account disabled",
                _ => "invalid credentials",
            };
            return with_note(r, &user, Some(detail.into()));
        }
        Err(e) => return ApiError::Internal(e.to_string()).into_response(),
    };
    s.login_throttle.succeeded(&user);
    let ttl = s.auth.session_ttl;
    let role = who.role;
    match s.auth.sessions.issue(who, ttl) {
        Ok(token) => {
            let body = json!({
                "token": token,
                "token_type": "Bearer",
                "expires_in": ttl.as_secs(),
                "user": user,
                "role": role,
            });
            with_note(Json(body).into_response(), &user, None)
        }
        Err(e) => ApiError::Internal(e.to_string()).into_response(),
    }
}

async fn logout(State(s): State<ApiState>, headers: HeaderMap) -> Response {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .map(|(_, t)| t.trim().to_string())
        .unwrap_or_default();
    // Whose session it was, for the audit record (the route itself needs no identity).
    let who = token
        .starts_with(SESSION_PREFIX)
        .then(|| s.auth.sessions.lookup(&token))
        .flatten();
    match who {
        Some(who) if s.auth.sessions.revoke(&token) => {
            with_note(StatusCode::NO_CONTENT.into_response(), &who.name, None)
        }
        _ => ApiError::BadRequest("no session token to end".into()).into_response(),
    }
}

async fn whoami(Extension(grant): Extension<Grant>) -> Json<serde_json::Value> {
    let p = &grant.principal;
    Json(json!({
        "user": p.name,
        "role": p.role,
        "method": p.method.as_str(),
        "patient_ids": p.patient_ids,
    }))
}
