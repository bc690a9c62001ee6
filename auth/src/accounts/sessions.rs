//! The bearer secrets of local accounts: login sessions, held in memory, and API keys, whose
//! SHA-256 is kept in the accounts file. Both are random 256-bit values behind a prefix that
//! says which one a token is.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use super::{random_bytes, Authenticated, Result, API_KEY_PREFIX, MAX_SESSION_TTL, SESSION_PREFIX};
use crate::clock::{self, Clock};

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

/// A new API key: returned once to the person who asked; only its [`sha256_hex`] is stored.
pub(super) fn new_api_key() -> Result<String> {
    loop {
        let body = URL_SAFE_NO_PAD.encode(random_bytes::<32>()?);
        // "pacs_" + "s_…" would read as a session token: draw again (1 in 4096).
        if !body.starts_with("s_") {
            return Ok(format!("{API_KEY_PREFIX}{body}"));
        }
    }
}

/// Lower-case hex SHA-256 of a text (API keys are stored this way).
pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::{Role, DEFAULT_SESSION_TTL};
    use super::*;

    fn someone(name: &str) -> Authenticated {
        Authenticated {
            name: name.into(),
            role: Role::Patient,
            patient_ids: vec!["P1".into()],
        }
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
}
