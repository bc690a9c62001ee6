//! Password guessing: failed logins counted per user name and per source address. Too many
//! within a window lock the name (or the address) out for a while, whatever is sent next,
//! the right password included. Both tables are bounded; when one is full the entry with the
//! oldest last failure that is *not* locked makes room, so spraying many names or addresses
//! cannot erase a lock-out.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How failures lock a key out.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// Failures within `window` that lock the key.
    pub max_failures: usize,
    pub window: Duration,
    /// How long the lock lasts from the last failure that set it.
    pub lockout: Duration,
    /// Keys tracked at most.
    pub capacity: usize,
}

/// Per user name: 5 failures in 15 minutes lock the name for 5 minutes.
pub const BY_NAME: Rule = Rule {
    max_failures: 5,
    window: Duration::from_secs(15 * 60),
    lockout: Duration::from_secs(5 * 60),
    capacity: 10_000,
};

/// Per source address: 30 failures in 15 minutes (any names) lock the address for 15
/// minutes. Generous enough for a hospital NAT, far too few for a spray.
pub const BY_SOURCE: Rule = Rule {
    max_failures: 30,
    window: Duration::from_secs(15 * 60),
    lockout: Duration::from_secs(15 * 60),
    capacity: 10_000,
};

#[derive(Debug, Default)]
struct Failures {
    /// Recent failures, oldest first, at most `max_failures`.
    times: VecDeque<Instant>,
    locked_until: Option<Instant>,
}

impl Failures {
    fn locked(&self, now: Instant) -> bool {
        self.locked_until.is_some_and(|t| now < t)
    }

    fn last(&self) -> Option<Instant> {
        self.times.back().copied()
    }
}

/// Failures per key under one [`Rule`].
#[derive(Debug)]
pub struct FailureTable<K> {
    rule: Rule,
    map: HashMap<K, Failures>,
}

impl<K: Hash + Eq + Clone> FailureTable<K> {
    pub fn new(rule: Rule) -> Self {
        FailureTable {
            rule,
            map: HashMap::new(),
        }
    }

    pub fn locked(&self, key: &K, now: Instant) -> bool {
        self.map.get(key).is_some_and(|f| f.locked(now))
    }

    /// Count a failure; whether the key is locked now.
    pub fn failed(&mut self, key: &K, now: Instant) -> bool {
        if !self.map.contains_key(key) && !self.make_room(now) {
            // Every tracked key is locked: this one goes uncounted here (the other table
            // still counts it), and no lock is ever dropped to make room.
            tracing::warn!("login failure table full of locked entries");
            return false;
        }
        let rule = self.rule;
        let f = self.map.entry(key.clone()).or_default();
        while f
            .times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= rule.window)
        {
            f.times.pop_front();
        }
        f.times.push_back(now);
        if f.times.len() > rule.max_failures {
            f.times.pop_front();
        }
        if f.times.len() >= rule.max_failures {
            f.locked_until = Some(now + rule.lockout);
        }
        f.locked(now)
    }

    /// Forget a key's failures (a successful login under that name).
    pub fn forget(&mut self, key: &K) {
        self.map.remove(key);
    }

    /// Below capacity, or evict the unlocked key whose last failure is oldest (expired
    /// locks count as unlocked). False when every key is locked.
    fn make_room(&mut self, now: Instant) -> bool {
        if self.map.len() < self.rule.capacity {
            return true;
        }
        let oldest = self
            .map
            .iter()
            .filter(|(_, f)| !f.locked(now))
            .min_by_key(|(_, f)| f.last())
            .map(|(k, _)| k.clone());
        match oldest {
            Some(k) => {
                self.map.remove(&k);
                true
            }
            None => false,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The login API's throttle: by user name and by source address.
pub struct Throttle {
    names: Mutex<FailureTable<String>>,
    sources: Mutex<FailureTable<IpAddr>>,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            names: Mutex::new(FailureTable::new(BY_NAME)),
            sources: Mutex::new(FailureTable::new(BY_SOURCE)),
        }
    }
}

/// Why a login is refused before its password is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locked {
    Name,
    Source,
}

