//! OIDC / OAuth2 bearer tokens: validation of JWT access or ID tokens issued by the site's
//! identity provider (Keycloak, Entra ID, Okta, …) against its published keys (JWKS).
//!
//! Only RS256 and ES256 are accepted, and the algorithm is checked before anything else:
//! `alg: none` and HMAC algorithms (an HS256 token "signed" with the public key, the classic
//! key-confusion attack) are refused explicitly. Header fields that point at keys (`jku`, `x5u`,
//! `jwk`) are ignored: keys come only from the configured file or URL.
//!
//! Test keys (test-only, private keys published): `viewer-api/src/auth/testdata/` holds
//! `rsa.pem` (kid `test-rsa`), `ec.pem` (kid `test-ec`), their public halves, `rsa-other.pem`
//! (a key not in the set) and `jwks.json`; see the README there.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::accounts::Authenticated;
use super::role::Role;

/// How long a fetched key set is used before it is fetched again.
const KEY_CACHE_TTL: Duration = Duration::from_secs(10 * 60);
/// A token naming an unknown `kid` (key rotation) triggers a fetch at most this often, so
/// forged tokens cannot make us hammer the identity provider.
const UNKNOWN_KID_REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// After a failed fetch, wait this long before trying again.
const FETCH_RETRY_INTERVAL: Duration = Duration::from_secs(10);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// A JWKS is a few kilobytes; refuse anything absurd.
const MAX_JWKS_BYTES: usize = 1 << 20;

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
    Malformed(String),
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
    #[error("the identity provider's keys are unavailable: {0}")]
    KeysUnavailable(String),
    #[error("the token was refused: {0}")]
    Invalid(String),
}

