//! DICOM User Identity negotiation (PS3.7 D.3.3.7): who is behind an association, from the
//! A-ASSOCIATE-RQ's user identity item. A username and password is checked against the local
//! accounts (with the login throttle the HTTP API uses), a JWT with the same OIDC validator.
//! The verified user's role decides which services the association may use and its patient
//! scope which studies C-FIND, C-MOVE and C-GET see, exactly as over HTTP.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use dicom_ul::pdu::{
    AssociationRJ, AssociationRJResult, AssociationRJServiceUserReason, AssociationRJSource,
    UserIdentity, UserIdentityType, UserVariableItem,
};
use pacs_auth::accounts::{Accounts, Authenticated, LoginError};
use pacs_auth::jwt::JwtValidator;
use pacs_viewer_api::access::login_api::Throttle;
use pacs_viewer_api::access::policy::authorize;
use pacs_viewer_api::access::{Action, AuthMethod, Principal, Scope};
use serde::Deserialize;

use super::access::Service;

/// Whether associations must, may or may not say who their user is (`dicom_user_identity`
/// globally, `user_identity` per node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityPolicy {
    /// Not supported: an identity sent is ignored, as by an acceptor that does not know it.
    None,
    /// Checked when sent (a wrong one rejects the association); none sent is allowed.
    #[default]
    Accepted,
    /// A proven identity (username and password, or a JWT) is needed to associate.
    Required,
}

/// How the user showed who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityMethod {
    /// A username alone: a name for the audit trail, proving nothing.
    Username,
    Password,
    Jwt,
}

impl IdentityMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityMethod::Username => "username",
            IdentityMethod::Password => "password",
            IdentityMethod::Jwt => "jwt",
        }
    }
}

/// The user of an association.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DimseUser {
    pub name: String,
    pub method: IdentityMethod,
    /// The account's role and patients: for a proven identity always; for a username alone
    /// when it names an enabled account (which can only narrow what the node may do).
    pub account: Option<Authenticated>,
}

impl DimseUser {
    fn principal(&self) -> Option<Principal> {
        self.account.as_ref().map(|a| Principal {
            name: a.name.clone(),
            role: a.role,
            patient_ids: a.patient_ids.clone(),
            share_study: None,
            method: AuthMethod::DicomUserIdentity,
        })
    }

    /// The services this user's role allows (intersected with the node's by the caller).
    pub fn services(&self) -> Vec<Service> {
        let Some(principal) = self.principal() else {
            return super::access::ALL_SERVICES.to_vec();
        };
        super::access::ALL_SERVICES
            .iter()
            .copied()
            .filter(|s| authorize(&principal, action_of(*s)).is_ok())
            .collect()
    }

    /// Which studies queries and retrieves may see.
    pub fn scope(&self) -> Scope {
        match self.principal() {
            Some(p) => authorize(&p, Action::Search).unwrap_or(Scope::Patients(Vec::new())),
            None => Scope::All,
        }
    }
}

/// The HTTP action a DIMSE service is the same as, for the one access policy.
fn action_of(service: Service) -> Action {
    match service {
        Service::Find => Action::Search,
        Service::Move | Service::Get => Action::Retrieve,
        Service::Worklist => Action::ReadWorklist,
        // Storing, reporting the exam and asking the archive to commit are the modality's.
        Service::Store | Service::Mpps | Service::Commitment => Action::Store,
    }
}

/// Why an association's user identity is refused (A-ASSOCIATE-RJ, PS3.7 D.3.3.7.3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityRefusal {
    #[error("a user identity is required (username and password, or a JWT)")]
    Missing,
    #[error("user identity type {0} is not supported; send username and password, or a JWT")]
    Unsupported(&'static str),
    #[error("user {0:?}: a username alone proves nothing; send a password or a JWT")]
    Unproven(String),
    #[error("user {user:?}: {reason}")]
    Invalid { user: String, reason: String },
    #[error("user {0:?}: too many failed logins for this name or from this address; try later")]
    Locked(String),
    #[error("the user identity could not be checked within {0:?}")]
    Timeout(Duration),
}

impl IdentityRefusal {
    /// The name the peer claimed, for the audit trail.
    pub fn claimed_user(&self) -> Option<&str> {
        match self {
            IdentityRefusal::Unproven(u)
            | IdentityRefusal::Invalid { user: u, .. }
            | IdentityRefusal::Locked(u) => Some(u),
            _ => None,
        }
    }
}

/// Longest wait for a check (a JWT key set fetched from the identity provider).
const CHECK_DEADLINE: Duration = Duration::from_secs(10);

