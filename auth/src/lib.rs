//! Building blocks of person authentication (HIPAA §164.312(d)): roles, local accounts with
//! passwords, TOTP and API keys, server-side sessions, OIDC bearer-token validation, and the
//! signed share links of the patient portal. No HTTP framework here: the HTTP API
//! (`pacs-viewer-api`), the CLI and the workers all use these.

pub mod accounts;
pub mod clock;
pub mod jwt;
pub mod role;
pub mod share;
pub mod totp;
