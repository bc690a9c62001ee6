//! The identity provider's keys in use: loaded once from a file, or fetched from its URL,
//! cached for a while and fetched again when a token names a key not seen yet (rotation),
//! with rate limits so that forged tokens cannot make us hammer the identity provider.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey};

use super::jwks::{check_jwks_url, fetch_jwks, read_jwks_file, FETCH_TIMEOUT};
use super::{JwtError, JwtSetupError, OidcConfigError};

/// How long a fetched key set is used before it is fetched again.
const KEY_CACHE_TTL: Duration = Duration::from_secs(10 * 60);
/// A token naming an unknown `kid` (key rotation) triggers a fetch at most this often, so
/// forged tokens cannot make us hammer the identity provider.
const UNKNOWN_KID_REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// After a failed fetch, wait this long before trying again.
const FETCH_RETRY_INTERVAL: Duration = Duration::from_secs(10);

/// A signing key of the set.
#[derive(Clone)]
pub(super) struct Key {
    pub(super) kid: Option<String>,
    pub(super) alg: Algorithm,
    pub(super) decoding: DecodingKey,
}

#[derive(Clone, Default)]
pub(super) struct KeySet {
    pub(super) keys: Vec<Key>,
    /// When the set was fetched from the URL; `None`: never (or loaded from a file).
    pub(super) fetched: Option<Instant>,
}

enum KeySource {
    File,
    Url {
        url: String,
        client: reqwest::Client,
    },
}

#[derive(Default)]
struct FetchTimes {
    last_attempt: Option<Instant>,
    last_unknown_kid: Option<Instant>,
}

/// The key set a validator checks signatures with.
pub(super) struct KeyCache {
    source: KeySource,
    keys: RwLock<Arc<KeySet>>,
    /// Serialises fetches: one request refreshes while the others wait and reuse its result.
    fetches: tokio::sync::Mutex<FetchTimes>,
    cache_ttl: Duration,
    unknown_kid_interval: Duration,
}

impl KeyCache {
    /// The keys of a JWKS file, which must hold a usable one.
    pub(super) fn from_file(path: &Path) -> Result<Self, JwtSetupError> {
        Ok(Self::new(KeySource::File, read_jwks_file(path)?))
    }