/// Checks user identities; one per server, shared by every association.
#[derive(Clone, Default)]
pub struct IdentityChecker {
    /// The global `dicom_user_identity`; a node's `user_identity` overrides it.
    pub policy: IdentityPolicy,
    pub accounts: Option<Arc<Accounts>>,
    pub jwt: Option<Arc<JwtValidator>>,
    /// Shared with the HTTP login: guessing over DICOM and HTTP counts together.
    pub throttle: Arc<Throttle>,
}

impl std::fmt::Debug for IdentityChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityChecker")
            .field("policy", &self.policy)
            .field("accounts", &self.accounts.is_some())
            .field("jwt", &self.jwt.is_some())
            .finish()
    }
}

/// The user identity item of an A-ASSOCIATE-RQ, if it has one of a type we read.
pub fn requested(user_variables: &[UserVariableItem]) -> Option<&UserIdentity> {
    user_variables.iter().find_map(|v| match v {
        UserVariableItem::UserIdentityItem(u) => Some(u),
        _ => None,
    })
}

/// The A-ASSOCIATE-AC's answer to an identity that asked for one: a User Identity server
/// response item (54H-59H: type 59H) with an empty server response, as PS3.7 D.3.3.7.2 has
/// for usernames and passwords and allows for JWTs. dicom-ul has no variant for it.
pub fn positive_response() -> UserVariableItem {
    UserVariableItem::Unknown(0x59, vec![0, 0])
}

