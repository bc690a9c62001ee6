//! OIDC / OAuth2 bearer tokens: validation of JWT access or ID tokens issued by the site's
//! identity provider (Keycloak, Entra ID, Okta, …) against its published keys (JWKS).
//!
//! Only RS256 and ES256 are accepted, and the algorithm is checked before anything else:
//! `alg: none` and HMAC algorithms (an HS256 token "signed" with the public key, the classic
//! key-confusion attack) are refused explicitly. Header fields that point at keys (`jku`, `x5u`,
//! `jwk`) are ignored: keys come only from the configured file or URL.
//!
//! The parts: `validate` (the validator: header, signature, standard claims), `claims` (the
//! PACS identity in the claims), `keys` (the key set in use, refetched on rotation), `jwks`
//! (reading a JSON Web Key Set from a file or URL).
//!
//! Test keys (test-only, private keys published): `auth/testdata/` holds `rsa.pem` (kid
//! `test-rsa`), `ec.pem` (kid `test-ec`), their public halves, `rsa-other.pem` (a key not in
//! the set) and `jwks.json`; see the README there.

use std::path::PathBuf;
use std::sync::Arc;

use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};

use crate::accounts::Authenticated;
use crate::role::Role;

mod claims;
mod jwks;
mod keys;
mod validate;

#[cfg(test)]
mod fixtures;

pub use jwks::MAX_JWKS_BYTES;
pub use validate::JwtValidator;

/// `amr` values (RFC 8176) that show a second factor was used.
pub const MFA_AMR: [&str; 6] = ["mfa", "otp", "hwk", "swk", "sms", "fpt"];

/// The `[auth.oidc]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// Expected `iss`, compared exactly (mind a trailing slash).
    pub issuer: String,
    /// Expected `aud` (the token may list several; one must be this).
    pub audience: String,
    /// A JWKS file read once at start (offline sites, tests).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// The identity provider's JWKS URL (https, or http on loopback only).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Claim holding the PACS role: a string or an array (the first known role counts). A
    /// dotted name ("realm_access.roles") walks nested objects when no claim has that exact name.
    #[serde(default = "default_role_claim")]
    pub role_claim: String,
    /// Claim holding the Patient IDs of a patient: a string or an array.
    #[serde(default = "default_patient_id_claim")]
    pub patient_id_claim: String,
    /// Claim naming the user; `sub` when it is missing.
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    /// Refuse tokens without evidence of multi-factor authentication (`amr` or `acr`).
    #[serde(default)]
    pub require_mfa: bool,
    /// `acr` values that count as multi-factor.
    #[serde(default)]
    pub accepted_acr: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway_secs")]
    pub leeway_secs: u64,
}

fn default_role_claim() -> String {
    "pacs_role".into()
}
fn default_patient_id_claim() -> String {
    "patient_id".into()
}
fn default_user_claim() -> String {
    "preferred_username".into()
}
fn default_leeway_secs() -> u64 {
    30
}

/// Who a valid token speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JwtIdentity {
    pub name: String,
    pub role: Role,
    pub patient_ids: Vec<String>,
    /// Whether the token shows multi-factor authentication.
    pub mfa: bool,
}

impl From<JwtIdentity> for Authenticated {
    fn from(j: JwtIdentity) -> Self {
        Authenticated {
            name: j.name,
            role: j.role,
            patient_ids: j.patient_ids,
        }
    }
}

