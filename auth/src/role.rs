//! The roles a person or a system can hold; the access policy is decided per role elsewhere.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Who is acting, by job: names are kebab-case in files, tokens and on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Admin,
    Radiologist,
    Technologist,
    ReferringPhysician,
    Billing,
    /// Sees only the studies of the Patient IDs on the account or in the token.
    Patient,
    AiService,
    Ehr,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?} (known: admin, radiologist, technologist, referring-physician, billing, patient, ai-service, ehr)")]
pub struct UnknownRole(pub String);

impl Role {
    pub const ALL: [Role; 8] = [
        Role::Admin,
        Role::Radiologist,
        Role::Technologist,
        Role::ReferringPhysician,
        Role::Billing,
        Role::Patient,
        Role::AiService,
        Role::Ehr,
    ];

    /// The kebab-case name, as serde writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Radiologist => "radiologist",
            Role::Technologist => "technologist",
            Role::ReferringPhysician => "referring-physician",
            Role::Billing => "billing",
            Role::Patient => "patient",
            Role::AiService => "ai-service",
            Role::Ehr => "ehr",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_round_trip_through_display_fromstr_and_serde() {
        for role in Role::ALL {
            let name = role.to_string();
            assert_eq!(name.parse::<Role>(), Ok(role));
            // serde and Display must agree: the same names appear in users.toml and in tokens.
            let json = serde_json::to_string(&role).expect("serialize");
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(
                serde_json::from_str::<Role>(&json).expect("deserialize"),
                role
            );
        }
        assert_eq!(Role::ReferringPhysician.to_string(), "referring-physician");
        assert_eq!(Role::AiService.to_string(), "ai-service");
    }

    #[test]
    fn role_unknown_names_are_refused() {
        for bad in ["", "Admin", "referring_physician", "root", " admin"] {
            let err = bad.parse::<Role>().expect_err("refused");
            assert_eq!(err, UnknownRole(bad.to_string()));
        }
        assert!(serde_json::from_str::<Role>("\"superuser\"").is_err());
    }
}