/// Errors of setting up validation (configuration and key loading).
#[derive(Debug, thiserror::Error)]
pub enum JwtSetupError {
    #[error("invalid [auth.oidc] settings: {0}")]
    Config(String),
    #[error("cannot read JWKS file {path}: {source}")]
    ReadJwks {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the JWKS from {origin} is not a JSON Web Key Set: {reason}")]
    ParseJwks { origin: String, reason: String },
    #[error("the JWKS from {origin} has no RS256 or ES256 (P-256) signing key")]
    NoUsableKey { origin: String },
    #[error("cannot fetch the JWKS from {url}: {reason}")]
    Fetch { url: String, reason: String },
}

#[derive(Clone)]
struct Key {
    kid: Option<String>,
    alg: Algorithm,
    decoding: DecodingKey,
}

#[derive(Clone, Default)]
struct KeySet {
    keys: Vec<Key>,
    /// When the set was fetched from the URL; `None`: never (or loaded from a file).
    fetched: Option<Instant>,
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

/// Validates bearer tokens; share one per server (`Arc`).
pub struct JwtValidator {
    config: OidcConfig,
    source: KeySource,
    keys: RwLock<Arc<KeySet>>,
    /// Serialises fetches: one request refreshes while the others wait and reuse its result.
    fetches: tokio::sync::Mutex<FetchTimes>,
    cache_ttl: Duration,
    unknown_kid_interval: Duration,
}

impl JwtValidator {
    /// Checks the settings and loads the keys: the file must hold a usable key; from a URL a
    /// failed first fetch is only logged (the identity provider may be down while the PACS
    /// starts) and retried when tokens arrive.
    pub async fn new(config: OidcConfig) -> Result<Self, JwtSetupError> {
        let bad = |m: &str| Err(JwtSetupError::Config(m.to_string()));
        if config.issuer.trim().is_empty() {
            return bad("issuer is empty");
        }
        if config.audience.trim().is_empty() {
            return bad("audience is empty");
        }
        let (source, keys) = match (&config.jwks_file, &config.jwks_url) {
            (Some(path), None) => (KeySource::File, read_jwks_file(path)?),
            (None, Some(url)) => {
                check_jwks_url(url)?;
                let client = reqwest::Client::builder()
                    .timeout(FETCH_TIMEOUT)
                    .user_agent(concat!("pacs/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| JwtSetupError::Config(format!("HTTP client: {e}")))?;
                let source = KeySource::Url {
                    url: url.clone(),
                    client,
                };
                (source, KeySet::default())
            }
            _ => return bad("give exactly one of jwks_file and jwks_url"),
        };
        let validator = JwtValidator {
            config,
            source,
            keys: RwLock::new(Arc::new(keys)),
            fetches: tokio::sync::Mutex::new(FetchTimes::default()),
            cache_ttl: KEY_CACHE_TTL,
            unknown_kid_interval: UNKNOWN_KID_REFETCH_INTERVAL,
        };
        if let KeySource::Url { url, .. } = &validator.source {
            let mut times = validator.fetches.lock().await;
            if let Err(e) = validator.fetch_into_cache(&mut times).await {
                tracing::warn!(url = %url, error = %e, "OIDC keys not fetched at start; will retry when tokens arrive");
            }
        }
        tracing::info!(
            issuer = %validator.config.issuer,
            keys = validator.current_keys().keys.len(),
            "OIDC bearer-token validation ready"
        );
        Ok(validator)
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// Validates a bearer token (without the `Bearer ` prefix): algorithm, key, signature,
    /// `iss`, `aud`, `exp`, `nbf`, then the PACS claims.
    pub async fn validate(&self, token: &str) -> Result<JwtIdentity, JwtError> {
        let header = parse_header(token)?;
        let key = self.key_for(header.kid.as_deref(), header.alg).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[self.config.issuer.as_str()]);
        validation.set_audience(&[self.config.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = self.config.leeway_secs;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &validation)
            .map_err(|e| self.map_error(e))?;
        let identity = self.identity(&data.claims)?;
        tracing::debug!(user = %identity.name, role = %identity.role, mfa = identity.mfa, "bearer token accepted");
        Ok(identity)
    }

    fn map_error(&self, e: jsonwebtoken::errors::Error) -> JwtError {
        match e.into_kind() {
            ErrorKind::InvalidSignature => JwtError::BadSignature,
            ErrorKind::ExpiredSignature => JwtError::Expired,
            ErrorKind::ImmatureSignature => JwtError::NotYetValid,
            ErrorKind::InvalidIssuer => JwtError::WrongIssuer(self.config.issuer.clone()),
            ErrorKind::InvalidAudience => JwtError::WrongAudience(self.config.audience.clone()),
            ErrorKind::MissingRequiredClaim(c) => JwtError::MissingClaim(c),
            ErrorKind::InvalidToken => JwtError::Malformed("not three base64url parts".into()),
            ErrorKind::Base64(e) => JwtError::Malformed(format!("base64: {e}")),
            ErrorKind::Json(e) => JwtError::Malformed(format!("JSON: {e}")),
            ErrorKind::Utf8(e) => JwtError::Malformed(format!("UTF-8: {e}")),
            other => JwtError::Invalid(format!("{other:?}")),
        }
    }

    fn identity(&self, claims: &Map<String, Value>) -> Result<JwtIdentity, JwtError> {
        let c = &self.config;
        let name = claim(claims, &c.user_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .or_else(|| {
                claims
                    .get("sub")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
            })
            .ok_or_else(|| JwtError::NoUser(c.user_claim.clone()))?
            .to_string();
        let role = claim(claims, &c.role_claim)
            .map(strings)
            .unwrap_or_default()
            .into_iter()
            .find_map(|r| r.parse::<Role>().ok())
            .ok_or(JwtError::NoRole)?;
        let patient_ids: Vec<String> = claim(claims, &c.patient_id_claim)
            .map(strings)
            .unwrap_or_default()
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        // A patient token without IDs would show nothing at best; say why instead.
        if role == Role::Patient && patient_ids.is_empty() {
            return Err(JwtError::NoPatientIds(c.patient_id_claim.clone()));
        }
        let amr_mfa = claims
            .get("amr")
            .map(strings)
            .unwrap_or_default()
            .into_iter()
            .any(|m| MFA_AMR.contains(&m));
        let acr_mfa = claims
            .get("acr")
            .and_then(Value::as_str)
            .is_some_and(|acr| c.accepted_acr.iter().any(|a| a == acr));
        let mfa = amr_mfa || acr_mfa;
        if c.require_mfa && !mfa {
            tracing::info!(user = %name, "bearer token refused: no multi-factor evidence");
            return Err(JwtError::MfaRequired);
        }
        Ok(JwtIdentity {
            name,
            role,
            patient_ids,
            mfa,
        })
    }

    fn current_keys(&self) -> Arc<KeySet> {
        // Writers swap a whole Arc, so a poisoned lock still holds a consistent set.
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn key_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<Key, JwtError> {
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
            return Err(JwtError::KeysUnavailable(
                "no key could be fetched from the identity provider yet".into(),
            ));
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

struct TokenHeader {
    alg: Algorithm,
    kid: Option<String>,
}

/// Reads the header ourselves (jsonwebtoken cannot even parse `alg: none`) and decides on the
/// algorithm before any key is touched.
fn parse_header(token: &str) -> Result<TokenHeader, JwtError> {
    let mut parts = token.split('.');
    let (Some(h), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed("not three dot-separated parts".into()));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|e| JwtError::Malformed(format!("header base64: {e}")))?;
    let header: Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|e| JwtError::Malformed(format!("header JSON: {e}")))?;
    let alg = match header.get("alg") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(JwtError::Malformed("alg is not a string".into())),
        None => return Err(JwtError::Malformed("no alg in the header".into())),
    };
    let alg = match alg {
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        other => {
            tracing::info!(alg = other, "bearer token refused: algorithm not accepted");
            return Err(JwtError::UnsupportedAlgorithm(other.to_string()));
        }
    };
    // RFC 7515 §4.1.11: extensions marked critical that we do not understand must be refused.
    if header.contains_key("crit") {
        return Err(JwtError::Malformed(
            "critical header extensions are not supported".into(),
        ));
    }
    let kid = match header.get("kid") {
        Some(Value::String(s)) => Some(s.clone()),
        None | Some(Value::Null) => None,
        Some(_) => return Err(JwtError::Malformed("kid is not a string".into())),
    };
    Ok(TokenHeader { alg, kid })
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

/// A claim by exact name, else by dotted path through nested objects.
fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let first = claims.get(parts.next()?)?;
    parts.try_fold(first, |v, p| v.get(p))
}

/// A string claim as one item, an array claim as its string items.
fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn check_jwks_url(url: &str) -> Result<(), JwtSetupError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| JwtSetupError::Config(format!("jwks_url {url:?}: {e}")))?;
    let host = parsed.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => Ok(()),
        // Keys fetched in clear could be swapped by anyone on the path.
        "http" if loopback => Ok(()),
        _ => Err(JwtSetupError::Config(format!(
            "jwks_url {url:?} must be https (http only on loopback)"
        ))),
    }
}

fn read_jwks_file(path: &Path) -> Result<KeySet, JwtSetupError> {
    let bytes = std::fs::read(path).map_err(|source| JwtSetupError::ReadJwks {
        path: path.to_path_buf(),
        source,
    })?;
    let keys = parse_jwks(&bytes, &path.display().to_string())?;
    Ok(KeySet {
        keys,
        fetched: None,
    })
}

async fn fetch_jwks(client: &reqwest::Client, url: &str) -> Result<Vec<Key>, JwtSetupError> {
    let fail = |reason: String| JwtSetupError::Fetch {
        url: url.to_string(),
        reason,
    };
    let mut resp = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(fail(format!("HTTP status {}", resp.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| fail(e.to_string()))? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(fail(format!("larger than {MAX_JWKS_BYTES} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    parse_jwks(&body, url)
}

#[derive(Deserialize)]
struct JwksDoc {
    keys: Vec<Value>,
}

/// The fields of a JWK (RFC 7517/7518) that matter here; others are ignored.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// The RS256 and ES256 signing keys of a JWKS; other keys (encryption keys, other curves and
/// algorithms) are skipped rather than failing the set, as identity providers publish them too.
fn parse_jwks(bytes: &[u8], origin: &str) -> Result<Vec<Key>, JwtSetupError> {
    let doc: JwksDoc = serde_json::from_slice(bytes).map_err(|e| JwtSetupError::ParseJwks {
        origin: origin.to_string(),
        reason: e.to_string(),
    })?;
    let mut keys = Vec::new();
    let mut kids = HashSet::new();
    for value in doc.keys {
        let jwk: RawJwk = match serde_json::from_value(value) {
            Ok(j) => j,
            Err(e) => {
                tracing::debug!(origin, error = %e, "JWK skipped: unreadable");
                continue;
            }
        };
        match jwk_to_key(&jwk) {
            Ok(key) => {
                if let Some(kid) = &key.kid {
                    if !kids.insert(kid.clone()) {
                        tracing::warn!(origin, kid = %kid, "JWK skipped: duplicate kid");
                        continue;
                    }
                }
                keys.push(key);
            }
            Err(reason) => {
                tracing::debug!(origin, kid = ?jwk.kid, kty = %jwk.kty, reason, "JWK skipped")
            }
        }
    }
    if keys.is_empty() {
        return Err(JwtSetupError::NoUsableKey {
            origin: origin.to_string(),
        });
    }
    Ok(keys)
}

fn jwk_to_key(jwk: &RawJwk) -> Result<Key, &'static str> {
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return Err("not a signing key");
    }
    let (alg, decoding) = match jwk.kty.as_str() {
        "RSA" => {
            if jwk.alg.as_deref().is_some_and(|a| a != "RS256") {
                return Err("RSA key for another algorithm than RS256");
            }
            let (Some(n), Some(e)) = (&jwk.n, &jwk.e) else {
                return Err("RSA key without n or e");
            };
            let key = DecodingKey::from_rsa_components(n, e).map_err(|_| "bad RSA n or e")?;
            (Algorithm::RS256, key)
        }
        "EC" => {
            if jwk.crv.as_deref() != Some("P-256") {
                return Err("EC key on another curve than P-256");
            }
            if jwk.alg.as_deref().is_some_and(|a| a != "ES256") {
                return Err("EC key for another algorithm than ES256");
            }
            let (Some(x), Some(y)) = (&jwk.x, &jwk.y) else {
                return Err("EC key without x or y");
            };
            // A P-256 coordinate is 32 bytes; anything else cannot be a valid point.
            let len_ok = |c: &str| URL_SAFE_NO_PAD.decode(c).is_ok_and(|b| b.len() == 32);
            if !len_ok(x) || !len_ok(y) {
                return Err("EC key with malformed x or y");
            }
            let key = DecodingKey::from_ec_components(x, y).map_err(|_| "bad EC x or y")?;
            (Algorithm::ES256, key)
        }
        _ => return Err("key type other than RSA and EC"),
    };
    Ok(Key {
        kid: jwk.kid.clone(),
        alg,
        decoding,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    const ISSUER: &str = "https://idp.example.org/realms/hospital";
    const AUDIENCE: &str = "pacs";
    const RSA_PEM: &[u8] = include_bytes!("testdata/rsa.pem");
    const RSA_PUB_PEM: &[u8] = include_bytes!("testdata/rsa.pub.pem");
    const RSA_OTHER_PEM: &[u8] = include_bytes!("testdata/rsa-other.pem");
    const EC_PEM: &[u8] = include_bytes!("testdata/ec.pem");
    const JWKS: &str = include_str!("testdata/jwks.json");

    fn jwks_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/auth/testdata/jwks.json")
    }

    fn config() -> OidcConfig {
        toml::from_str(&format!(
            "issuer = {ISSUER:?}\naudience = {AUDIENCE:?}\njwks_file = {:?}\n",
            jwks_path().display().to_string()
        ))
        .expect("config")
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn claims() -> Value {
        json!({
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
            "preferred_username": "dr.house",
            "pacs_role": "radiologist",
            "iat": now(),
            "nbf": now() - 5,
            "exp": now() + 300,
        })
    }

    fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, pem: &[u8]) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_string);
        let key = match alg {
            Algorithm::RS256 | Algorithm::RS384 => EncodingKey::from_rsa_pem(pem).expect("RSA key"),
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem).expect("EC key"),
            _ => EncodingKey::from_secret(pem),
        };
        encode(&header, claims, &key).expect("sign")
    }

    fn rs256(claims: &Value) -> String {
        sign(Algorithm::RS256, Some("test-rsa"), claims, RSA_PEM)
    }

    async fn validator(config: OidcConfig) -> JwtValidator {
        JwtValidator::new(config).await.expect("validator")
    }

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[tokio::test]
    async fn jwt_validator_is_shareable_across_tasks() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: T) {}
        let v = validator(config()).await;
        send_sync(&v);
        // Middleware awaits `validate` inside axum's Send futures.
        send(v.validate("x.y.z"));
    }