/// Why a token was refused; the message is fit for a 401 response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the token is not a well-formed JWT: {0}")]
    Malformed(#[from] MalformedToken),
    #[error("unsupported token algorithm {0:?}: only RS256 and ES256 are accepted")]
    UnsupportedAlgorithm(String),
    #[error("the token's key id {0:?} is not in the identity provider's key set")]
    UnknownKeyId(String),
    #[error("the token names no key id (kid) and {candidates} keys of the key set fit {alg:?}")]
    MissingKeyId { alg: Algorithm, candidates: usize },
    #[error("the token says {alg:?} but key {kid:?} is for {key_alg:?}")]
    AlgorithmMismatch {
        kid: String,
        alg: Algorithm,
        key_alg: Algorithm,
    },
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token was issued by another issuer than {0:?}")]
    WrongIssuer(String),
    #[error("the token is not meant for this server (audience is not {0:?})")]
    WrongAudience(String),
    #[error("the token has no {0:?} claim")]
    MissingClaim(String),
    #[error("the token names no user ({0:?} or \"sub\")")]
    NoUser(String),
    #[error("token carries no PACS role")]
    NoRole,
    #[error("the token gives role patient but no Patient ID ({0:?})")]
    NoPatientIds(String),
    #[error("multi-factor authentication is required and the token shows none (amr/acr)")]
    MfaRequired,
    #[error("the identity provider's keys are unavailable: no key could be fetched from the identity provider yet")]
    KeysUnavailable,
    /// Anything else jsonwebtoken refuses (its error kinds are open-ended).
    #[error("the token was refused: {:?}", .0.kind())]
    Invalid(#[source] jsonwebtoken::errors::Error),
}

/// What is wrong with the shape of a token (before or while its signature is checked).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedToken {
    #[error("not three dot-separated parts")]
    Parts,
    #[error("header base64: {0}")]
    HeaderBase64(#[source] base64::DecodeError),
    #[error("header JSON: {0}")]
    HeaderJson(#[source] JsonError),
    #[error("alg is not a string")]
    AlgNotString,
    #[error("no alg in the header")]
    NoAlg,
    #[error("critical header extensions are not supported")]
    CriticalExtensions,
    #[error("kid is not a string")]
    KidNotString,
    /// jsonwebtoken's reading of the parts after ours.
    #[error("not three base64url parts")]
    NotBase64UrlParts,
    #[error("base64: {0}")]
    Base64(#[source] base64::DecodeError),
    #[error("JSON: {0}")]
    Json(#[source] JsonError),
    #[error("UTF-8: {0}")]
    Utf8(#[source] std::string::FromUtf8Error),
}

/// serde_json's error, shared as jsonwebtoken shares it, and compared by its message (serde_json
/// has no equality) so that [`JwtError`] stays `Clone` and `Eq` for callers and tests.
#[derive(Debug, Clone, thiserror::Error)]
#[error(transparent)]
pub struct JsonError(#[from] Arc<serde_json::Error>);

impl From<serde_json::Error> for JsonError {
    fn from(e: serde_json::Error) -> Self {
        JsonError(Arc::new(e))
    }
}

impl PartialEq for JsonError {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

impl Eq for JsonError {}

/// Errors of setting up validation (configuration and key loading).
#[derive(Debug, thiserror::Error)]
pub enum JwtSetupError {
    #[error("invalid [auth.oidc] settings: {0}")]
    Config(#[from] OidcConfigError),
    #[error("cannot read JWKS file {path}: {source}")]
    ReadJwks {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the JWKS from {origin} is not a JSON Web Key Set: {source}")]
    ParseJwks {
        origin: String,
        source: serde_json::Error,
    },
    #[error("the JWKS from {origin} has no RS256 or ES256 (P-256) signing key")]
    NoUsableKey { origin: String },
    #[error("cannot fetch the JWKS from {url}: {source}")]
    Fetch { url: String, source: FetchError },
}

/// What is wrong with the `[auth.oidc]` settings.
#[derive(Debug, thiserror::Error)]
pub enum OidcConfigError {
    #[error("issuer is empty")]
    EmptyIssuer,
    #[error("audience is empty")]
    EmptyAudience,
    #[error("give exactly one of jwks_file and jwks_url")]
    KeySource,
    #[error("jwks_url {url:?}: {source}")]
    JwksUrl {
        url: String,
        source: url::ParseError,
    },
    #[error("jwks_url {0:?} must be https (http only on loopback)")]
    InsecureJwksUrl(String),
    #[error("HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
}

/// Why a JWKS could not be fetched from its URL.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Http(#[source] reqwest::Error),
    #[error("HTTP status {0}")]
    Status(reqwest::StatusCode),
    #[error("larger than {} bytes", jwks::MAX_JWKS_BYTES)]
    TooLarge,
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::errors::ErrorKind;

    use super::*;

    /// The messages reach 401 responses and logs: the typed reasons read as the strings did.
    #[test]
    fn jwt_error_messages_name_the_reason() {
        assert_eq!(
            JwtError::from(MalformedToken::Parts).to_string(),
            "the token is not a well-formed JWT: not three dot-separated parts"
        );
        assert_eq!(
            JwtError::KeysUnavailable.to_string(),
            "the identity provider's keys are unavailable: no key could be fetched from the identity provider yet"
        );
        assert_eq!(
            JwtError::Invalid(ErrorKind::InvalidAlgorithm.into()).to_string(),
            "the token was refused: InvalidAlgorithm"
        );
        assert_eq!(
            JwtSetupError::from(OidcConfigError::KeySource).to_string(),
            "invalid [auth.oidc] settings: give exactly one of jwks_file and jwks_url"
        );
        assert_eq!(
            FetchError::TooLarge.to_string(),
            "larger than 1048576 bytes"
        );
    }
}
