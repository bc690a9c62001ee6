//! The PACS identity in a token's claims: who (a configurable claim, else `sub`), which role
//! (a string or array claim, possibly nested), which Patient IDs, and evidence of a second
//! factor (`amr`, or an accepted `acr`).

use serde_json::{Map, Value};

use super::{JwtError, JwtIdentity, OidcConfig, MFA_AMR};
use crate::role::Role;

/// The PACS identity a token's claims give: user, role, Patient IDs and whether a second
/// factor was used (required when the settings say so).
pub(super) fn identity(
    c: &OidcConfig,
    claims: &Map<String, Value>,
) -> Result<JwtIdentity, JwtError> {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::fixtures::{claims, config, rs256, validator};
    use super::*;

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
}
