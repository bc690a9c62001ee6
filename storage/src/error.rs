//! Error types of the storage crate.

use std::path::PathBuf;

/// Failures of the index or blob store themselves (I/O, database, corrupt records).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(
        "the data directory {path} is in use by another process (a running pacs server?): {detail}"
    )]
    Locked { path: PathBuf, detail: String },
    #[error("audit trail: {0}")]
    Audit(String),
    #[error("blob encryption key: {0}")]
    BadKey(String),
    #[cfg(feature = "rocksdb")]
    #[error("database error in {context}: {source}")]
    Db {
        context: &'static str,
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
    #[error("corrupt {kind} record for key {key}: {source}")]
    CorruptRecord {
        kind: &'static str,
        key: String,
        #[source]
        source: crate::index::codec::CodecError,
    },
    #[error("unreadable {what}: {detail}")]
    CorruptBlob { what: String, detail: String },
    #[error("stored instance failed its integrity check: {0}")]
    Integrity(#[from] IntegrityProblem),
    #[error("column family {0} is missing from the index")]
    MissingColumnFamily(&'static str),
    #[error("the index writer has stopped")]
    WriterGone,
    #[error("instance {sop_instance_uid} changed while it was being corrected; try again")]
    ChangedMeanwhile { sop_instance_uid: String },
    /// The object store (S3-compatible) refused or could not be reached.
    #[cfg(feature = "s3")]
    #[error("object store: {context} {key}: {source}")]
    ObjectStore {
        context: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("index batch failed: {detail}")]
    BatchFailed { detail: String, out_of_space: bool },
    /// PostgreSQL refused a statement or the connection broke.
    #[cfg(feature = "postgres")]
    #[error("PostgreSQL: {context}: {}", chain(.source))]
    Postgres {
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    /// No connection to PostgreSQL could be had (server away, pool exhausted).
    #[cfg(feature = "postgres")]
    #[error("PostgreSQL unavailable: {context}: {}", chain(.source))]
    PostgresPool {
        context: &'static str,
        #[source]
        source: deadpool_postgres::PoolError,
    },
    #[error("index configuration: {0}")]
    IndexConfig(String),
}

impl StorageError {
    pub(crate) fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        StorageError::Io {
            context,
            path: path.into(),
            source,
        }
    }

    #[cfg(feature = "rocksdb")]
    pub(crate) fn db(context: &'static str) -> impl FnOnce(rocksdb::Error) -> Self {
        move |source| StorageError::Db { context, source }
    }

    /// True when the failure is the shared database or bucket being away for now: the
    /// sender should try again later (C-STORE 0xA700-range "out of resources", HTTP 503).
    pub fn is_unavailable(&self) -> bool {
        match self {
            #[cfg(feature = "postgres")]
            StorageError::PostgresPool { .. } => true,
            #[cfg(feature = "postgres")]
            StorageError::Postgres { source, .. } => {
                source.is_closed()
                    || source
                        .code()
                        .is_none_or(|c| c.code().starts_with("08") || c.code().starts_with("57P"))
            }
            #[cfg(feature = "s3")]
            StorageError::ObjectStore { source, .. } => {
                matches!(source, object_store::Error::Generic { .. })
            }
            _ => false,
        }
    }

    /// True when the failure means the disk (or quota) is full.
    pub fn is_out_of_space(&self) -> bool {
        match self {
            StorageError::Io { source, .. } => is_out_of_space(source),
            #[cfg(feature = "rocksdb")]
            StorageError::Db { source, .. } => {
                let msg = source.to_string();
                msg.contains("No space left") || msg.contains("File too large")
            }
            StorageError::BatchFailed { out_of_space, .. } => *out_of_space,
            _ => false,
        }
    }
}

/// ENOSPC, EDQUOT and EFBIG all mean "no room for this instance".
pub fn is_out_of_space(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::StorageFull
            | std::io::ErrorKind::QuotaExceeded
            | std::io::ErrorKind::FileTooLarge
    )
}

/// Why one instance was not stored. Each variant maps to one protocol answer at the
/// DIMSE and HTTP boundaries.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The bytes are not a readable DICOM data set.
    #[error("cannot parse the data set: {0}")]
    Unparseable(String),
    /// A required identifying attribute is absent or empty.
    #[error("missing {0}")]
    MissingAttribute(&'static str),
    /// An identifying UID breaks PS3.5 9.1. Refused rather than stored: such UIDs break URL
    /// paths, other archives and the matching of retrieves, and the sender can be fixed.
    #[error("invalid UID in {attribute}: {value:?} (PS3.5 9.1: digits and dots, at most 64 characters); not stored")]
    InvalidUid {
        attribute: &'static str,
        value: String,
    },
    /// The data set does not match what the sender announced (command or URL).
    #[error("{attribute} {found} in the data set differs from {expected} announced by the sender")]
    Mismatch {
        attribute: &'static str,
        expected: String,
        found: String,
    },
    /// A rejection note (IHE IOCM) that cannot be applied as a whole: malformed, naming
    /// instances the archive does not hold, or naming them under another study.
    #[error("rejection note refused: {0}")]
    RejectionRefused(String),
    /// The instance was hidden by a rejection note; a new copy does not bring it back.
    #[error(
        "instance {sop_instance_uid} was rejected ({reason}); an administrator can restore it"
    )]
    PreviouslyRejected {
        sop_instance_uid: String,
        reason: crate::rejection::RejectionReason,
    },
    /// Writing the blob or the index failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What is wrong with one stored instance's blob.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntegrityProblem {
    #[error("blob {0} is missing")]
    Missing(String),
    #[error("blob {key} cannot be read: {reason}")]
    Unreadable { key: String, reason: String },
    #[error("blob {key} changed size: {recorded} bytes recorded, {found} on disk")]
    SizeChanged {
        key: String,
        recorded: u64,
        found: u64,
    },
    #[error("blob {key} changed content: SHA-256 {found}, {recorded} recorded")]
    ContentChanged {
        key: String,
        recorded: String,
        found: String,
    },
    #[error("blob {0} has no recorded checksum (stored before integrity checks)")]
    NoChecksum(String),
}

/// An error and its causes on one line: tokio-postgres shows only "db error" for a server
/// error and keeps the server's message (and a TLS failure's reason) in the source.
#[cfg(feature = "postgres")]
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}