    #[test]
    fn jwt_config_defaults_from_toml() {
        let c = config();
        assert_eq!(c.role_claim, "pacs_role");
        assert_eq!(c.patient_id_claim, "patient_id");
        assert_eq!(c.user_claim, "preferred_username");
        assert!(!c.require_mfa);
        assert!(c.accepted_acr.is_empty());
        assert_eq!(c.leeway_secs, 30);
        assert!(
            toml::from_str::<OidcConfig>("issuer = \"x\"\naudience = \"y\"\nrole = \"z\"").is_err()
        );
    }

    #[tokio::test]
    async fn jwt_valid_rs256_and_es256() {
        let v = validator(config()).await;
        let id = v.validate(&rs256(&claims())).await.expect("RS256");
        assert_eq!(
            id,
            JwtIdentity {
                name: "dr.house".into(),
                role: Role::Radiologist,
                patient_ids: vec![],
                mfa: false,
            }
        );
        let es = sign(Algorithm::ES256, Some("test-ec"), &claims(), EC_PEM);
        assert_eq!(v.validate(&es).await.expect("ES256").name, "dr.house");
        let who: Authenticated = id.into();
        assert_eq!(who.role, Role::Radiologist);
    }

    #[tokio::test]
    async fn jwt_expired_and_not_yet_valid() {
        let v = validator(config()).await;
        let mut c = claims();
        c["exp"] = json!(now() - 3600);
        assert_eq!(v.validate(&rs256(&c)).await, Err(JwtError::Expired));
        // Within the leeway an expired token still passes (clock skew).
        c["exp"] = json!(now() - 10);
        assert!(v.validate(&rs256(&c)).await.is_ok());
        let mut c = claims();
        c["nbf"] = json!(now() + 3600);
        assert_eq!(v.validate(&rs256(&c)).await, Err(JwtError::NotYetValid));
        let mut c = claims();
        c.as_object_mut().expect("object").remove("exp");
        assert_eq!(
            v.validate(&rs256(&c)).await,
            Err(JwtError::MissingClaim("exp".into()))
        );
    }

