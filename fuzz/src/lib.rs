//! The parsers under fuzzing, compiled from the main crates' own source files through
//! `#[path]` modules (no copies), laid out as in those crates so that their `crate::` and
//! `super::` paths resolve. `pacs_storage` is the stand-in in shims/pacs-storage.

pub mod dicomweb;
pub mod dimse;

/// viewer-api's error type, the real file.
#[path = "../../viewer-api/src/error.rs"]
pub mod error;

/// Stand-in for the main crate's `config` module: access.rs names `RemoteNode`.
pub mod config {
    pub struct RemoteNode {
        pub ae_title: String,
        pub host: String,
        pub port: u16,
        pub allow: Option<Vec<crate::dimse::access::Service>>,
    }
}
