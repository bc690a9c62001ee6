//! Failures of the audit trail.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(
        "the audit directory {path} is in use by another process (a running pacs server?): {detail}"
    )]
    Locked { path: PathBuf, detail: String },
    #[cfg(feature = "rocksdb")]
    #[error("audit database error {context} ({path}): {source}")]
    Db {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: rocksdb::Error,
    },
    #[error("I/O error {context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode audit {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("undecodable audit {what}: {source}")]
    Decode {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the audit log {0} is open read-only: it cannot record")]
    ReadOnly(PathBuf),
    #[error("the audit writer has stopped")]
    WriterGone,
    #[error("cannot start the audit writer thread: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("audit commit failed ({detail}); the records were written to the server log")]
    CommitFailed { detail: String },
}

impl AuditError {
    #[cfg(feature = "rocksdb")]
    pub(crate) fn db(
        context: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(rocksdb::Error) -> Self {
        let path = path.into();
        move |source| AuditError::Db {
            context,
            path,
            source,
        }
    }
}
