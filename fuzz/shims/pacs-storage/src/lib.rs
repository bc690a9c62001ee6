//! Stand-in for `pacs-storage` in the fuzz build. The real crate links RocksDB, whose
//! sanitizer build would cost CI minutes; the fuzzed parser files only name these items.
//! Everything here is a type stub or a verbatim copy of a few lines, except the query
//! matcher, the element length check, UN re-reading, the JPEG 2000 size check and the JPEG decoder, which are
//! the real source files.

#[path = "../../../../storage/src/j2k.rs"]
pub mod j2k;
#[path = "../../../../storage/src/jpeg.rs"]
pub mod jpeg;
#[path = "../../../../storage/src/lengths/mod.rs"]
pub mod lengths;
#[path = "../../../../storage/src/un_vr.rs"]
pub mod un_vr;
pub mod query;

/// Copy of `pacs_storage::ingest::error_chain`: an error and its sources on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

pub mod attrs {
    /// Copy of `pacs_storage::attrs::tag_key`.
    pub fn tag_key(tag: dicom_core::Tag) -> String {
        format!("{:04X}{:04X}", tag.group(), tag.element())
    }
}

pub mod part10 {
    /// Same values as `pacs_storage::part10` (negotiation echoes them in the A-ASSOCIATE-AC).
    pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.152397361049273061512840537384512093517";
    pub const IMPLEMENTATION_VERSION_NAME: &str = concat!("PACS_RS_", env!("CARGO_PKG_VERSION"));
}

pub mod records {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    /// Same shape as `pacs_storage::records::AttrValue`.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct AttrValue {
        pub vr: String,
        pub values: Vec<String>,
    }

    pub type Attributes = BTreeMap<String, AttrValue>;

    impl AttrValue {
        pub fn first(&self) -> Option<&str> {
            self.values.first().map(String::as_str)
        }
    }
}

/// Never constructed here: only `From<StorageError> for ApiError` names it.
#[derive(Debug, thiserror::Error)]
#[error("storage error")]
pub struct StorageError;

/// The index trait, empty: QIDO-RS `Search::run` takes one but the fuzz target only parses.
pub trait Index: Send + Sync {}
