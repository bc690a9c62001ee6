//! The model of a query: its level, keys and matching options, what one match holds, and
//! which keys the index can match on. No index access here (see the engine).

use std::collections::HashSet;
use std::sync::OnceLock;

use crate::attrs::{tag_key, INSTANCE_TAGS, PATIENT_TAGS, SERIES_TAGS, STUDY_TAGS};
use crate::error::StorageError;
use crate::records::Attributes;

use super::matching::{MatchOptions, Matcher};

/// Query/Retrieve level (PS3.4 C.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Patient,
    Study,
    Series,
    Image,
}

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
    /// Tag as 8 hex digits.
    pub tag: String,
    pub vr: String,
    pub matcher: Matcher,
}

#[derive(Debug, Clone)]
pub struct Query {
    pub level: Level,
    pub keys: Vec<QueryKey>,
    pub options: MatchOptions,
    /// Relational query (QIDO-RS `/series`, `/instances`): a series or instance query may
    /// omit its parent UIDs and is answered across all studies. C-FIND is hierarchical.
    pub relational: bool,
}

/// One matching entity: every attribute the index holds for it and the levels above it,
/// plus the computed attributes of PS3.4 C.3.4.
#[derive(Debug, Clone, Default)]
pub struct QueryMatch {
    pub attributes: Attributes,
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("a {level} level query needs {key} (hierarchical query, PS3.4 C.4.1.2.1)")]
    MissingParentKey {
        level: &'static str,
        key: &'static str,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

// Computed attributes (PS3.4 C.3.4) and keys we need by name.
pub(crate) const PATIENT_ID: &str = "00100020";
pub(crate) const PATIENT_NAME: &str = "00100010";
pub(crate) const ISSUER_OF_PATIENT_ID: &str = "00100021";
pub(crate) const STUDY_UID: &str = "0020000D";
pub(crate) const SERIES_UID: &str = "0020000E";
pub(crate) const SOP_UID: &str = "00080018";
pub(crate) const ACCESSION: &str = "00080050";
pub(crate) const STUDY_DATE: &str = "00080020";
pub(crate) const MODALITY: &str = "00080060";
pub(crate) const MODALITIES_IN_STUDY: &str = "00080061";
pub(crate) const SOP_CLASSES_IN_STUDY: &str = "00080062";
pub(crate) const NUM_PATIENT_STUDIES: &str = "00201200";
pub(crate) const NUM_PATIENT_SERIES: &str = "00201202";
pub(crate) const NUM_PATIENT_INSTANCES: &str = "00201204";
pub(crate) const NUM_STUDY_SERIES: &str = "00201206";
pub(crate) const NUM_STUDY_INSTANCES: &str = "00201208";
pub(crate) const NUM_SERIES_INSTANCES: &str = "00201209";
pub(crate) const COMPUTED: &[&str] = &[
    MODALITIES_IN_STUDY,
    SOP_CLASSES_IN_STUDY,
    NUM_PATIENT_STUDIES,
    NUM_PATIENT_SERIES,
    NUM_PATIENT_INSTANCES,
    NUM_STUDY_SERIES,
    NUM_STUDY_INSTANCES,
    NUM_SERIES_INSTANCES,
];

/// Keys the index can match on; others are ignored for matching (PS3.4 C.2.2.1.3 allows it)
/// and returned empty.
pub fn is_supported(tag: &str) -> bool {
    static SUPPORTED: OnceLock<HashSet<String>> = OnceLock::new();
    SUPPORTED
        .get_or_init(|| {
            [PATIENT_TAGS, STUDY_TAGS, SERIES_TAGS, INSTANCE_TAGS]
                .iter()
                .flat_map(|list| list.iter().map(|t| tag_key(*t)))
                .chain(COMPUTED.iter().map(|t| t.to_string()))
                .collect()
        })
        .contains(tag)
}

impl Query {
    pub(crate) fn key(&self, tag: &str) -> Option<&Matcher> {
        self.keys.iter().find(|k| k.tag == tag).map(|k| &k.matcher)
    }

    pub(crate) fn accepts(&self, m: &QueryMatch) -> bool {
        self.keys
            .iter()
            .filter(|k| is_supported(&k.tag))
            .all(|k| match m.attributes.get(&k.tag) {
                Some(v) => k.matcher.matches(&v.vr, &v.values, self.options),
                None => matches!(k.matcher, Matcher::Universal),
            })
    }
}
