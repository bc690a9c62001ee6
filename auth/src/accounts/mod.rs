//! Local accounts for sites without an identity provider: a TOML file of users (argon2id
//! password hashes, optional TOTP secrets, hashed API keys), read by the server and written by
//! `pacs user …` while the server runs; and in-memory login sessions.
//!
//! The file is the single source of truth: [`AccountsFile`] edits it (load, change, [`save`]),
//! [`Accounts`] is the server's read-only view, re-read when the file changes.
//!
//! The parts: `file` (the file format, its edits and atomic saves), `password` (argon2id),
//! `sessions` (session tokens and API keys), `view` (the server's view and the login checks).
//!
//! [`save`]: AccountsFile::save

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::role::Role;

mod file;
mod password;
mod sessions;
mod view;

#[cfg(test)]
mod fixtures;

pub use file::AccountsFile;
pub use password::HashError;
pub use sessions::{sha256_hex, Sessions};
pub use view::Accounts;

/// Shortest password accepted (NIST SP 800-63B asks for at least 8; clinical systems go longer).
pub const MIN_PASSWORD_LEN: usize = 12;
/// Longest password accepted, in bytes: hashing is deliberately costly, so bound the input.
pub const MAX_PASSWORD_LEN: usize = 1024;
/// Lifetime of a login session unless the caller picks another.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(15 * 60);
/// Longest session lifetime [`Sessions::issue`] grants, whatever it is asked for.
pub const MAX_SESSION_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Prefix of API keys.
pub const API_KEY_PREFIX: &str = "pacs_";
/// Prefix of session tokens; no API key starts with it, so the two cannot be confused.
pub const SESSION_PREFIX: &str = "pacs_s_";
/// Issuer shown by authenticator apps (and the label prefix of `otpauth://` URIs).
pub const TOTP_ISSUER: &str = "PACS";

/// One account, as stored in the file (`[[user]]` tables).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub name: String,
    pub role: Role,
    /// For role `patient`: the Patient IDs whose studies this person may see.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patient_ids: Vec<String>,
    /// argon2id PHC string; none for accounts that use API keys only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// Base32 TOTP secret; when present, password logins need a code too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp_secret: Option<String>,
    /// Hex SHA-256 of each API key (of the whole key text, prefix included).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_key_hashes: Vec<String>,
    #[serde(default)]
    pub disabled: bool,
    /// A verified HTTPS client certificate naming this account logs in as it (service
    /// accounts only: the certificate then stands in for every other factor).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub client_certificate: bool,
    /// RFC 3339 UTC time of creation.
    #[serde(default)]
    pub created: String,
}

// By hand so that logs never show the TOTP secret (a shared secret, unlike the hashes).
impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("patient_ids", &self.patient_ids)
            .field("has_password", &self.password_hash.is_some())
            .field("has_totp", &self.totp_secret.is_some())
            .field("api_keys", &self.api_key_hashes.len())
            .field("disabled", &self.disabled)
            .field("client_certificate", &self.client_certificate)
            .field("created", &self.created)
            .finish()
    }
}

/// Who a request acts for, once a password, API key or session token was accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Authenticated {
    pub name: String,
    pub role: Role,
    /// For role `patient`: the Patient IDs they may see; empty otherwise.
    pub patient_ids: Vec<String>,
}

impl From<&UserRecord> for Authenticated {
    fn from(u: &UserRecord) -> Self {
        Authenticated {
            name: u.name.clone(),
            role: u.role,
            patient_ids: u.patient_ids.clone(),
        }
    }
}

/// What a person must put in an authenticator app; shown once, when TOTP is enabled.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpEnrollment {
    /// Base32 secret, for typing in by hand.
    pub secret: String,
    /// `otpauth://totp/PACS:name?secret=…&issuer=PACS`, for a QR code.
    pub uri: String,
}

impl fmt::Debug for TotpEnrollment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpEnrollment { .. }")
    }
}

/// Result of [`AccountsFile::add_user`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub name: String,
    /// Present when TOTP was asked for.
    pub totp: Option<TotpEnrollment>,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("cannot read accounts file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("accounts file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("accounts file {path} has two users named {name:?}")]
    DuplicateInFile { path: PathBuf, name: String },
    #[error("cannot write accounts file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot serialize the accounts: {0}")]
    Serialize(#[from] toml::ser::Error),
    #[error("user {0:?} already exists")]
    Duplicate(String),
    #[error("no user {0:?}")]
    NoSuchUser(String),
    #[error("invalid user name {name:?}: {reason}")]
    BadName { name: String, reason: &'static str },
    #[error("the password is too short: at least {MIN_PASSWORD_LEN} characters")]
    PasswordTooShort,
    #[error("the password is too long: at most {MAX_PASSWORD_LEN} bytes")]
    PasswordTooLong,
    #[error("role patient needs at least one Patient ID")]
    PatientWithoutIds,
    #[error("Patient IDs apply to role patient only, not to {0}")]
    PatientIdsForRole(Role),
    #[error("invalid Patient ID {0:?}: ID or ID^^^ISSUER, each 1 to 64 characters, no backslash or control characters")]
    BadPatientId(String),
    #[error("cannot hash the password: {0}")]
    Hash(#[source] HashError),
    #[error("the system's random number generator failed: {0}")]
    Random(getrandom::Error),
    #[error("user {0:?} has TOTP: certificate login would skip its second factor (it is for service accounts)")]
    CertificateWithTotp(String),
    #[error("no API key of user {user:?} matches {key:?}")]
    NoSuchApiKey { user: String, key: String },
    #[error("{key:?} matches {count} API keys of user {user:?}: give more of the hash")]
    AmbiguousApiKey {
        user: String,
        key: String,
        count: usize,
    },
}

pub type Result<T, E = AccountsError> = std::result::Result<T, E>;

/// Why a password login was refused. [`LoginError::InvalidCredentials`] covers unknown users
/// and wrong passwords alike; the others are told only to someone who gave the right password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("invalid user name or password")]
    InvalidCredentials,
    #[error("the account is disabled")]
    Disabled,
    #[error("a TOTP code is required")]
    TotpRequired,
    #[error("the TOTP code is wrong or was already used")]
    TotpInvalid,
}

/// `N` bytes from the system's random number generator (salts, secrets, keys, tokens).
fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::getrandom(&mut buf).map_err(AccountsError::Random)?;
    Ok(buf)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