    #[tokio::test]
    async fn jwt_wrong_issuer_and_audience() {
        let v = validator(config()).await;
        let mut c = claims();
        c["iss"] = json!("https://evil.example.org");
        assert_eq!(
            v.validate(&rs256(&c)).await,
            Err(JwtError::WrongIssuer(ISSUER.into()))
        );
        let mut c = claims();
        c["aud"] = json!("another-app");
        assert_eq!(
            v.validate(&rs256(&c)).await,
            Err(JwtError::WrongAudience(AUDIENCE.into()))
        );
        // One of several audiences is enough.
        c["aud"] = json!(["another-app", AUDIENCE]);
        assert!(v.validate(&rs256(&c)).await.is_ok());
        c.as_object_mut().expect("object").remove("aud");
        assert_eq!(
            v.validate(&rs256(&c)).await,
            Err(JwtError::MissingClaim("aud".into()))
        );
    }

    #[tokio::test]
    async fn jwt_signature_by_another_key_is_refused() {
        let v = validator(config()).await;
        let forged = sign(Algorithm::RS256, Some("test-rsa"), &claims(), RSA_OTHER_PEM);
        assert_eq!(v.validate(&forged).await, Err(JwtError::BadSignature));
        // Claims changed after signing.
        let good = rs256(&claims());
        let (header, rest) = good.split_once('.').expect("header");
        let (_, signature) = rest.split_once('.').expect("signature");
        let mut c = claims();
        c["pacs_role"] = json!("admin");
        let tampered = format!("{header}.{}.{signature}", b64(&c));
        assert_eq!(v.validate(&tampered).await, Err(JwtError::BadSignature));
    }

