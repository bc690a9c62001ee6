//! Local accounts for sites without an identity provider: a TOML file of users (argon2id
//! password hashes, optional TOTP secrets, hashed API keys), read by the server and written by
//! `pacs user …` while the server runs; and in-memory login sessions.
//!
//! The file is the single source of truth: [`AccountsFile`] edits it (load, change, [`save`]),
//! [`Accounts`] is the server's read-only view, re-read when the file changes.
//!
//! [`save`]: AccountsFile::save

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::clock::{self, Clock};
use super::role::Role;
use super::totp;

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

/// How often the server looks at the file's modification time.
const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);
const MAX_NAME_LEN: usize = 64;
/// DICOM LO (Patient ID) holds at most 64 characters.
const MAX_PATIENT_ID_LEN: usize = 64;

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
    Hash(String),
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

/// The accounts file, for editing: load, change in memory, then [`AccountsFile::save`].
#[derive(Debug, Clone)]
pub struct AccountsFile {
    path: PathBuf,
    users: Vec<UserRecord>,
}

#[derive(Default, Serialize, Deserialize)]
struct FileBody {
    #[serde(default, rename = "user")]
    users: Vec<UserRecord>,
}

const FILE_HEADER: &str =
    "# PACS local accounts, written by `pacs user`. Keep this file mode 0600:\n\
# it holds password hashes and TOTP secrets. The server re-reads it when it changes.\n\n";

impl AccountsFile {
    /// Reads the file; a missing file is an empty set of accounts (the first `pacs user add`
    /// creates it).
    pub fn load(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(AccountsFile {
                    path,
                    users: Vec::new(),
                })
            }
            Err(source) => return Err(AccountsError::Read { path, source }),
        };
        warn_if_readable_by_others(&path);
        let body: FileBody = toml::from_str(&text).map_err(|e| AccountsError::Parse {
            path: path.clone(),
            source: Box::new(e),
        })?;
        let mut seen = std::collections::HashSet::new();
        for u in &body.users {
            if !seen.insert(u.name.as_str()) {
                return Err(AccountsError::DuplicateInFile {
                    path: path.clone(),
                    name: u.name.clone(),
                });
            }
        }
        Ok(AccountsFile {
            path,
            users: body.users,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the file atomically: a temporary file (mode 0600) in the same folder, fsync, then
    /// rename over the old one, so the server never reads half a file and a crash loses nothing.
    pub fn save(&self) -> Result<()> {
        let werr = |source| AccountsError::Write {
            path: self.path.clone(),
            source,
        };
        let body = FileBody {
            users: self.users.clone(),
        };
        let text = format!("{FILE_HEADER}{}", toml::to_string(&body)?);
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let file_name = self
            .path
            .file_name()
            .ok_or_else(|| werr(io::Error::other("the path names no file")))?;
        let tmp = dir.join(format!(
            ".{}.tmp.{}",
            file_name.to_string_lossy(),
            std::process::id()
        ));
        // A leftover from a crashed run of this pid would make create_new fail.
        let _ = fs::remove_file(&tmp);
        if let Err(e) =
            write_synced(&tmp, text.as_bytes()).and_then(|()| fs::rename(&tmp, &self.path))
        {
            let _ = fs::remove_file(&tmp);
            return Err(werr(e));
        }
        // The rename is durable only once the folder is synced; the data is safe already.
        #[cfg(unix)]
        if let Err(e) = fs::File::open(&dir).and_then(|d| d.sync_all()) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot fsync the accounts folder");
        }
        tracing::debug!(path = %self.path.display(), users = self.users.len(), "accounts saved");
        Ok(())
    }

    /// Adds a user (in memory; [`AccountsFile::save`] writes it). `password: None` makes an
    /// account that logs in with API keys only.
    pub fn add_user(
        &mut self,
        name: &str,
        role: Role,
        patient_ids: Vec<String>,
        password: Option<&str>,
        with_totp: bool,
    ) -> Result<NewUser> {
        validate_name(name)?;
        // Case-insensitive: "Alice" and "alice" side by side would confuse audit logs.
        if self.users.iter().any(|u| u.name.eq_ignore_ascii_case(name)) {
            return Err(AccountsError::Duplicate(name.to_string()));
        }
        validate_patient_ids(role, &patient_ids)?;
        let password_hash = password.map(hash_password).transpose()?;
        let (totp_secret, totp) = if with_totp {
            let e = new_totp(name)?;
            (Some(e.secret.clone()), Some(e))
        } else {
            (None, None)
        };
        self.users.push(UserRecord {
            name: name.to_string(),
            role,
            patient_ids,
            password_hash,
            totp_secret,
            api_key_hashes: Vec::new(),
            disabled: false,
            client_certificate: false,
            created: rfc3339_utc(SystemTime::now()),
        });
        tracing::info!(user = name, %role, totp = with_totp, "account added");
        Ok(NewUser {
            name: name.to_string(),
            totp,
        })
    }

    pub fn list(&self) -> &[UserRecord] {
        &self.users
    }

    pub fn get(&self, name: &str) -> Option<&UserRecord> {
        self.users.iter().find(|u| u.name == name)
    }

    fn get_mut(&mut self, name: &str) -> Result<&mut UserRecord> {
        self.users
            .iter_mut()
            .find(|u| u.name == name)
            .ok_or_else(|| AccountsError::NoSuchUser(name.to_string()))
    }

    pub fn remove_user(&mut self, name: &str) -> Result<UserRecord> {
        let i = self
            .users
            .iter()
            .position(|u| u.name == name)
            .ok_or_else(|| AccountsError::NoSuchUser(name.to_string()))?;
        tracing::info!(user = name, "account removed");
        Ok(self.users.remove(i))
    }

    pub fn set_disabled(&mut self, name: &str, disabled: bool) -> Result<()> {
        self.get_mut(name)?.disabled = disabled;
        tracing::info!(user = name, disabled, "account disabled flag set");
        Ok(())
    }

    /// Lets (or stops letting) a client certificate naming the account log in as it. Refused
    /// for an account with TOTP: the certificate would skip its second factor.
    pub fn set_client_certificate(&mut self, name: &str, allowed: bool) -> Result<()> {
        let user = self.get_mut(name)?;
        if allowed && user.totp_secret.is_some() {
            return Err(AccountsError::CertificateWithTotp(name.to_string()));
        }
        user.client_certificate = allowed;
        tracing::info!(user = name, allowed, "client certificate login set");
        Ok(())
    }

    /// Sets (or with `None` removes) the password.
    pub fn set_password(&mut self, name: &str, password: Option<&str>) -> Result<()> {
        let hash = password.map(hash_password).transpose()?;
        self.get_mut(name)?.password_hash = hash;
        tracing::info!(user = name, "password changed");
        Ok(())
    }

    /// Enables TOTP with a new secret (returned once), or disables it.
    pub fn set_totp(&mut self, name: &str, enabled: bool) -> Result<Option<TotpEnrollment>> {
        let user = self.get_mut(name)?;
        let enrollment = if enabled { Some(new_totp(name)?) } else { None };
        user.totp_secret = enrollment.as_ref().map(|e| e.secret.clone());
        tracing::info!(user = name, enabled, "TOTP secret set");
        Ok(enrollment)
    }

    /// A new API key for the user: returned once, only its hash is stored.
    pub fn create_api_key(&mut self, name: &str) -> Result<String> {
        let user = self.get_mut(name)?;
        let key = loop {
            let body = URL_SAFE_NO_PAD.encode(random_bytes::<32>()?);
            // "pacs_" + "s_…" would read as a session token: draw again (1 in 4096).
            if !body.starts_with("s_") {
                break format!("{API_KEY_PREFIX}{body}");
            }
        };
        user.api_key_hashes.push(sha256_hex(&key));
        tracing::info!(user = name, "API key created");
        Ok(key)
    }

    /// Removes an API key given as the key itself or as a prefix (8 or more hex digits) of its
    /// stored hash, as `pacs user list` shows it.
    pub fn remove_api_key(&mut self, name: &str, key_or_hash: &str) -> Result<()> {
        let user = self.get_mut(name)?;
        let (needle, whole) = if key_or_hash.starts_with(API_KEY_PREFIX) {
            (sha256_hex(key_or_hash), true)
        } else {
            (key_or_hash.to_ascii_lowercase(), false)
        };
        let no_such = || AccountsError::NoSuchApiKey {
            user: name.to_string(),
            key: key_or_hash.to_string(),
        };
        if !whole && (needle.len() < 8 || !needle.bytes().all(|b| b.is_ascii_hexdigit())) {
            return Err(no_such());
        }
        let matching: Vec<usize> = user
            .api_key_hashes
            .iter()
            .enumerate()
            .filter(|(_, h)| {
                if whole {
                    **h == needle
                } else {
                    h.starts_with(&needle)
                }
            })
            .map(|(i, _)| i)
            .collect();
        match matching.as_slice() {
            [] => Err(no_such()),
            [i] => {
                user.api_key_hashes.remove(*i);
                tracing::info!(user = name, "API key removed");
                Ok(())
            }
            many => Err(AccountsError::AmbiguousApiKey {
                user: name.to_string(),
                key: key_or_hash.to_string(),
                count: many.len(),
            }),
        }
    }
}

