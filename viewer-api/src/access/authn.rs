//! Authentication of HTTP requests: session tokens and API keys of local accounts, OIDC
//! bearer JWTs, HTTPS client certificates naming a service account. Which one a bearer token
//! is follows from its prefix (`pacs_s_` session, `pacs_` API key, anything else a JWT).

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderMap};
use pacs_auth::accounts::{
    Accounts, Authenticated, Sessions, API_KEY_PREFIX, DEFAULT_SESSION_TTL, SESSION_PREFIX,
};
use pacs_auth::jwt::JwtValidator;

use crate::PeerInfo;

use super::principal::{AuthMethod, Principal};

/// Why a request is not authenticated (always 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthnError {
    #[error("authentication required: send Authorization: Bearer <token>")]
    Missing,
    #[error("invalid credentials: {0}")]
    Invalid(String),
}

/// How HTTP callers are authenticated.
pub struct Authenticator {
    /// Refuse requests without credentials (otherwise they act as `anonymous` admin, which
    /// the server allows on loopback only).
    pub required: bool,
    pub accounts: Option<Arc<Accounts>>,
    pub sessions: Sessions,
    pub session_ttl: Duration,
    /// Shared with the DICOM user identity check.
    pub jwt: Option<Arc<JwtValidator>>,
    /// Verified HTTPS client certificates authenticate as the local account their subject's CN
    /// names, when that account is marked for certificate login.
    pub client_certificates: bool,
}

impl Authenticator {
    /// No authentication: every caller is `anonymous` (loopback-only installs, tests).
    pub fn open() -> Authenticator {
        Authenticator {
            required: false,
            accounts: None,
            sessions: Sessions::new(),
            session_ttl: DEFAULT_SESSION_TTL,
            jwt: None,
            client_certificates: false,
        }
    }

    fn principal(who: Authenticated, method: AuthMethod) -> Principal {
        Principal {
            name: who.name,
            role: who.role,
            patient_ids: who.patient_ids,
            share_study: None,
            method,
        }
    }

    /// The caller of a request, from its headers and connection.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: Option<&PeerInfo>,
    ) -> Result<Principal, AuthnError> {
        if let Some(token) = bearer(headers)? {
            return self.with_token(&token).await;
        }
        if self.client_certificates {
            if let (Some(cn), Some(accounts)) =
                (peer.and_then(|p| p.client_cn.as_deref()), &self.accounts)
            {
                return match accounts.for_certificate(cn) {
                    Some(who) => Ok(Self::principal(who, AuthMethod::ClientCertificate)),
                    None => Err(AuthnError::Invalid(format!(
                        "client certificate {cn:?} names no enabled account marked for certificate login"
                    ))),
                };
            }
        }
        if self.required {
            Err(AuthnError::Missing)
        } else {
            Ok(Principal::open())
        }
    }

    async fn with_token(&self, token: &str) -> Result<Principal, AuthnError> {
        if token.starts_with(SESSION_PREFIX) {
            let who = self
                .sessions
                .lookup(token)
                .ok_or_else(|| AuthnError::Invalid("session expired or unknown".into()))?;
            // The account may have been disabled or changed since login.
            let current = self
                .accounts
                .as_ref()
                .and_then(|a| a.current(&who.name))
                .ok_or_else(|| AuthnError::Invalid("the account is disabled".into()))?;
            return Ok(Self::principal(current, AuthMethod::Session));
        }
        if token.starts_with(API_KEY_PREFIX) {
            let accounts = self
                .accounts
                .as_ref()
                .ok_or_else(|| AuthnError::Invalid("no local accounts configured".into()))?;
            return accounts
                .verify_api_key(token)
                .map(|who| Self::principal(who, AuthMethod::ApiKey))
                .ok_or_else(|| AuthnError::Invalid("unknown or revoked API key".into()));
        }
        let jwt = self.jwt.as_ref().ok_or_else(|| {
            AuthnError::Invalid(
                "bearer token is not a session or API key, and OIDC is not configured".into(),
            )
        })?;
        let id = jwt
            .validate(token)
            .await
            .map_err(|e| AuthnError::Invalid(e.to_string()))?;
        Ok(Principal {
            name: id.name,
            role: id.role,
            patient_ids: id.patient_ids,
            share_study: None,
            method: AuthMethod::Jwt,
        })
    }
}

/// The bearer token of a request, if it sent one; other schemes are refused by name.
fn bearer(headers: &HeaderMap) -> Result<Option<String>, AuthnError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| AuthnError::Invalid("Authorization header is not ASCII".into()))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthnError::Invalid(format!(
            "authorization scheme {scheme:?} is not supported; use Bearer"
        )));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthnError::Invalid("empty bearer token".into()));
    }
    Ok(Some(token.to_string()))
}