/// A-ASSOCIATE-RJ for a refused identity: rejected-permanent, service-user, no reason given
/// (PS3.7 D.3.3.7.3 names no better reason; the audit trail and the log keep the real one).
pub fn rejection() -> AssociationRJ {
    AssociationRJ {
        result: AssociationRJResult::Permanent,
        source: AssociationRJSource::ServiceUser(AssociationRJServiceUserReason::NoReasonGiven),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_string()
}

impl IdentityChecker {
    /// The user of an association under `policy`: `Ok(None)` when there is none to know
    /// (not sent, or not supported here and not required).
    pub async fn check(
        &self,
        policy: IdentityPolicy,
        item: Option<&UserIdentity>,
        source: IpAddr,
    ) -> Result<Option<DimseUser>, IdentityRefusal> {
        match tokio::time::timeout(CHECK_DEADLINE, self.check_now(policy, item, source)).await {
            Ok(result) => result,
            Err(_) => Err(IdentityRefusal::Timeout(CHECK_DEADLINE)),
        }
    }

    async fn check_now(
        &self,
        policy: IdentityPolicy,
        item: Option<&UserIdentity>,
        source: IpAddr,
    ) -> Result<Option<DimseUser>, IdentityRefusal> {
        if policy == IdentityPolicy::None {
            return Ok(None);
        }
        let required = policy == IdentityPolicy::Required;
        let Some(item) = item else {
            return if required {
                Err(IdentityRefusal::Missing)
            } else {
                Ok(None)
            };
        };
        match item.identity_type() {
            UserIdentityType::Username => {
                let name = text(&item.primary_field());
                if required {
                    return Err(IdentityRefusal::Unproven(name));
                }
                let account = self.accounts.as_ref().and_then(|a| a.current(&name));
                Ok(Some(DimseUser {
                    name,
                    method: IdentityMethod::Username,
                    account,
                }))
            }
            UserIdentityType::UsernamePassword => {
                let name = text(&item.primary_field());
                let password = String::from_utf8_lossy(&item.secondary_field()).into_owned();
                self.password(name, password, source).await.map(Some)
            }
            UserIdentityType::Jwt => self.jwt(&item.primary_field()).await.map(Some),
            other => {
                let kind = match other {
                    UserIdentityType::KerberosServiceTicket => "Kerberos",
                    UserIdentityType::SamlAssertion => "SAML",
                    _ => "unknown",
                };
                if required {
                    Err(IdentityRefusal::Unsupported(kind))
                } else {
                    tracing::info!(kind, "user identity of a type not checked here; ignored");
                    Ok(None)
                }
            }
        }
    }

    async fn password(
        &self,
        name: String,
        password: String,
        source: IpAddr,
    ) -> Result<DimseUser, IdentityRefusal> {
        let invalid = |reason: &str| IdentityRefusal::Invalid {
            user: name.clone(),
            reason: reason.to_string(),
        };
        let Some(accounts) = self.accounts.clone() else {
            return Err(invalid("no local accounts are configured"));
        };
        if self.throttle.check(&name, Some(source)).is_err() {
            return Err(IdentityRefusal::Locked(name));
        }
        // argon2 costs tens of milliseconds of CPU: not on the async threads.
        let user = name.clone();
        let verified =
            tokio::task::spawn_blocking(move || accounts.verify_password(&user, &password, None))
                .await
                .map_err(|e| invalid(&format!("the check failed: {e}")))?;
        match verified {
            Ok(who) => {
                self.throttle.succeeded(&name);
                Ok(DimseUser {
                    name,
                    method: IdentityMethod::Password,
                    account: Some(who),
                })
            }
            Err(LoginError::TotpRequired) => Err(invalid(
                "the account needs a TOTP code, which DICOM cannot carry; use a JWT",
            )),
            Err(e) => {
                self.throttle.failed(&name, Some(source));
                Err(invalid(&e.to_string()))
            }
        }
    }

    async fn jwt(&self, token: &[u8]) -> Result<DimseUser, IdentityRefusal> {
        let token = text(token);
        let Some(jwt) = &self.jwt else {
            return Err(IdentityRefusal::Invalid {
                user: "(JWT)".into(),
                reason: "OIDC is not configured ([auth.oidc])".into(),
            });
        };
        match jwt.validate(&token).await {
            Ok(id) => Ok(DimseUser {
                name: id.name.clone(),
                method: IdentityMethod::Jwt,
                account: Some(id.into()),
            }),
            Err(e) => Err(IdentityRefusal::Invalid {
                user: "(JWT)".into(),
                reason: e.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacs_auth::role::Role;

    fn user(role: Role, patients: &[&str]) -> DimseUser {
        DimseUser {
            name: "u".into(),
            method: IdentityMethod::Password,
            account: Some(Authenticated {
                name: "u".into(),
                role,
                patient_ids: patients.iter().map(|p| p.to_string()).collect(),
            }),
        }
    }

    fn identity(kind: UserIdentityType, primary: &str, secondary: &str) -> UserIdentity {
        UserIdentity::new(true, kind, primary.into(), secondary.into())
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn roles_decide_the_services_and_patients_the_scope() {
        let billing = user(Role::Billing, &[]).services();
        assert_eq!(billing, vec![Service::Find]);
        let tech = user(Role::Technologist, &[]).services();
        assert!(tech.contains(&Service::Store) && tech.contains(&Service::Worklist));
        assert!(tech.contains(&Service::Move) && tech.contains(&Service::Mpps));
        let patient = user(Role::Patient, &["P1"]);
        assert_eq!(
            patient.services(),
            vec![Service::Find, Service::Move, Service::Get]
        );
        assert!(patient.scope().admits("1.2", "P1", ""));
        assert!(!patient.scope().admits("1.2", "P2", ""));
        assert_eq!(user(Role::Radiologist, &[]).scope(), Scope::All);
    }

    #[tokio::test]
    async fn policies_decide_what_a_missing_or_weak_identity_gets() {
        let checker = IdentityChecker::default();
        let name_only = identity(UserIdentityType::Username, "tech1", "");
        let kerberos = identity(UserIdentityType::KerberosServiceTicket, "ticket", "");
        let none = IdentityPolicy::None;
        let accepted = IdentityPolicy::Accepted;
        let required = IdentityPolicy::Required;
        assert_eq!(checker.check(none, Some(&name_only), LOCAL).await, Ok(None));
        assert_eq!(checker.check(accepted, None, LOCAL).await, Ok(None));
        assert_eq!(
            checker.check(required, None, LOCAL).await,
            Err(IdentityRefusal::Missing)
        );
        let named = checker
            .check(accepted, Some(&name_only), LOCAL)
            .await
            .expect("accepted")
            .expect("a user");
        assert_eq!(named.name, "tech1");
        assert_eq!(named.account, None, "no accounts: a name only");
        assert_eq!(named.scope(), Scope::All);
        assert_eq!(
            checker.check(required, Some(&name_only), LOCAL).await,
            Err(IdentityRefusal::Unproven("tech1".into()))
        );
        assert_eq!(
            checker.check(accepted, Some(&kerberos), LOCAL).await,
            Ok(None)
        );
        assert_eq!(
            checker.check(required, Some(&kerberos), LOCAL).await,
            Err(IdentityRefusal::Unsupported("Kerberos"))
        );
        // Without accounts or OIDC nothing can be proven.
        let password = identity(UserIdentityType::UsernamePassword, "rad", "secret");
        assert!(matches!(
            checker.check(accepted, Some(&password), LOCAL).await,
            Err(IdentityRefusal::Invalid { .. })
        ));
        let jwt = identity(UserIdentityType::Jwt, "a.b.c", "");
        assert!(matches!(
            checker.check(required, Some(&jwt), LOCAL).await,
            Err(IdentityRefusal::Invalid { .. })
        ));
    }
}
