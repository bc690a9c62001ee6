//! Errors of the `pacs` commands, reported on one line by `main`.

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Storage(#[from] pacs_storage::StorageError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("I/O error: {0}")]
    Io(std::io::Error),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("{0} stored instances changed or are missing")]
    Integrity(usize),
    #[error("the audit trail failed verification ({0} problems)")]
    AuditChain(usize),
    #[error("cannot build the workers' HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    /// `pacs user`: the accounts file or an edit of it.
    #[error("internal error: {0}")]
    Accounts(#[from] pacs_auth::accounts::AccountsError),
    /// `pacs serve`: the accounts file cannot be read.
    #[error("internal error: local accounts: {0}")]
    LocalAccounts(#[source] pacs_auth::accounts::AccountsError),
    /// `pacs serve`: the `[auth.oidc]` settings or their keys.
    #[error("internal error: OIDC: {0}")]
    Oidc(#[source] pacs_auth::jwt::JwtSetupError),
    #[error("internal error: {0}")]
    Internal(String),
}