    #[tokio::test]
    async fn jwt_alg_none_is_refused() {
        let v = validator(config()).await;
        for alg in ["none", "None", "NONE"] {
            let token = format!(
                "{}.{}.",
                b64(&json!({"alg": alg, "typ": "JWT"})),
                b64(&claims())
            );
            assert_eq!(
                v.validate(&token).await,
                Err(JwtError::UnsupportedAlgorithm(alg.into()))
            );
        }
    }

    #[tokio::test]
    async fn jwt_hs256_signed_with_the_public_key_is_refused() {
        let v = validator(config()).await;
        // Key confusion: an HMAC "signature" keyed with the (public) RSA key.
        let token = sign(Algorithm::HS256, Some("test-rsa"), &claims(), RSA_PUB_PEM);
        assert_eq!(
            v.validate(&token).await,
            Err(JwtError::UnsupportedAlgorithm("HS256".into()))
        );
        let token = sign(Algorithm::RS384, Some("test-rsa"), &claims(), RSA_PEM);
        assert_eq!(
            v.validate(&token).await,
            Err(JwtError::UnsupportedAlgorithm("RS384".into()))
        );
    }

    #[tokio::test]
    async fn jwt_algorithm_must_match_the_key() {
        let v = validator(config()).await;
        let token = sign(Algorithm::RS256, Some("test-ec"), &claims(), RSA_PEM);
        assert!(matches!(
            v.validate(&token).await,
            Err(JwtError::AlgorithmMismatch { .. })
        ));
        // Without a kid, the single key of the token's algorithm is used.
        let token = sign(Algorithm::ES256, None, &claims(), EC_PEM);
        assert!(v.validate(&token).await.is_ok());
    }

