//! The validator: the token's header (algorithm first), its key, its signature and the
//! standard claims (`iss`, `aud`, `exp`, `nbf`), then the PACS identity in its claims.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::keys::KeyCache;
use super::{
    claims, JwtError, JwtIdentity, JwtSetupError, MalformedToken, OidcConfig, OidcConfigError,
};

/// Validates bearer tokens; share one per server (`Arc`).
pub struct JwtValidator {
    config: OidcConfig,
    pub(super) keys: KeyCache,
}

impl JwtValidator {
    /// Checks the settings and loads the keys: the file must hold a usable key; from a URL a
    /// failed first fetch is only logged (the identity provider may be down while the PACS
    /// starts) and retried when tokens arrive.
    pub async fn new(config: OidcConfig) -> Result<Self, JwtSetupError> {
        if config.issuer.trim().is_empty() {
            return Err(OidcConfigError::EmptyIssuer.into());
        }
        if config.audience.trim().is_empty() {
            return Err(OidcConfigError::EmptyAudience.into());
        }
        let keys = match (&config.jwks_file, &config.jwks_url) {
            (Some(path), None) => KeyCache::from_file(path)?,
            (None, Some(url)) => KeyCache::from_url(url).await?,
            _ => return Err(OidcConfigError::KeySource.into()),
        };
        let validator = JwtValidator { config, keys };
        tracing::info!(
            issuer = %validator.config.issuer,
            keys = validator.keys.len(),
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
        let key = self.keys.key_for(header.kid.as_deref(), header.alg).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[self.config.issuer.as_str()]);
        validation.set_audience(&[self.config.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = self.config.leeway_secs;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &validation)
            .map_err(|e| self.map_error(e))?;
        let identity = claims::identity(&self.config, &data.claims)?;
        tracing::debug!(user = %identity.name, role = %identity.role, mfa = identity.mfa, "bearer token accepted");
        Ok(identity)
    }

    fn map_error(&self, e: jsonwebtoken::errors::Error) -> JwtError {
        match e.kind().clone() {
            ErrorKind::InvalidSignature => JwtError::BadSignature,
            ErrorKind::ExpiredSignature => JwtError::Expired,
            ErrorKind::ImmatureSignature => JwtError::NotYetValid,
            ErrorKind::InvalidIssuer => JwtError::WrongIssuer(self.config.issuer.clone()),
            ErrorKind::InvalidAudience => JwtError::WrongAudience(self.config.audience.clone()),
            ErrorKind::MissingRequiredClaim(c) => JwtError::MissingClaim(c),
            ErrorKind::InvalidToken => MalformedToken::NotBase64UrlParts.into(),
            ErrorKind::Base64(e) => MalformedToken::Base64(e).into(),
            ErrorKind::Json(e) => MalformedToken::Json(e.into()).into(),
            ErrorKind::Utf8(e) => MalformedToken::Utf8(e).into(),
            _ => JwtError::Invalid(e),
        }
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
        return Err(MalformedToken::Parts.into());
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(h)
        .map_err(MalformedToken::HeaderBase64)?;
    let header: Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|e| MalformedToken::HeaderJson(e.into()))?;
    let alg = match header.get("alg") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(MalformedToken::AlgNotString.into()),
        None => return Err(MalformedToken::NoAlg.into()),
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
        return Err(MalformedToken::CriticalExtensions.into());
    }
    let kid = match header.get("kid") {
        Some(Value::String(s)) => Some(s.clone()),
        None | Some(Value::Null) => None,
        Some(_) => return Err(MalformedToken::KidNotString.into()),
    };
    Ok(TokenHeader { alg, kid })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::fixtures::{
        b64, claims, config, now, rs256, sign, validator, AUDIENCE, EC_PEM, ISSUER, RSA_OTHER_PEM,
        RSA_PEM, RSA_PUB_PEM,
    };
    use super::*;
    use crate::accounts::Authenticated;
    use crate::role::Role;

    #[tokio::test]
    async fn jwt_validator_is_shareable_across_tasks() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: T) {}
        let v = validator(config()).await;
        send_sync(&v);
        // The HTTP middleware awaits `validate` inside Send futures.
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
    }
}
