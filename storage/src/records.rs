//! Index records for the four levels of the DICOM information model (PS3.4 C.6.1).
//!
//! Attribute values are kept as decoded text with their VR, keyed by tag (`GGGGEEEE` hex), so
//! QIDO-RS and C-FIND can answer from the index without opening a blob.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::blob::BlobKey;

/// One attribute: its VR and its values (multi-valued attributes split at backslashes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttrValue {
    pub vr: String,
    pub values: Vec<String>,
}

/// Attributes of one level, by tag as 8 hex digits.
pub type Attributes = BTreeMap<String, AttrValue>;

/// Key of a patient: PatientID plus IssuerOfPatientID (PatientID alone is not unique across issuers).
pub fn patient_key(patient_id: &str, issuer: &str) -> String {
    format!("{patient_id}\u{1}{issuer}")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatientRecord {
    pub key: String,
    pub attributes: Attributes,
    pub num_studies: u64,
    pub num_series: u64,
    pub num_instances: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyRecord {
    pub study_instance_uid: String,
    pub patient_key: String,
    pub attributes: Attributes,
    pub modalities: BTreeSet<String>,
    pub sop_classes: BTreeSet<String>,
    pub num_series: u64,
    pub num_instances: u64,
    pub bytes: u64,
    /// Milliseconds since the Unix epoch of the last instance received.
    pub last_update_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesRecord {
    pub series_instance_uid: String,
    pub study_instance_uid: String,
    pub attributes: Attributes,
    pub num_instances: u64,
    pub bytes: u64,
    pub last_update_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub series_instance_uid: String,
    pub study_instance_uid: String,
    pub patient_key: String,
    pub transfer_syntax_uid: String,
    /// Size of the blob file in bytes.
    pub size: u64,
    pub blob: BlobKey,
    /// SHA-256 (hex) of the blob as stored; `pacs verify` compares it with the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub received_ms: u64,
    /// Calling AE title for DIMSE, or the channel ("STOW-RS", "IMPORT").
    pub source: String,
    pub attributes: Attributes,
    /// Earlier versions of this instance, oldest first: a correction writes a new file and
    /// keeps the one it replaces (an administrator can still retrieve it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<PriorVersion>,
}

/// A stored file an instance was served from before a correction replaced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriorVersion {
    pub blob: BlobKey,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub transfer_syntax_uid: String,
    /// When the correction replaced it (ms since the epoch).
    pub replaced_ms: u64,
    /// What replaced it, e.g. "study.update", "patient.merge".
    pub reason: String,
}

impl InstanceRecord {
    /// Every file of the instance: the served one and the versions it replaced.
    pub fn all_blobs(&self) -> impl Iterator<Item = &BlobKey> {
        std::iter::once(&self.blob).chain(self.versions.iter().map(|v| &v.blob))
    }
}

impl AttrValue {
    pub fn first(&self) -> Option<&str> {
        self.values.first().map(String::as_str)
    }
}

/// First value of an attribute in a map, empty when absent.
pub fn first_value<'a>(attrs: &'a Attributes, tag: &str) -> &'a str {
    attrs.get(tag).and_then(AttrValue::first).unwrap_or("")
}
