//! The query model of `pacs_storage::query`: the real matcher source, and stubs for the
//! engine (which needs the index) with the same names and shapes.

#[path = "../../../../storage/src/query/matching.rs"]
pub mod matching;

pub use matching::{MatchOptions, Matcher, MatcherError};

use crate::records::Attributes;
use crate::{Index, StorageError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Patient,
    Study,
    Series,
    Image,
}

/// Copy of the real `Level::parse` and `Level::as_str` (services/identifier.rs uses them).
impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PATIENT" => Some(Level::Patient),
            "STUDY" => Some(Level::Study),
            "SERIES" => Some(Level::Series),
            "IMAGE" | "INSTANCE" => Some(Level::Image),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Patient => "PATIENT",
            Level::Study => "STUDY",
            Level::Series => "SERIES",
            Level::Image => "IMAGE",
        }
    }
}

#[derive(Debug, Clone)]
pub struct QueryKey {
    pub tag: String,
    pub vr: String,
    pub matcher: Matcher,
}

#[derive(Debug, Clone)]
pub struct Query {
    pub level: Level,
    pub keys: Vec<QueryKey>,
    pub options: MatchOptions,
    pub relational: bool,
}

#[derive(Debug, Clone, Default)]
pub struct QueryMatch {
    pub attributes: Attributes,
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("a {level} level query needs {key}")]
    MissingParentKey {
        level: &'static str,
        key: &'static str,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Every key counts as indexed, so the fuzzer reaches `Matcher::parse` for every key (the
/// real list only makes QIDO-RS skip some keys before parsing them).
pub fn is_supported(_tag: &str) -> bool {
    true
}

/// Not reached by the fuzz targets (they parse; they do not search).
pub fn execute(
    _index: &dyn Index,
    _query: &Query,
    _on_match: &mut dyn FnMut(QueryMatch) -> bool,
) -> Result<(), QueryError> {
    Ok(())
}
