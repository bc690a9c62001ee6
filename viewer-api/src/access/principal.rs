//! Who a request acts for, once authenticated.

use pacs_auth::role::Role;

/// How the caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// No authentication configured (loopback-only default install).
    Open,
    /// Session token from `POST /api/login` (local account).
    Session,
    /// API key of a service account.
    ApiKey,
    /// OIDC / OAuth2 bearer JWT from the site's identity provider.
    Jwt,
    /// Verified HTTPS client certificate naming a local account.
    ClientCertificate,
    /// Patient-portal share link (one study, until it expires).
    ShareLink,
    /// Research link (one study, de-identified, until it expires).
    ResearchLink,
    /// Public route (login, health, viewer files): no identity.
    None,
    /// DICOM User Identity negotiation (username and password, or a JWT) on an association.
    DicomUserIdentity,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Open => "open",
            AuthMethod::Session => "session",
            AuthMethod::ApiKey => "api-key",
            AuthMethod::Jwt => "jwt",
            AuthMethod::ClientCertificate => "client-certificate",
            AuthMethod::ShareLink => "share-link",
            AuthMethod::ResearchLink => "research-link",
            AuthMethod::None => "none",
            AuthMethod::DicomUserIdentity => "dicom-user-identity",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    /// For the patient role: the Patient IDs whose studies they may see.
    pub patient_ids: Vec<String>,
    /// For a share link: the one study it opens.
    pub share_study: Option<String>,
    pub method: AuthMethod,
}

impl Principal {
    /// Everyone on an install without authentication (HTTP on loopback only).
    pub fn open() -> Principal {
        Principal {
            name: "anonymous".into(),
            role: Role::Admin,
            patient_ids: Vec::new(),
            share_study: None,
            method: AuthMethod::Open,
        }
    }

    /// The holder of a valid share link.
    pub fn share_link(study: String) -> Principal {
        Principal {
            name: "share-link".into(),
            role: Role::Patient,
            patient_ids: Vec::new(),
            share_study: Some(study),
            method: AuthMethod::ShareLink,
        }
    }

    /// The holder of a valid research link: no role beyond what the link names.
    pub fn research_link(study: String) -> Principal {
        Principal {
            name: "research-link".into(),
            role: Role::Patient,
            patient_ids: Vec::new(),
            share_study: Some(study),
            method: AuthMethod::ResearchLink,
        }
    }
}