    /// The keys at the identity provider's URL. A failed first fetch is only logged (the
    /// identity provider may be down while the PACS starts) and retried when tokens arrive.
    pub(super) async fn from_url(url: &str) -> Result<Self, JwtSetupError> {
        check_jwks_url(url)?;
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .user_agent(concat!("pacs/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(OidcConfigError::HttpClient)?;
        let source = KeySource::Url {
            url: url.to_string(),
            client,
        };
        let cache = Self::new(source, KeySet::default());
        {
            let mut times = cache.fetches.lock().await;
            if let Err(e) = cache.fetch_into_cache(&mut times).await {
                tracing::warn!(url = %url, error = %e, "OIDC keys not fetched at start; will retry when tokens arrive");
            }
        }
        Ok(cache)
    }

    fn new(source: KeySource, keys: KeySet) -> Self {
        KeyCache {
            source,
            keys: RwLock::new(Arc::new(keys)),
            fetches: tokio::sync::Mutex::new(FetchTimes::default()),
            cache_ttl: KEY_CACHE_TTL,
            unknown_kid_interval: UNKNOWN_KID_REFETCH_INTERVAL,
        }
    }

    /// How many keys are in hand now.
    pub(super) fn len(&self) -> usize {
        self.current_keys().keys.len()
    }

    fn current_keys(&self) -> Arc<KeySet> {
        // Writers swap a whole Arc, so a poisoned lock still holds a consistent set.
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The key for a token's `kid` and algorithm; refetches the set when it is stale or the
    /// `kid` is new (perhaps a rotation), within the rate limits.
    pub(super) async fn key_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<Key, JwtError> {
        let is_url = matches!(self.source, KeySource::Url { .. });
        let mut set = self.current_keys();
        if is_url && set.fetched.is_none_or(|t| t.elapsed() >= self.cache_ttl) {
            set = self.refresh(false).await;
        }
        let found = match find_key(&set, kid, alg) {
            Err(JwtError::UnknownKeyId(_)) if is_url => {
                // Perhaps the identity provider rotated its keys since the last fetch.
                set = self.refresh(true).await;
                find_key(&set, kid, alg)
            }
            other => other,
        };
        if found.is_err() && set.keys.is_empty() {
            return Err(JwtError::KeysUnavailable);
        }
        found
    }

    /// Fetches the key set again, unless another task just did or the rate limits say no;
    /// returns the set to use either way (on failure the previous one).
    async fn refresh(&self, unknown_kid: bool) -> Arc<KeySet> {
        let mut times = self.fetches.lock().await;
        let now = Instant::now();
        let recent = |t: Option<Instant>, within: Duration| {
            t.is_some_and(|t| now.saturating_duration_since(t) < within)
        };
        if unknown_kid {
            if recent(times.last_unknown_kid, self.unknown_kid_interval) {
                return self.current_keys();
            }
            times.last_unknown_kid = Some(now);
        } else {
            let set = self.current_keys();
            if set.fetched.is_some_and(|t| t.elapsed() < self.cache_ttl) {
                return set; // refreshed while we waited for the lock
            }
            if recent(times.last_attempt, FETCH_RETRY_INTERVAL) {
                return set;
            }
        }
        if let Err(e) = self.fetch_into_cache(&mut times).await {
            tracing::warn!(error = %e, "OIDC key set refresh failed; using the keys in hand");
        }
        self.current_keys()
    }

    async fn fetch_into_cache(&self, times: &mut FetchTimes) -> Result<(), JwtSetupError> {
        let KeySource::Url { url, client } = &self.source else {
            return Ok(());
        };
        times.last_attempt = Some(Instant::now());
        let keys = fetch_jwks(client, url).await?;
        tracing::info!(url = %url, keys = keys.len(), "OIDC key set fetched");
        let set = KeySet {
            keys,
            fetched: Some(Instant::now()),
        };
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        Ok(())
    }
}

fn find_key(set: &KeySet, kid: Option<&str>, alg: Algorithm) -> Result<Key, JwtError> {
    match kid {
        Some(kid) => {
            let key = set
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .ok_or_else(|| JwtError::UnknownKeyId(kid.to_string()))?;
            if key.alg != alg {
                return Err(JwtError::AlgorithmMismatch {
                    kid: kid.to_string(),
                    alg,
                    key_alg: key.alg,
                });
            }
            Ok(key.clone())
        }
        // Without a kid, use the one key of that algorithm, if there is exactly one.
        None => {
            let fits: Vec<&Key> = set.keys.iter().filter(|k| k.alg == alg).collect();
            match fits.as_slice() {
                [one] => Ok((*one).clone()),
                _ => Err(JwtError::MissingKeyId {
                    alg,
                    candidates: fits.len(),
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use serde_json::{json, Value};

    use super::super::fixtures::{
        claims, config, rs256, serve_jwks, sign, validator, EC_PEM, JWKS, RSA_PEM,
    };
    use super::*;

    #[tokio::test]
    async fn jwt_jwks_url_fetch_and_unknown_kid_refetch() {
        // At first the identity provider publishes only its EC key.
        let full: Value = serde_json::from_str(JWKS).expect("jwks");
        let ec_only = json!({"keys": [full["keys"][1].clone()]});
        let body = Arc::new(Mutex::new(ec_only.to_string()));
        let hits = Arc::new(AtomicUsize::new(0));
        let url = serve_jwks(body.clone(), hits.clone()).await;
        let mut cfg = config();
        cfg.jwks_file = None;
        cfg.jwks_url = Some(url);
        let v = validator(cfg).await;
        assert_eq!(hits.load(Ordering::SeqCst), 1, "fetched at start");

        let es = sign(Algorithm::ES256, Some("test-ec"), &claims(), EC_PEM);
        assert!(v.validate(&es).await.is_ok());
        assert_eq!(hits.load(Ordering::SeqCst), 1, "cached");

        // Key rotation: a token names a kid we have not seen; the set is fetched again.
        *body.lock().expect("lock") = JWKS.to_string();
        assert!(v.validate(&rs256(&claims())).await.is_ok());
        assert_eq!(hits.load(Ordering::SeqCst), 2, "refetched for the new kid");

        // Another unknown kid within the minute: refused without a fetch.
        let token = sign(Algorithm::RS256, Some("made-up"), &claims(), RSA_PEM);
        assert_eq!(
            v.validate(&token).await,
            Err(JwtError::UnknownKeyId("made-up".into()))
        );
        assert_eq!(hits.load(Ordering::SeqCst), 2, "rate-limited");
    }

    #[tokio::test]
    async fn jwt_jwks_url_down_at_start_is_retried() {
        let body = Arc::new(Mutex::new("not json".to_string()));
        let hits = Arc::new(AtomicUsize::new(0));
        let url = serve_jwks(body.clone(), hits.clone()).await;
        let mut cfg = config();
        cfg.jwks_file = None;
        cfg.jwks_url = Some(url);
        let mut v = validator(cfg).await;
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        // While the provider serves garbage, tokens are refused with a clear reason and
        // without a fetch per token.
        let token = rs256(&claims());
        assert!(matches!(
            v.validate(&token).await,
            Err(JwtError::KeysUnavailable | JwtError::UnknownKeyId(_))
        ));
        assert!(v.validate(&token).await.is_err());
        assert!(hits.load(Ordering::SeqCst) <= 2, "fetches are rate-limited");
        // Once it recovers (and the retry interval has passed), tokens validate.
        *body.lock().expect("lock") = JWKS.to_string();
        v.keys.unknown_kid_interval = Duration::ZERO;
        *v.keys.fetches.lock().await = FetchTimes::default();
        assert!(v.validate(&token).await.is_ok());
    }
}
