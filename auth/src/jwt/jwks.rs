//! JSON Web Key Sets (RFC 7517/7518): read from a file or fetched from the identity provider,
//! keeping the RS256 and ES256 signing keys.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::Value;

use super::keys::{Key, KeySet};
use super::{FetchError, JwtSetupError, OidcConfigError};

pub(super) const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// A JWKS is a few kilobytes; refuse anything absurd.
pub const MAX_JWKS_BYTES: usize = 1 << 20;

/// A `jwks_url` must be https, or http on loopback.
pub(super) fn check_jwks_url(url: &str) -> Result<(), JwtSetupError> {
    let parsed = reqwest::Url::parse(url).map_err(|source| OidcConfigError::JwksUrl {
        url: url.to_string(),
        source,
    })?;
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
        _ => Err(OidcConfigError::InsecureJwksUrl(url.to_string()).into()),
    }
}

/// The key set of a JWKS file (read once, at start).
pub(super) fn read_jwks_file(path: &Path) -> Result<KeySet, JwtSetupError> {
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

/// The keys of the JWKS at `url`, read up to [`MAX_JWKS_BYTES`].
pub(super) async fn fetch_jwks(
    client: &reqwest::Client,
    url: &str,
) -> Result<Vec<Key>, JwtSetupError> {
    let fail = |source: FetchError| JwtSetupError::Fetch {
        url: url.to_string(),
        source,
    };
    let mut resp = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| fail(FetchError::Http(e)))?;
    if !resp.status().is_success() {
        return Err(fail(FetchError::Status(resp.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| fail(FetchError::Http(e)))? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(fail(FetchError::TooLarge));
        }
        body.extend_from_slice(&chunk);
    }
    parse_jwks(&body, url)
}

/// Why a JWK of the set is not used (logged; the other keys still count).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum UnusableJwk {
    #[error("not a signing key")]
    NotForSigning,
    #[error("RSA key for another algorithm than RS256")]
    RsaNotRs256,
    #[error("RSA key without n or e")]
    RsaComponentsMissing,
    #[error("bad RSA n or e")]
    RsaComponents,
    #[error("EC key on another curve than P-256")]
    EcNotP256,
    #[error("EC key for another algorithm than ES256")]
    EcNotEs256,
    #[error("EC key without x or y")]
    EcCoordinatesMissing,
    #[error("EC key with malformed x or y")]
    EcCoordinatesLength,
    #[error("bad EC x or y")]
    EcCoordinates,
    #[error("key type other than RSA and EC")]
    KeyType,
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
pub(super) fn parse_jwks(bytes: &[u8], origin: &str) -> Result<Vec<Key>, JwtSetupError> {
    let doc: JwksDoc =
        serde_json::from_slice(bytes).map_err(|source| JwtSetupError::ParseJwks {
            origin: origin.to_string(),
            source,
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
                tracing::debug!(origin, kid = ?jwk.kid, kty = %jwk.kty, %reason, "JWK skipped")
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

fn jwk_to_key(jwk: &RawJwk) -> Result<Key, UnusableJwk> {
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return Err(UnusableJwk::NotForSigning);
    }
    let (alg, decoding) = match jwk.kty.as_str() {
        "RSA" => {
            if jwk.alg.as_deref().is_some_and(|a| a != "RS256") {
                return Err(UnusableJwk::RsaNotRs256);
            }
            let (Some(n), Some(e)) = (&jwk.n, &jwk.e) else {
                return Err(UnusableJwk::RsaComponentsMissing);
            };
            let key =
                DecodingKey::from_rsa_components(n, e).map_err(|_| UnusableJwk::RsaComponents)?;
            (Algorithm::RS256, key)
        }
        "EC" => {
            if jwk.crv.as_deref() != Some("P-256") {
                return Err(UnusableJwk::EcNotP256);
            }
            if jwk.alg.as_deref().is_some_and(|a| a != "ES256") {
                return Err(UnusableJwk::EcNotEs256);
            }
            let (Some(x), Some(y)) = (&jwk.x, &jwk.y) else {
                return Err(UnusableJwk::EcCoordinatesMissing);
            };
            // A P-256 coordinate is 32 bytes; anything else cannot be a valid point.
            let len_ok = |c: &str| URL_SAFE_NO_PAD.decode(c).is_ok_and(|b| b.len() == 32);
            if !len_ok(x) || !len_ok(y) {
                return Err(UnusableJwk::EcCoordinatesLength);
            }
            let key =
                DecodingKey::from_ec_components(x, y).map_err(|_| UnusableJwk::EcCoordinates)?;
            (Algorithm::ES256, key)
        }
        _ => return Err(UnusableJwk::KeyType),
    };
    Ok(Key {
        kid: jwk.kid.clone(),
        alg,
        decoding,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::fixtures::JWKS;
    use super::*;

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

    #[test]
    fn jwt_jwks_url_must_be_https_or_loopback() {
        assert!(check_jwks_url("http://127.0.0.1:8080/certs").is_ok());
        assert!(check_jwks_url("http://[::1]/certs").is_ok());
        assert!(check_jwks_url("http://localhost/certs").is_ok());
        assert!(check_jwks_url("https://idp.example.org/certs").is_ok());
        assert!(check_jwks_url("ftp://idp.example.org/certs").is_err());
        assert!(matches!(
            check_jwks_url("not a url"),
            Err(JwtSetupError::Config(OidcConfigError::JwksUrl { .. }))
        ));
    }
}