    #[tokio::test]
    async fn jwt_unknown_kid_is_refused() {
        let v = validator(config()).await;
        let token = sign(Algorithm::RS256, Some("rotated-away"), &claims(), RSA_PEM);
        assert_eq!(
            v.validate(&token).await,
            Err(JwtError::UnknownKeyId("rotated-away".into()))
        );
    }

    #[tokio::test]
    async fn jwt_role_claims() {
        let v = validator(config()).await;
        let mut c = claims();
        c.as_object_mut().expect("object").remove("pacs_role");
        assert_eq!(v.validate(&rs256(&c)).await, Err(JwtError::NoRole));
        assert_eq!(JwtError::NoRole.to_string(), "token carries no PACS role");
        c["pacs_role"] = json!("superuser");
        assert_eq!(v.validate(&rs256(&c)).await, Err(JwtError::NoRole));
        // An array: the first known role counts.
        c["pacs_role"] = json!(["offline_access", "billing", "admin"]);
        assert_eq!(
            v.validate(&rs256(&c)).await.expect("role").role,
            Role::Billing
        );

        // Keycloak-style nested roles, and the user from `sub` when the user claim is absent.
        let mut cfg = config();
        cfg.role_claim = "realm_access.roles".into();
        let v = validator(cfg).await;
        let mut c = claims();
        c.as_object_mut()
            .expect("object")
            .remove("preferred_username");
        c["realm_access"] = json!({"roles": ["uma_authorization", "ehr"]});
        let id = v.validate(&rs256(&c)).await.expect("nested");
        assert_eq!(id.role, Role::Ehr);
        assert_eq!(id.name, "f81d4fae-7dec-11d0-a765-00a0c91e6bf6");
    }

    #[tokio::test]
    async fn jwt_patient_ids() {
        let v = validator(config()).await;
        let mut c = claims();
        c["pacs_role"] = json!("patient");
        assert_eq!(
            v.validate(&rs256(&c)).await,
            Err(JwtError::NoPatientIds("patient_id".into()))
        );
        c["patient_id"] = json!("PID-7");
        assert_eq!(
            v.validate(&rs256(&c)).await.expect("one").patient_ids,
            ["PID-7"]
        );
        c["patient_id"] = json!(["PID-7", "PID-8"]);
        assert_eq!(
            v.validate(&rs256(&c)).await.expect("two").patient_ids,
            ["PID-7", "PID-8"]
        );
    }

    #[tokio::test]
    async fn jwt_mfa_required() {
        let mut cfg = config();
        cfg.require_mfa = true;
        cfg.accepted_acr = vec!["urn:example:loa:high".into()];
        let v = validator(cfg).await;
        let mut c = claims();
        assert_eq!(v.validate(&rs256(&c)).await, Err(JwtError::MfaRequired));
        c["amr"] = json!(["pwd"]);
        assert_eq!(v.validate(&rs256(&c)).await, Err(JwtError::MfaRequired));
        c["acr"] = json!("1");
        assert_eq!(v.validate(&rs256(&c)).await, Err(JwtError::MfaRequired));
        c["amr"] = json!(["pwd", "otp"]);
        assert!(v.validate(&rs256(&c)).await.expect("amr otp").mfa);
        c["amr"] = json!(["pwd"]);
        c["acr"] = json!("urn:example:loa:high");
        assert!(v.validate(&rs256(&c)).await.expect("acr").mfa);

        // Not required: reported, not enforced.
        let v = validator(config()).await;
        let mut c = claims();
        assert!(!v.validate(&rs256(&c)).await.expect("no mfa").mfa);
        c["amr"] = json!(["hwk"]);
        assert!(v.validate(&rs256(&c)).await.expect("hwk").mfa);
    }

