//! Building blocks of person authentication (HIPAA §164.312(d)): roles, local accounts with
//! passwords, TOTP and API keys, server-side sessions, and OIDC bearer-token validation.

pub mod accounts;
pub mod clock;
pub mod jwt;
pub mod role;
pub mod totp;
