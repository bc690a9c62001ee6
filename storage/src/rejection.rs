//! IHE IOCM rejection notes: a Key Object Selection whose title is one of the rejection codes
//! of CID 7011 hides the instances it references from every query and retrieve. The hidden
//! instances keep their files and their index record (in a separate table) until an
//! administrator restores them or they are purged after the configured delay.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use serde::{Deserialize, Serialize};

use crate::error::IngestError;
use crate::records::{Attributes, InstanceRecord};

/// Key Object Selection Document Storage.
pub const KOS_SOP_CLASS: &str = "1.2.840.10008.5.1.4.1.1.88.59";

/// Most instances one note may reject (a whole large study fits).
pub const MAX_REFERENCES: usize = 100_000;

/// Why instances were rejected (DCM codes of CID 7011 that IOCM gives a meaning to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RejectionReason {
    /// 113001
    Quality,
    /// 113037
    PatientSafety,
    /// 113038
    IncorrectWorklistEntry,
    /// 113039
    RetentionExpired,
}

impl RejectionReason {
    pub fn from_code(code_value: &str) -> Option<Self> {
        Some(match code_value {
            "113001" => RejectionReason::Quality,
            "113037" => RejectionReason::PatientSafety,
            "113038" => RejectionReason::IncorrectWorklistEntry,
            "113039" => RejectionReason::RetentionExpired,
            _ => return None,
        })
    }

    pub fn code_value(self) -> &'static str {
        match self {
            RejectionReason::Quality => "113001",
            RejectionReason::PatientSafety => "113037",
            RejectionReason::IncorrectWorklistEntry => "113038",
            RejectionReason::RetentionExpired => "113039",
        }
    }

    pub fn meaning(self) -> &'static str {
        match self {
            RejectionReason::Quality => "Rejected for Quality Reasons",
            RejectionReason::PatientSafety => "Rejected for Patient Safety Reasons",
            RejectionReason::IncorrectWorklistEntry => "Incorrect Modality Worklist Entry",
            RejectionReason::RetentionExpired => "Data Retention Policy Expired",
        }
    }
}

impl std::fmt::Display for RejectionReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code_value(), self.meaning())
    }
}

/// One instance a note names, with the study and series the note puts it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRef {
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
}

/// A received rejection note: its reason and what it rejects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectionNote {
    pub note_sop_instance_uid: String,
    pub reason: RejectionReason,
    pub references: Vec<RejectedRef>,
}

/// A hidden instance: its record and the attributes of the levels above it as they were
/// when it was rejected (a restore indexes it again from them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectedInstance {
    pub record: InstanceRecord,
    pub patient: Attributes,
    pub study: Attributes,
    pub series: Attributes,
    pub reason: RejectionReason,
    /// The Key Object Selection that rejected it.
    pub note_sop_instance_uid: String,
    /// Who sent the note (calling AE, "STOW-RS").
    pub rejected_by: String,
    pub rejected_ms: u64,
}

/// The rejection note a data set is, if it is one: a KOS whose Concept Name is a rejection
/// code of scheme DCM. A KOS with another title is an ordinary key object selection.
pub fn rejection_note(obj: &InMemDicomObject) -> Result<Option<RejectionNote>, IngestError> {
    if text(obj, tags::SOP_CLASS_UID).as_deref() != Some(KOS_SOP_CLASS) {
        return Ok(None);
    }
    let Some(title) = items(obj, tags::CONCEPT_NAME_CODE_SEQUENCE).first() else {
        return Ok(None);
    };
    if text(title, tags::CODING_SCHEME_DESIGNATOR).as_deref() != Some("DCM") {
        return Ok(None);
    }
    let Some(reason) = text(title, tags::CODE_VALUE)
        .as_deref()
        .and_then(RejectionReason::from_code)
    else {
        return Ok(None);
    };
    let note_sop_instance_uid = text(obj, tags::SOP_INSTANCE_UID).unwrap_or_default();
    let mut references = Vec::new();
    for study in items(obj, tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE) {
        let study_uid = required(study, tags::STUDY_INSTANCE_UID, "StudyInstanceUID")?;
        for series in items(study, tags::REFERENCED_SERIES_SEQUENCE) {
            let series_uid = required(series, tags::SERIES_INSTANCE_UID, "SeriesInstanceUID")?;
            for sop in items(series, tags::REFERENCED_SOP_SEQUENCE) {
                if references.len() == MAX_REFERENCES {
                    return Err(IngestError::RejectionRefused(format!(
                        "the rejection note references more than {MAX_REFERENCES} instances"
                    )));
                }
                references.push(RejectedRef {
                    study_instance_uid: study_uid.clone(),
                    series_instance_uid: series_uid.clone(),
                    sop_class_uid: text(sop, tags::REFERENCED_SOP_CLASS_UID).unwrap_or_default(),
                    sop_instance_uid: required(
                        sop,
                        tags::REFERENCED_SOP_INSTANCE_UID,
                        "ReferencedSOPInstanceUID",
                    )?,
                });
            }
        }
    }
    if references.is_empty() {
        return Err(IngestError::RejectionRefused(
            "the rejection note references no instance (Current Requested Procedure Evidence \
             Sequence is empty)"
                .into(),
        ));
    }
    Ok(Some(RejectionNote {
        note_sop_instance_uid,
        reason,
        references,
    }))
}

fn items(obj: &InMemDicomObject, tag: Tag) -> &[InMemDicomObject] {
    obj.get(tag).and_then(|e| e.items()).unwrap_or(&[])
}

fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let s = obj.get(tag)?.value().to_str().ok()?;
    let s = s.trim_end_matches(['\0', ' ']).trim_start();
    (!s.is_empty()).then(|| s.to_string())
}

fn required(obj: &InMemDicomObject, tag: Tag, name: &str) -> Result<String, IngestError> {
    text(obj, tag).ok_or_else(|| {
        IngestError::RejectionRefused(format!("an item of the rejection note lacks {name}"))
    })
}
