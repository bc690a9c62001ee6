//! The server's read-only view of the accounts file: re-read when the file changes, and the
//! checks of a password login (with TOTP), an API key or a client certificate against it.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::file::AccountsFile;
use super::password::{hash_password_unchecked, verify_hash};
use super::sessions::sha256_hex;
use super::{
    random_bytes, unix_now, AccountsError, Authenticated, LoginError, Result, UserRecord,
    API_KEY_PREFIX, MAX_PASSWORD_LEN, SESSION_PREFIX,
};
use crate::clock::{self, Clock};
use crate::totp;

/// How often the server looks at the file's modification time.
const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

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
    for u in file.into_users() {
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

#[cfg(test)]
mod tests {
    use argon2::password_hash::PasswordHash;

    use super::super::fixtures::{current_code, temp_path, PW};
    use super::super::{Role, Sessions};
    use super::*;

    /// Accounts that look at the file on every call, for tests of reloading.
    fn open_eager(path: &Path) -> Arc<Accounts> {
        Accounts::open_with(path.to_path_buf(), Duration::ZERO, clock::system()).expect("open")
    }

    #[test]
    fn accounts_and_sessions_are_shareable_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Accounts>();
        send_sync::<Sessions>();
        send_sync::<Authenticated>();
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
}