impl Throttle {
    pub fn check(&self, user: &str, source: Option<IpAddr>) -> Result<(), Locked> {
        let now = Instant::now();
        if let Some(ip) = source {
            if lock(&self.sources).locked(&ip, now) {
                return Err(Locked::Source);
            }
        }
        if lock(&self.names).locked(&user.to_string(), now) {
            return Err(Locked::Name);
        }
        Ok(())
    }

    pub fn failed(&self, user: &str, source: Option<IpAddr>) {
        let now = Instant::now();
        if let Some(ip) = source {
            if lock(&self.sources).failed(&ip, now) {
                tracing::warn!(source = %ip, "login failures from this address: locked out");
            }
        }
        if lock(&self.names).failed(&user.to_string(), now) {
            tracing::warn!(user, "login failures for this name: locked out");
        }
    }

    /// A successful login clears its name's failures, not its address's (else one valid
    /// account would let an address keep guessing others).
    pub fn succeeded(&self, user: &str) {
        lock(&self.names).forget(&user.to_string());
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Rule = Rule {
        max_failures: 3,
        window: Duration::from_secs(60),
        lockout: Duration::from_secs(30),
        capacity: 4,
    };

    #[test]
    fn failures_lock_and_the_lock_expires() {
        let mut t = FailureTable::new(SMALL);
        let t0 = Instant::now();
        assert!(!t.failed(&"a", t0));
        assert!(!t.failed(&"a", t0));
        assert!(t.failed(&"a", t0 + Duration::from_secs(1)));
        assert!(t.locked(&"a", t0 + Duration::from_secs(30)));
        assert!(!t.locked(&"a", t0 + Duration::from_secs(32)));
        // Failures older than the window do not count.
        let mut t = FailureTable::new(SMALL);
        t.failed(&"b", t0);
        t.failed(&"b", t0);
        assert!(!t.failed(&"b", t0 + Duration::from_secs(61)));
    }

    #[test]
    fn a_spray_of_names_never_evicts_a_locked_one() {
        let mut t = FailureTable::new(SMALL);
        let t0 = Instant::now();
        for _ in 0..3 {
            t.failed(&"victim".to_string(), t0);
        }
        for k in 0..10_050 {
            t.failed(&format!("spray{k}"), t0 + Duration::from_millis(k));
            assert!(t.len() <= SMALL.capacity);
        }
        assert!(t.locked(&"victim".to_string(), t0 + Duration::from_secs(10)));
        // The sprayed names took the remaining room, oldest first.
        assert!(t.map.contains_key("spray10049"));
        assert!(!t.map.contains_key("spray0"));
    }

    #[test]
    fn a_table_full_of_locks_keeps_them_all() {
        let mut t = FailureTable::new(SMALL);
        let t0 = Instant::now();
        for k in 0..SMALL.capacity {
            for _ in 0..3 {
                t.failed(&k, t0);
            }
        }
        assert!(!t.failed(&99, t0), "a new key goes uncounted");
        assert!((0..SMALL.capacity).all(|k| t.locked(&k, t0)));
        // Once the locks expire, room is made again.
        assert!(!t.failed(&99, t0 + Duration::from_secs(31)));
        assert!(t.map.contains_key(&99));
    }

    #[test]
    fn the_throttle_locks_by_source_across_names() {
        let th = Throttle::default();
        let ip: IpAddr = [10, 1, 2, 3].into();
        for k in 0..BY_SOURCE.max_failures {
            assert_eq!(th.check(&format!("u{k}"), Some(ip)), Ok(()));
            th.failed(&format!("u{k}"), Some(ip));
        }
        assert_eq!(th.check("anyone", Some(ip)), Err(Locked::Source));
        assert_eq!(th.check("anyone", Some([10, 1, 2, 4].into())), Ok(()));
        for _ in 0..BY_NAME.max_failures {
            th.failed("alice", None);
        }
        assert_eq!(th.check("alice", None), Err(Locked::Name));
        th.succeeded("alice");
        assert_eq!(th.check("alice", None), Ok(()));
    }
}
