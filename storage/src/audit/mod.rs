//! Tamper-evident, append-only audit trail (HIPAA audit controls, IHE ATNA export).
//!
//! Callers hand plain [`AuditEntry`] values to an [`AuditTrail`]; nothing here knows HTTP or
//! DIMSE. The default trail, [`AuditLog`], keeps its own RocksDB database (the server uses
//! `<data>/audit`), apart from the index, so audit writes never contend with ingest
//! batches and the trail can be copied or verified on its own.
//!
//! Every record carries a seq (1, 2, 3 … no gaps) and the SHA-256 of the previous record,
//! so altering, inserting or deleting a record, or cutting the tail (a `head` key names the
//! last record), shows in [`AuditLog::verify`]. See [`chain`] for the hashed bytes.

pub mod atna;
mod audit_message;
pub mod chain;
mod clock;
mod error;
mod export;
mod filter;
mod model;
mod report;
mod trail;
// The default trail, in its own RocksDB (left out of builds without RocksDB, e.g. fuzzing).
#[cfg(feature = "rocksdb")]
mod db;
#[cfg(feature = "rocksdb")]
mod log;
#[cfg(feature = "rocksdb")]
mod query;
#[cfg(feature = "rocksdb")]
mod verify;
#[cfg(feature = "rocksdb")]
mod writer;

#[cfg(all(test, feature = "rocksdb"))]
mod tests;

pub use atna::{event_for, ActionCode, Code};
pub use audit_message::audit_message_xml;
pub use clock::rfc3339_millis;
pub use error::AuditError;
pub use export::{hostname, to_json_line, to_syslog};
pub use filter::AuditFilter;
#[cfg(feature = "rocksdb")]
pub use log::AuditLog;
pub use model::{AuditEntry, AuditRecord, Head, Interface, Outcome, GENESIS_HASH};
pub use report::{Problem, VerifyReport};
pub use trail::AuditTrail;