/// The server's view of the accounts file, shared between requests: re-read when the file's
/// modification time, size or inode changes, looked at no more than once per second.
pub struct Accounts {
    path: PathBuf,
    check_interval: Duration,
    clock: Arc<dyn Clock>,
    state: RwLock<State>,
    /// Last TOTP step accepted per user: a code is good for one login only (RFC 6238 §5.2).
    totp_last_step: Mutex<HashMap<String, u64>>,
    /// Hash of a random password, verified against when the user is unknown or has no
    /// password, so those answers take as long as a wrong password.
    dummy_hash: String,
    /// argon2 verifications run by [`Accounts::verify_password`] (every login attempt runs one,
    /// whoever it names).
    hash_verifications: AtomicU64,
}

struct State {
    users: HashMap<String, UserRecord>,
    /// API key hash → user name.
    by_api_key: HashMap<String, String>,
    stamp: Option<FileStamp>,
    checked: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    /// Changes on every save (rename of a new file), even within one mtime tick.
    inode: u64,
}

impl Accounts {
    /// Reads the file (missing: no accounts yet) and keeps watching it.
    pub fn open(path: impl Into<PathBuf>) -> Result<Arc<Accounts>> {
        Self::open_with(path.into(), RELOAD_CHECK_INTERVAL, clock::system())
    }