    #[tokio::test]
    async fn jwt_malformed_tokens() {
        let v = validator(config()).await;
        for bad in ["", "abc", "a.b", "a.b.c.d", "!!.e30.", "e30.e30.e30"] {
            assert!(
                matches!(v.validate(bad).await, Err(JwtError::Malformed(_))),
                "{bad:?}"
            );
        }
        let crit = format!(
            "{}.{}.sig",
            b64(&json!({"alg": "RS256", "kid": "test-rsa", "crit": ["exp"]})),
            b64(&claims())
        );
        assert!(matches!(
            v.validate(&crit).await,
            Err(JwtError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn jwt_setup_errors() {
        let mut c = config();
        c.jwks_url = Some("https://idp.example.org/certs".into());
        assert!(matches!(
            JwtValidator::new(c).await,
            Err(JwtSetupError::Config(_))
        ));
        let mut c = config();
        c.jwks_file = None;
        assert!(matches!(
            JwtValidator::new(c).await,
            Err(JwtSetupError::Config(_))
        ));
        let mut c = config();
        c.jwks_file = None;
        c.jwks_url = Some("http://idp.example.org/certs".into());
        assert!(matches!(
            JwtValidator::new(c).await,
            Err(JwtSetupError::Config(_))
        ));
        let mut c = config();
        c.jwks_file = Some("/nonexistent/jwks.json".into());
        assert!(matches!(
            JwtValidator::new(c).await,
            Err(JwtSetupError::ReadJwks { .. })
        ));
        assert!(check_jwks_url("http://127.0.0.1:8080/certs").is_ok());
        assert!(check_jwks_url("http://[::1]/certs").is_ok());
        assert!(check_jwks_url("http://localhost/certs").is_ok());
        assert!(check_jwks_url("https://idp.example.org/certs").is_ok());
        assert!(check_jwks_url("ftp://idp.example.org/certs").is_err());
    }

    #[test]
    fn jwt_jwks_parsing_skips_unusable_keys() {
        let doc = json!({"keys": [
            {"kty": "RSA", "use": "enc", "alg": "RSA-OAEP", "kid": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "EC", "crv": "P-384", "kid": "p384", "x": "AA", "y": "AA"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": "AA"},
            {"kty": "EC", "crv": "P-256", "kid": "short", "x": "AA", "y": "AA"},
            {"kid": "no-kty"},
        ]});
        assert!(matches!(
            parse_jwks(doc.to_string().as_bytes(), "test"),
            Err(JwtSetupError::NoUsableKey { .. })
        ));
        let keys = parse_jwks(JWKS.as_bytes(), "test").expect("fixture");
        let kids: Vec<_> = keys.iter().map(|k| k.kid.as_deref()).collect();
        assert_eq!(kids, [Some("test-rsa"), Some("test-ec")]);
        assert!(matches!(
            parse_jwks(b"{}", "test"),
            Err(JwtSetupError::ParseJwks { .. })
        ));
    }

    /// A JWKS endpoint on loopback that counts its requests.
    async fn serve_jwks(body: Arc<Mutex<String>>, hits: Arc<AtomicUsize>) -> String {
        let app = axum::Router::new().route(
            "/certs",
            axum::routing::get(move || {
                let body = body.clone();
                let hits = hits.clone();
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let text = body.lock().expect("lock").clone();
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        text,
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        format!("http://{addr}/certs")
    }

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
            Err(JwtError::KeysUnavailable(_) | JwtError::UnknownKeyId(_))
        ));
        assert!(v.validate(&token).await.is_err());
        assert!(hits.load(Ordering::SeqCst) <= 2, "fetches are rate-limited");
        // Once it recovers (and the retry interval has passed), tokens validate.
        *body.lock().expect("lock") = JWKS.to_string();
        v.unknown_kid_interval = Duration::ZERO;
        *v.fetches.lock().await = FetchTimes::default();
        assert!(v.validate(&token).await.is_ok());
    }
}