    fn open_with(
        path: PathBuf,
        check_interval: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Accounts>> {
        let dummy_password = URL_SAFE_NO_PAD.encode(random_bytes::<16>()?);
        let dummy_hash = hash_password_unchecked(&dummy_password)?;
        let (state, stamp) = load_state(&path)?;
        let accounts = Accounts {
            path,
            check_interval,
            state: RwLock::new(State {
                users: state.0,
                by_api_key: state.1,
                stamp,
                checked: clock.now(),
            }),
            clock,
            totp_last_step: Mutex::new(HashMap::new()),
            dummy_hash,
            hash_verifications: AtomicU64::new(0),
        };
        tracing::info!(
            path = %accounts.path.display(),
            users = accounts.read().users.len(),
            "local accounts loaded"
        );
        Ok(Arc::new(accounts))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves consistent data (every write replaces
        // whole maps), so poisoning is ignored.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Re-reads the file if it changed, at most once per check interval.
    fn refresh(&self) {
        let since = |checked: Instant| self.clock.now().saturating_duration_since(checked);
        if since(self.read().checked) < self.check_interval {
            return;
        }
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if since(state.checked) < self.check_interval {
            return; // another thread just looked
        }
        state.checked = self.clock.now();
        let stamp = match stamp_of(&self.path) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "cannot stat the accounts file; keeping the accounts in memory");
                return;
            }
        };
        if stamp == state.stamp {
            return;
        }
        match load_state(&self.path) {
            Ok(((users, by_api_key), stamp)) => {
                tracing::info!(path = %self.path.display(), users = users.len(), "accounts file changed: reloaded");
                state.users = users;
                state.by_api_key = by_api_key;
                state.stamp = stamp;
            }
            Err(e) => {
                // Keep serving the last good accounts; an edit in progress or a typo must not
                // lock everyone out. The stamp is kept so the error is logged once per change.
                tracing::error!(error = %e, "accounts file unreadable; keeping the previous accounts");
                state.stamp = stamp;
            }
        }
    }

    /// Re-reads the file now, whatever its modification time.
    pub fn reload(&self) -> Result<()> {
        let ((users, by_api_key), stamp) = load_state(&self.path)?;
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.users = users;
        state.by_api_key = by_api_key;
        state.stamp = stamp;
        state.checked = self.clock.now();
        Ok(())
    }

    /// Checks a password login. CPU-heavy on purpose (argon2id, tens of milliseconds): call it
    /// from a blocking thread (`tokio::task::spawn_blocking`).
    pub fn verify_password(
        &self,
        name: &str,
        password: &str,
        totp_code: Option<&str>,
    ) -> Result<Authenticated, LoginError> {
        self.refresh();
        let user = self.read().users.get(name).cloned();
        if password.len() > MAX_PASSWORD_LEN {
            tracing::info!(user = name, "login refused: password longer than allowed");
            return Err(LoginError::InvalidCredentials);
        }
        let stored = user.as_ref().and_then(|u| u.password_hash.as_deref());
        let password_ok = self.verify_hash(stored.unwrap_or(&self.dummy_hash), password, name)
            && stored.is_some();
        let user = match user {
            Some(u) if password_ok => u,
            Some(_) => {
                tracing::info!(
                    user = name,
                    "login refused: wrong password or no password set"
                );
                return Err(LoginError::InvalidCredentials);
            }
            None => {
                tracing::info!(user = name, "login refused: unknown user");
                return Err(LoginError::InvalidCredentials);
            }
        };
        if user.disabled {
            tracing::info!(user = name, "login refused: account disabled");
            return Err(LoginError::Disabled);
        }
        if let Some(secret) = &user.totp_secret {
            let Some(code) = totp_code else {
                tracing::info!(user = name, "login needs a TOTP code");
                return Err(LoginError::TotpRequired);
            };
            let secret = match totp::decode_base32(secret) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(user = name, error = %e, "stored TOTP secret is not base32; login refused");
                    return Err(LoginError::TotpInvalid);
                }
            };
            let Some(step) = totp::verify_step(&secret, code, unix_now()) else {
                tracing::info!(user = name, "login refused: wrong TOTP code");
                return Err(LoginError::TotpInvalid);
            };
            let mut last = self
                .totp_last_step
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if last.get(name).is_some_and(|&l| step <= l) {
                tracing::warn!(user = name, "login refused: TOTP code replayed");
                return Err(LoginError::TotpInvalid);
            }
            last.insert(name.to_string(), step);
        }
        tracing::info!(user = name, role = %user.role, "password login accepted");
        Ok(Authenticated::from(&user))
    }

    /// [`verify_hash`], counted (tests check that every login attempt pays for one).
    fn verify_hash(&self, phc: &str, password: &str, user: &str) -> bool {
        self.hash_verifications.fetch_add(1, Ordering::Relaxed);
        verify_hash(phc, password, user)
    }

    /// The account an API key belongs to, if the key is known and the account enabled.
    /// Looked up by the key's SHA-256: the map lookup on a hash of a 256-bit random key leaks
    /// nothing usable through timing, so no constant-time comparison is needed.
    pub fn verify_api_key(&self, key: &str) -> Option<Authenticated> {
        if !key.starts_with(API_KEY_PREFIX) || key.starts_with(SESSION_PREFIX) {
            return None;
        }
        self.refresh();
        let hash = sha256_hex(key);
        let state = self.read();
        let Some(user) = state
            .by_api_key
            .get(&hash)
            .and_then(|name| state.users.get(name))
        else {
            tracing::info!(key_hash = &hash[..12], "unknown API key");
            return None;
        };
        if user.disabled {
            tracing::info!(user = %user.name, "API key of a disabled account refused");
            return None;
        }
        Some(Authenticated::from(user))
    }

    /// The account a verified client certificate names, if it exists, is enabled and is
    /// marked for certificate login (`pacs user certificate NAME`).
    pub fn for_certificate(&self, name: &str) -> Option<Authenticated> {
        self.refresh();
        let state = self.read();
        let user = state.users.get(name).filter(|u| !u.disabled)?;
        if !user.client_certificate {
            tracing::warn!(
                user = name,
                "client certificate names an account not marked for certificate login"
            );
            return None;
        }
        Some(Authenticated::from(user))
    }

    /// The account as it is now, if it exists and is enabled: lets a session notice that its
    /// user was disabled, removed or given another role since login.
    pub fn current(&self, name: &str) -> Option<Authenticated> {
        self.refresh();
        self.read()
            .users
            .get(name)
            .filter(|u| !u.disabled)
            .map(Authenticated::from)
    }
}

/// Creates `path` (mode 0600 on unix: never readable by others, not even briefly), writes
/// `bytes` and flushes them to disk.
fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

type UserMaps = (HashMap<String, UserRecord>, HashMap<String, String>);

fn load_state(path: &Path) -> Result<(UserMaps, Option<FileStamp>)> {
    // Stamp first: if the file changes between stat and read, the next check reloads again.
    let stamp = stamp_of(path).map_err(|source| AccountsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let file = AccountsFile::load(path)?;
    let mut users = HashMap::new();
    let mut by_api_key = HashMap::new();
    for u in file.users {
        for h in &u.api_key_hashes {
            by_api_key.insert(h.to_ascii_lowercase(), u.name.clone());
        }
        users.insert(u.name.clone(), u);
    }
    Ok(((users, by_api_key), stamp))
}

fn stamp_of(path: &Path) -> io::Result<Option<FileStamp>> {
    match fs::metadata(path) {
        Ok(m) => Ok(Some(FileStamp {
            modified: m.modified().ok(),
            len: m.len(),
            #[cfg(unix)]
            inode: std::os::unix::fs::MetadataExt::ino(&m),
            #[cfg(not(unix))]
            inode: 0,
        })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = fs::metadata(path) {
        if m.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", m.permissions().mode() & 0o777),
                "accounts file is readable by group or others; it should be mode 0600"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// In-memory login sessions (lost on restart: people log in again). Tokens are stored by their
/// SHA-256, so a memory dump does not hand out live tokens.
pub struct Sessions {
    inner: Mutex<HashMap<[u8; 32], Session>>,
    clock: Arc<dyn Clock>,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::with_clock(clock::system())
    }
}

struct Session {
    who: Authenticated,
    expires: Instant,
}

/// Expired sessions are swept on issue once there are more than this many.
const SWEEP_ABOVE: usize = 1024;

impl Sessions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sessions that expire by `clock` (tests move a [`clock::ManualClock`]).
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Sessions {
            inner: Mutex::new(HashMap::new()),
            clock,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session token for `who`, valid for `ttl` (at most [`MAX_SESSION_TTL`]).
    pub fn issue(&self, who: Authenticated, ttl: Duration) -> Result<String> {
        let token = format!(
            "{SESSION_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(random_bytes::<32>()?)
        );
        let now = self.clock.now();
        let expires = now.checked_add(ttl.min(MAX_SESSION_TTL)).unwrap_or(now);
        let mut map = self.lock();
        if map.len() > SWEEP_ABOVE {
            map.retain(|_, s| s.expires > now);
        }
        tracing::debug!(user = %who.name, ttl_secs = ttl.as_secs(), "session issued");
        map.insert(token_key(&token), Session { who, expires });
        Ok(token)
    }

    /// Who the token's session is for, unless unknown or expired (an expired one is dropped).
    pub fn lookup(&self, token: &str) -> Option<Authenticated> {
        if !token.starts_with(SESSION_PREFIX) {
            return None;
        }
        let key = token_key(token);
        let mut map = self.lock();
        let session = map.get(&key)?;
        if session.expires <= self.clock.now() {
            map.remove(&key);
            return None;
        }
        Some(session.who.clone())
    }

    /// Ends a session (logout). Whether it existed.
    pub fn revoke(&self, token: &str) -> bool {
        self.lock().remove(&token_key(token)).is_some()
    }

    /// Ends every session of a user (disabled account, changed password). How many.
    pub fn revoke_user(&self, name: &str) -> usize {
        let mut map = self.lock();
        let before = map.len();
        map.retain(|_, s| s.who.name != name);
        before - map.len()
    }

    /// Drops expired sessions; how many. For a periodic sweep.
    pub fn purge_expired(&self) -> usize {
        let now = self.clock.now();
        let mut map = self.lock();
        let before = map.len();
        map.retain(|_, s| s.expires > now);
        before - map.len()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn token_key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn validate_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(AccountsError::BadName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return bad("1 to 64 characters");
    }
    // Names go into logs, audit records and otpauth URIs: keep them to a plain alphabet.
    if !name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
    {
        return bad("must start with a letter or digit");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'@'))
    {
        return bad("only letters, digits and . - _ @");
    }
    Ok(())
}

fn validate_patient_ids(role: Role, ids: &[String]) -> Result<()> {
    match (role, ids.is_empty()) {
        (Role::Patient, true) => return Err(AccountsError::PatientWithoutIds),
        (Role::Patient, false) | (_, true) => {}
        (other, false) => return Err(AccountsError::PatientIdsForRole(other)),
    }
    // `ID` or `ID^^^ISSUER` (Issuer of Patient ID, HL7 CX notation): each a DICOM LO.
    let bad_lo = |v: &str| {
        v.trim().is_empty()
            || v.chars().count() > MAX_PATIENT_ID_LEN
            || v.chars().any(|c| c == '\\' || c.is_control())
    };
    for id in ids {
        let (pid, issuer) = id.split_once("^^^").unwrap_or((id, "x"));
        if bad_lo(pid) || bad_lo(issuer) {
            return Err(AccountsError::BadPatientId(id.clone()));
        }
    }
    Ok(())
}

fn hash_password(password: &str) -> Result<String> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(AccountsError::PasswordTooShort);
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(AccountsError::PasswordTooLong);
    }
    hash_password_unchecked(password)
}

/// argon2id with the crate's defaults (19 MiB, 2 passes, 1 lane: OWASP's recommendation).
fn hash_password_unchecked(password: &str) -> Result<String> {
    let salt = SaltString::encode_b64(&random_bytes::<16>()?)
        .map_err(|e| AccountsError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AccountsError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string; the parameters come from the string itself.
fn verify_hash(phc: &str, password: &str, user: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(e) => {
            tracing::error!(user, error = %e, "stored password hash is not a valid PHC string");
            false
        }
    }
}

fn new_totp(name: &str) -> Result<TotpEnrollment> {
    let secret = totp::encode_base32(&random_bytes::<{ totp::SECRET_LEN }>()?);
    let uri = format!(
        "otpauth://totp/{issuer}:{label}?secret={secret}&issuer={issuer}",
        issuer = TOTP_ISSUER,
        label = percent_encode(name),
    );
    Ok(TotpEnrollment { secret, uri })
}

/// Percent-encodes all but RFC 3986 unreserved characters (user names may hold `@`).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::getrandom(&mut buf).map_err(AccountsError::Random)?;
    Ok(buf)
}

/// Lower-case hex SHA-256 of a text (API keys are stored this way).
pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `YYYY-MM-DDTHH:MM:SSZ` (no date crate in the workspace; Hinnant's days-to-civil).
fn rfc3339_utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PW: &str = "correct horse battery";

    fn temp_path() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("users.toml");
        (dir, path)
    }

    /// Accounts that look at the file on every call, for tests of reloading.
    fn open_eager(path: &Path) -> Arc<Accounts> {
        Accounts::open_with(path.to_path_buf(), Duration::ZERO, clock::system()).expect("open")
    }

    fn current_code(secret_b32: &str) -> String {
        let secret = totp::decode_base32(secret_b32).expect("base32");
        totp::generate(&secret, unix_now()).expect("code")
    }

    #[test]
    fn accounts_add_save_load_round_trip() {
        let (_dir, path) = temp_path();
        let mut file = AccountsFile::load(&path).expect("missing file is empty");
        assert!(file.list().is_empty());
        let new = file
            .add_user("alice", Role::Radiologist, vec![], Some(PW), false)
            .expect("add");
        assert_eq!(new.name, "alice");
        assert!(new.totp.is_none());
        file.add_user(
            "pat.1",
            Role::Patient,
            vec!["PID-1".into(), "PID-2".into()],
            Some(PW),
            true,
        )
        .expect("add patient");
        file.add_user("ai", Role::AiService, vec![], None, false)
            .expect("add service");
        file.save().expect("save");

        let text = fs::read_to_string(&path).expect("read");
        assert!(text.starts_with("# PACS local accounts"));
        assert!(text.contains("[[user]]"));
        assert!(text.contains("role = \"ai-service\""));
        assert!(text.contains("$argon2id$"), "{text}");
        assert!(!text.contains(PW));

        let again = AccountsFile::load(&path).expect("load");
        assert_eq!(again.list(), file.list());
        let pat = again.get("pat.1").expect("patient");
        assert_eq!(pat.patient_ids, ["PID-1", "PID-2"]);
        assert!(pat.totp_secret.is_some());
        assert!(again.get("ai").expect("ai").password_hash.is_none());
        // created is RFC 3339 UTC.
        assert_eq!(pat.created.len(), 20);
        assert!(pat.created.ends_with('Z'));
    }

    #[cfg(unix)]
    #[test]
    fn accounts_file_is_saved_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, path) = temp_path();
        let mut file = AccountsFile::load(&path).expect("load");
        file.add_user("alice", Role::Admin, vec![], Some(PW), false)
            .expect("add");
        file.save().expect("save");
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("readdir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("users.toml")]);
    }

    #[test]
    fn accounts_add_user_refuses_duplicates_bad_names_and_bad_input() {
        let (_dir, path) = temp_path();
        let mut file = AccountsFile::load(&path).expect("load");
        file.add_user("alice", Role::Admin, vec![], Some(PW), false)
            .expect("add");
        assert!(matches!(
            file.add_user("alice", Role::Billing, vec![], Some(PW), false),
            Err(AccountsError::Duplicate(_))
        ));
        assert!(matches!(
            file.add_user("ALICE", Role::Billing, vec![], Some(PW), false),
            Err(AccountsError::Duplicate(_))
        ));
        let long = "a".repeat(65);
        for bad in [
            "",
            "-x",
            ".x",
            "a b",
            "a:b",
            "a/b",
            "é",
            "a\nb",
            long.as_str(),
        ] {
            assert!(
                matches!(
                    file.add_user(bad, Role::Admin, vec![], Some(PW), false),
                    Err(AccountsError::BadName { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            file.add_user("bob", Role::Admin, vec![], Some("short"), false),
            Err(AccountsError::PasswordTooShort)
        ));
        assert!(matches!(
            file.add_user("bob", Role::Patient, vec![], Some(PW), false),
            Err(AccountsError::PatientWithoutIds)
        ));
        assert!(matches!(
            file.add_user("bob", Role::Radiologist, vec!["P1".into()], Some(PW), false),
            Err(AccountsError::PatientIdsForRole(Role::Radiologist))
        ));
        assert!(matches!(
            file.add_user("bob", Role::Patient, vec!["A\\B".into()], Some(PW), false),
            Err(AccountsError::BadPatientId(_))
        ));
        assert_eq!(file.list().len(), 1);
        file.add_user("bob@example.org", Role::Ehr, vec![], None, false)
            .expect("email-like name");
    }

    #[test]
    fn accounts_totp_enrollment_uri() {
        let (_dir, path) = temp_path();
        let mut file = AccountsFile::load(&path).expect("load");
        let new = file
            .add_user(
                "bob@example.org",
                Role::Technologist,
                vec![],
                Some(PW),
                true,
            )
            .expect("add");
        let totp = new.totp.expect("totp requested");
        assert_eq!(totp.secret.len(), 32);
        assert_eq!(
            totp::decode_base32(&totp.secret).expect("base32").len(),
            totp::SECRET_LEN
        );
        assert_eq!(
            totp.uri,
            format!(
                "otpauth://totp/PACS:bob%40example.org?secret={}&issuer=PACS",
                totp.secret
            )
        );
        assert_eq!(
            file.get("bob@example.org")
                .expect("user")
                .totp_secret
                .as_deref(),
            Some(totp.secret.as_str())
        );
        // Debug output never shows the secret.
        assert!(!format!("{:?}", file.list()).contains(&totp.secret));
        assert!(!format!("{totp:?}").contains(&totp.secret));
    }

    #[test]
    fn accounts_verify_password() {
        let (_dir, path) = temp_path();
        let mut file = AccountsFile::load(&path).expect("load");
        file.add_user("alice", Role::Radiologist, vec![], Some(PW), false)
            .expect("add");
        file.add_user("svc", Role::AiService, vec![], None, false)
            .expect("add");
        file.save().expect("save");
        let accounts = Accounts::open(&path).expect("open");

        let who = accounts
            .verify_password("alice", PW, None)
            .expect("right password");
        assert_eq!(
            who,
            Authenticated {
                name: "alice".into(),
                role: Role::Radiologist,
                patient_ids: vec![],
            }
        );
        // Wrong password, unknown user and password-less account: one and the same answer.
        for (user, pw) in [
            ("alice", "wrong password!!"),
            ("mallory", PW),
            ("svc", PW),
            ("svc", ""),
            ("alice", ""),
        ] {
            assert_eq!(
                accounts.verify_password(user, pw, None),
                Err(LoginError::InvalidCredentials),
                "{user}/{pw}"
            );
        }
        let huge = "x".repeat(MAX_PASSWORD_LEN + 1);
        assert_eq!(
            accounts.verify_password("alice", &huge, None),
            Err(LoginError::InvalidCredentials)
        );
    }

    #[test]
    fn accounts_unknown_user_costs_an_argon2_verification() {
        let (_dir, path) = temp_path();
        let mut file = AccountsFile::load(&path).expect("load");
        file.add_user("alice", Role::Radiologist, vec![], Some(PW), false)
            .expect("add");
        file.save().expect("save");
        let accounts = Accounts::open(&path).expect("open");
        // Not timed (a shared machine makes timings noise): the cost of a refusal is one argon2
        // verification, so every refusal must run one, and the dummy hash it runs for an
        // unknown user must cost what a real one does (same algorithm, version, parameters).
        let verifications = |user: &str| {
            let before = accounts.hash_verifications.load(Ordering::Relaxed);
            assert!(accounts
                .verify_password(user, "wrong password!!", None)
                .is_err());
            accounts.hash_verifications.load(Ordering::Relaxed) - before
        };
        assert_eq!(verifications("alice"), 1, "wrong password");
        assert_eq!(verifications("nobody"), 1, "unknown user");
        let real = file.get("alice").and_then(|u| u.password_hash.clone());
        let real = real.expect("alice has a password");
        let real = PasswordHash::new(&real).expect("PHC");
        let dummy = PasswordHash::new(&accounts.dummy_hash).expect("PHC");
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(dummy.params, real.params);
        assert_eq!(
            dummy.hash.map(|h| h.len()),
            real.hash.map(|h| h.len()),
            "output length"
        );
    }

    #[test]
    fn accounts_disabled_user_is_refused_everywhere() {
        let (_dir, path) = temp_path();
        let mut file = AccountsFile::load(&path).expect("load");
        file.add_user("alice", Role::Billing, vec![], Some(PW), false)
            .expect("add");
        let key = file.create_api_key("alice").expect("key");
        file.set_disabled("alice", true).expect("disable");
        file.save().expect("save");
        let accounts = Accounts::open(&path).expect("open");
        assert_eq!(
            accounts.verify_password("alice", PW, None),
            Err(LoginError::Disabled)
        );
        // A wrong password on a disabled account does not reveal that it is disabled.
        assert_eq!(
            accounts.verify_password("alice", "wrong password!!", None),
            Err(LoginError::InvalidCredentials)
        );
        assert_eq!(accounts.verify_api_key(&key), None);
        assert_eq!(accounts.current("alice"), None);
        assert!(matches!(
            file.set_disabled("nobody", true),
            Err(AccountsError::NoSuchUser(_))
        ));
    }

    #[test]
    fn accounts_totp_required_checked_and_not_replayable() {
        let (_dir, path) = temp_path();
        let mut file = AccountsFile::load(&path).expect("load");
        let new = file
            .add_user("alice", Role::Admin, vec![], Some(PW), true)
            .expect("add");
        let secret = new.totp.expect("totp").secret;
        file.save().expect("save");
        let accounts = Accounts::open(&path).expect("open");

        assert_eq!(
            accounts.verify_password("alice", PW, None),
            Err(LoginError::TotpRequired)
        );
        let code = current_code(&secret);
        let wrong = format!(
            "{:06}",
            (code.parse::<u32>().expect("digits") + 1) % 1_000_000
        );
        assert_eq!(
            accounts.verify_password("alice", PW, Some(&wrong)),
            Err(LoginError::TotpInvalid)
        );
        // A TOTP code does not rescue a wrong password.
        assert_eq!(
            accounts.verify_password("alice", "wrong password!!", Some(&code)),
            Err(LoginError::InvalidCredentials)
        );
        // (A code stays good for one step after its own, so a step boundary cannot flake this.)
        let who = accounts
            .verify_password("alice", PW, Some(&code))
            .expect("right code");
        assert_eq!(who.role, Role::Admin);
        // The same code again is a replay.
        assert_eq!(
            accounts.verify_password("alice", PW, Some(&code)),
            Err(LoginError::TotpInvalid)
        );
    }

    #[test]
    fn accounts_api_keys_create_verify_remove() {
        let (_dir, path) = temp_path();
        let mut file = AccountsFile::load(&path).expect("load");
        file.add_user("pacs-ai", Role::AiService, vec![], None, false)
            .expect("add");
        let key1 = file.create_api_key("pacs-ai").expect("key");
        let key2 = file.create_api_key("pacs-ai").expect("key");
        assert!(key1.starts_with(API_KEY_PREFIX) && !key1.starts_with(SESSION_PREFIX));
        assert_eq!(key1.len(), API_KEY_PREFIX.len() + 43);
        assert_ne!(key1, key2);
        let stored = &file.get("pacs-ai").expect("user").api_key_hashes;
        assert_eq!(stored, &[sha256_hex(&key1), sha256_hex(&key2)]);
        file.save().expect("save");
        let text = fs::read_to_string(&path).expect("read");
        assert!(
            !text.contains(&key1[API_KEY_PREFIX.len()..]),
            "key stored in clear"
        );

        let accounts = open_eager(&path);
        let who = accounts.verify_api_key(&key1).expect("key1");
        assert_eq!((who.name.as_str(), who.role), ("pacs-ai", Role::AiService));
        assert!(accounts.verify_api_key(&key2).is_some());
        assert_eq!(accounts.verify_api_key("pacs_nope"), None);
        assert_eq!(accounts.verify_api_key(&key1[1..]), None);
        assert_eq!(accounts.verify_api_key(""), None);

        // Remove key1 by the key itself, key2 by a prefix of its hash.
        file.remove_api_key("pacs-ai", &key1)
            .expect("remove by key");
        assert!(matches!(
            file.remove_api_key("pacs-ai", "abc"),
            Err(AccountsError::NoSuchApiKey { .. })
        ));
        file.remove_api_key("pacs-ai", &sha256_hex(&key2)[..10])
            .expect("remove by hash prefix");
        assert!(matches!(
            file.remove_api_key("pacs-ai", &key2),
            Err(AccountsError::NoSuchApiKey { .. })
        ));
        file.save().expect("save");
        assert_eq!(accounts.verify_api_key(&key1), None);
        assert_eq!(accounts.verify_api_key(&key2), None);
        assert!(matches!(
            file.create_api_key("nobody"),
            Err(AccountsError::NoSuchUser(_))
        ));
    }

    #[test]
    fn accounts_reload_when_the_file_changes() {
        let (_dir, path) = temp_path();
        let accounts = open_eager(&path);
        assert_eq!(
            accounts.verify_password("alice", PW, None),
            Err(LoginError::InvalidCredentials)
        );
        // `pacs user add` in another process while the server runs.
        let mut file = AccountsFile::load(&path).expect("load");
        file.add_user("alice", Role::Radiologist, vec![], Some(PW), false)
            .expect("add");
        file.save().expect("save");
        assert!(accounts.verify_password("alice", PW, None).is_ok());
        file.set_disabled("alice", true).expect("disable");
        file.save().expect("save");
        assert_eq!(accounts.current("alice"), None);

        // A broken file keeps the last good accounts.
        fs::write(&path, "[[user]]\nname = ").expect("write");
        assert!(accounts.current("alice").is_none());
        file.set_disabled("alice", false).expect("enable");
        file.save().expect("save");
        assert!(accounts.current("alice").is_some());
        fs::write(&path, "this is not toml =").expect("write");
        assert!(accounts.current("alice").is_some(), "kept after a bad edit");
        assert!(accounts.reload().is_err());
    }

    #[test]
    fn accounts_reload_is_checked_at_most_once_per_interval() {
        let (_dir, path) = temp_path();
        let clock = clock::ManualClock::new();
        let accounts =
            Accounts::open_with(path.clone(), RELOAD_CHECK_INTERVAL, clock.clone()).expect("open");
        let mut file = AccountsFile::load(&path).expect("load");
        file.add_user("alice", Role::Radiologist, vec![], None, false)
            .expect("add");
        file.save().expect("save");
        // Within the interval the old (empty) view stands, up to its last instant.
        assert_eq!(accounts.current("alice"), None);
        clock.advance(RELOAD_CHECK_INTERVAL - Duration::from_millis(1));
        assert_eq!(accounts.current("alice"), None);
        // Once it has passed, the file is looked at again.
        clock.advance(Duration::from_millis(1));
        assert!(accounts.current("alice").is_some());
        // A forced reload sees a change at once.
        file.set_disabled("alice", true).expect("disable");
        file.save().expect("save");
        assert!(accounts.current("alice").is_some(), "within the interval");
        accounts.reload().expect("reload");
        assert_eq!(accounts.current("alice"), None);
    }

    #[test]
    fn accounts_load_refuses_a_file_with_duplicate_names() {
        let (_dir, path) = temp_path();
        fs::write(
            &path,
            "[[user]]\nname = \"a\"\nrole = \"admin\"\n[[user]]\nname = \"a\"\nrole = \"ehr\"\n",
        )
        .expect("write");
        assert!(matches!(
            AccountsFile::load(&path),
            Err(AccountsError::DuplicateInFile { .. })
        ));
        fs::write(&path, "[[user]]\nname = \"a\"\nrole = \"root\"\n").expect("write");
        let err = AccountsFile::load(&path).expect_err("unknown role");
        assert!(err.to_string().contains("users.toml"), "{err}");
    }

    #[test]
    fn accounts_set_password_totp_and_remove() {
        let (_dir, path) = temp_path();
        let mut file = AccountsFile::load(&path).expect("load");
        file.add_user("alice", Role::Admin, vec![], None, false)
            .expect("add");
        file.set_password("alice", Some("a new long password"))
            .expect("set");
        assert!(matches!(
            file.set_password("alice", Some("short")),
            Err(AccountsError::PasswordTooShort)
        ));
        let e = file.set_totp("alice", true).expect("totp").expect("secret");
        assert_eq!(
            file.get("alice").expect("user").totp_secret.as_deref(),
            Some(e.secret.as_str())
        );
        assert_eq!(file.set_totp("alice", false).expect("totp off"), None);
        file.save().expect("save");
        let accounts = Accounts::open(&path).expect("open");
        assert!(accounts
            .verify_password("alice", "a new long password", None)
            .is_ok());
        assert_eq!(file.remove_user("alice").expect("remove").name, "alice");
        assert!(file.list().is_empty());
    }

    fn someone(name: &str) -> Authenticated {
        Authenticated {
            name: name.into(),
            role: Role::Patient,
            patient_ids: vec!["P1".into()],
        }
    }

    #[test]
    fn accounts_and_sessions_are_shareable_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Accounts>();
        send_sync::<Sessions>();
        send_sync::<Authenticated>();
    }

    #[test]
    fn sessions_issue_lookup_revoke() {
        let sessions = Sessions::new();
        let token = sessions
            .issue(someone("pat"), DEFAULT_SESSION_TTL)
            .expect("issue");
        assert!(token.starts_with(SESSION_PREFIX));
        assert_eq!(token.len(), SESSION_PREFIX.len() + 43);
        assert_eq!(sessions.lookup(&token), Some(someone("pat")));
        assert_eq!(sessions.lookup(&format!("{token}x")), None);
        assert_eq!(sessions.lookup("pacs_s_"), None);
        assert!(sessions.revoke(&token));
        assert!(!sessions.revoke(&token));
        assert_eq!(sessions.lookup(&token), None);
    }

    #[test]
    fn sessions_expire_and_are_removed() {
        let clock = clock::ManualClock::new();
        let sessions = Sessions::with_clock(clock.clone());
        let token = sessions
            .issue(someone("pat"), DEFAULT_SESSION_TTL)
            .expect("issue");
        assert!(sessions.lookup(&token).is_some());
        clock.advance(DEFAULT_SESSION_TTL - Duration::from_millis(1));
        assert!(
            sessions.lookup(&token).is_some(),
            "valid to its last instant"
        );
        clock.advance(Duration::from_millis(1));
        assert_eq!(sessions.lookup(&token), None, "expired at its end");
        assert!(sessions.is_empty(), "expired session removed on lookup");

        // A longer lifetime than the cap is cut to the cap.
        let capped = sessions
            .issue(someone("pat"), MAX_SESSION_TTL * 2)
            .expect("issue");
        clock.advance(MAX_SESSION_TTL);
        assert_eq!(sessions.lookup(&capped), None, "capped at MAX_SESSION_TTL");

        let _a = sessions.issue(someone("a"), Duration::ZERO).expect("issue");
        let _b = sessions
            .issue(someone("b"), DEFAULT_SESSION_TTL)
            .expect("issue");
        assert_eq!(sessions.purge_expired(), 1);
        assert_eq!(sessions.len(), 1);
    }

    #[test]
    fn sessions_revoke_user_ends_all_of_theirs() {
        let sessions = Sessions::new();
        let t1 = sessions
            .issue(someone("a"), DEFAULT_SESSION_TTL)
            .expect("issue");
        let t2 = sessions
            .issue(someone("a"), DEFAULT_SESSION_TTL)
            .expect("issue");
        let t3 = sessions
            .issue(someone("b"), DEFAULT_SESSION_TTL)
            .expect("issue");
        assert_ne!(t1, t2);
        assert_eq!(sessions.revoke_user("a"), 2);
        assert_eq!(sessions.lookup(&t1), None);
        assert_eq!(sessions.lookup(&t2), None);
        assert!(sessions.lookup(&t3).is_some());
    }

    #[test]
    fn accounts_rfc3339_formatting() {
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_234_567_890);
        assert_eq!(rfc3339_utc(t), "2009-02-13T23:31:30Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339_utc(leap), "2000-02-29T00:00:00Z");
    }
}
