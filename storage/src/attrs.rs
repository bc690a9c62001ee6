//! Which attributes the index keeps at each level, and their extraction from a data set.
//!
//! The lists cover what PS3.18 QIDO-RS (Table 10.6.3-3 and neighbours) and PS3.4 C-FIND
//! (C.6.1.1 / C.6.2.1) return at each level, plus what viewers commonly ask for.

use dicom_core::value::Value;
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use crate::error::IngestError;
use crate::records::{AttrValue, Attributes};

pub const PATIENT_TAGS: &[Tag] = &[
    tags::PATIENT_NAME,
    tags::PATIENT_ID,
    tags::ISSUER_OF_PATIENT_ID,
    tags::PATIENT_BIRTH_DATE,
    tags::PATIENT_BIRTH_TIME,
    tags::PATIENT_SEX,
    tags::OTHER_PATIENT_NAMES,
    tags::PATIENT_COMMENTS,
];

pub const STUDY_TAGS: &[Tag] = &[
    tags::SPECIFIC_CHARACTER_SET,
    tags::STUDY_DATE,
    tags::STUDY_TIME,
    tags::ACCESSION_NUMBER,
    tags::REFERRING_PHYSICIAN_NAME,
    tags::TIMEZONE_OFFSET_FROM_UTC,
    tags::STUDY_DESCRIPTION,
    tags::NAME_OF_PHYSICIANS_READING_STUDY,
    tags::ADMITTING_DIAGNOSES_DESCRIPTION,
    tags::STUDY_INSTANCE_UID,
    tags::STUDY_ID,
    tags::PATIENT_AGE,
    tags::PATIENT_SIZE,
    tags::PATIENT_WEIGHT,
    tags::OCCUPATION,
    tags::ADDITIONAL_PATIENT_HISTORY,
    tags::INSTITUTION_NAME,
];

pub const SERIES_TAGS: &[Tag] = &[
    tags::MODALITY,
    tags::SERIES_DATE,
    tags::SERIES_TIME,
    tags::SERIES_DESCRIPTION,
    tags::SERIES_NUMBER,
    tags::SERIES_INSTANCE_UID,
    tags::BODY_PART_EXAMINED,
    tags::LATERALITY,
    tags::PROTOCOL_NAME,
    tags::OPERATORS_NAME,
    tags::PERFORMING_PHYSICIAN_NAME,
    tags::MANUFACTURER,
    tags::MANUFACTURER_MODEL_NAME,
    tags::STATION_NAME,
    tags::INSTITUTIONAL_DEPARTMENT_NAME,
    tags::FRAME_OF_REFERENCE_UID,
    tags::PERFORMED_PROCEDURE_STEP_START_DATE,
    tags::PERFORMED_PROCEDURE_STEP_START_TIME,
    tags::PERFORMED_PROCEDURE_STEP_ID,
    tags::PERFORMED_PROCEDURE_STEP_DESCRIPTION,
];

pub const INSTANCE_TAGS: &[Tag] = &[
    tags::SOP_CLASS_UID,
    tags::SOP_INSTANCE_UID,
    tags::INSTANCE_NUMBER,
    tags::IMAGE_TYPE,
    tags::INSTANCE_CREATION_DATE,
    tags::INSTANCE_CREATION_TIME,
    tags::CONTENT_DATE,
    tags::CONTENT_TIME,
    tags::ACQUISITION_DATE,
    tags::ACQUISITION_TIME,
    tags::ACQUISITION_NUMBER,
    tags::ROWS,
    tags::COLUMNS,
    tags::BITS_ALLOCATED,
    tags::BITS_STORED,
    tags::PIXEL_REPRESENTATION,
    tags::SAMPLES_PER_PIXEL,
    tags::PHOTOMETRIC_INTERPRETATION,
    tags::NUMBER_OF_FRAMES,
    tags::WINDOW_CENTER,
    tags::WINDOW_WIDTH,
    tags::RESCALE_INTERCEPT,
    tags::RESCALE_SLOPE,
    tags::IMAGE_POSITION_PATIENT,
    tags::IMAGE_ORIENTATION_PATIENT,
    tags::SLICE_LOCATION,
    tags::SLICE_THICKNESS,
    tags::PIXEL_SPACING,
    tags::CONTENT_LABEL,
    tags::CONTENT_DESCRIPTION,
    tags::PRESENTATION_CREATION_DATE,
    tags::COMPLETION_FLAG,
    tags::VERIFICATION_FLAG,
];

/// Tag as the 8 upper-case hex digits used for attribute keys (and DICOM JSON).
pub fn tag_key(tag: Tag) -> String {
    format!("{:04X}{:04X}", tag.group(), tag.element())
}

/// What the index needs from one instance's data set.
#[derive(Debug, Clone)]
pub struct ParsedInstance {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub patient_id: String,
    pub issuer_of_patient_id: String,
    pub patient: Attributes,
    pub study: Attributes,
    pub series: Attributes,
    pub instance: Attributes,
}

fn text_of(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let elem = obj.get(tag)?;
    let s = elem.value().to_str().ok()?;
    let s = s.trim_end_matches(['\0', ' ']).trim_start();
    (!s.is_empty()).then(|| s.to_string())
}

fn required(obj: &InMemDicomObject, tag: Tag, name: &'static str) -> Result<String, IngestError> {
    text_of(obj, tag).ok_or(IngestError::MissingAttribute(name))
}

/// Whether a UID keeps to PS3.5 9.1's character set and length (components with a leading
/// zero are tolerated: devices write them, and they harm nothing here).
pub fn is_valid_uid(uid: &str) -> bool {
    !uid.is_empty() && uid.len() <= 64 && uid.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// A required UID, checked.
fn required_uid(
    obj: &InMemDicomObject,
    tag: Tag,
    name: &'static str,
) -> Result<String, IngestError> {
    let uid = required(obj, tag, name)?;
    if is_valid_uid(&uid) {
        Ok(uid)
    } else {
        Err(IngestError::InvalidUid {
            attribute: name,
            value: uid,
        })
    }
}

/// Copy the textual and numeric attributes of `tag_list` present in `obj`.
pub fn collect(obj: &InMemDicomObject, tag_list: &[Tag]) -> Attributes {
    let mut out = Attributes::new();
    for &tag in tag_list {
        let Some(elem) = obj.get(tag) else {
            continue;
        };
        let Value::Primitive(value) = elem.value() else {
            continue;
        };
        let vr = elem.vr();
        if matches!(
            vr.to_string(),
            "OB" | "OW" | "OF" | "OD" | "OL" | "OV" | "UN" | "SQ"
        ) {
            continue;
        }
        let values: Vec<String> = value
            .to_multi_str()
            .iter()
            .map(|v| v.trim_end_matches(['\0', ' ']).trim_start().to_string())
            .collect();
        out.insert(
            tag_key(tag),
            AttrValue {
                vr: vr.to_string().to_string(),
                values,
            },
        );
    }
    out
}

impl ParsedInstance {
    /// Extract identifiers and per-level attributes; fails when an identifying UID is missing.
    pub fn from_object(obj: &InMemDicomObject) -> Result<Self, IngestError> {
        Ok(ParsedInstance {
            sop_class_uid: required_uid(obj, tags::SOP_CLASS_UID, "SOPClassUID (0008,0016)")?,
            sop_instance_uid: required_uid(
                obj,
                tags::SOP_INSTANCE_UID,
                "SOPInstanceUID (0008,0018)",
            )?,
            study_instance_uid: required_uid(
                obj,
                tags::STUDY_INSTANCE_UID,
                "StudyInstanceUID (0020,000D)",
            )?,
            series_instance_uid: required_uid(
                obj,
                tags::SERIES_INSTANCE_UID,
                "SeriesInstanceUID (0020,000E)",
            )?,
            patient_id: text_of(obj, tags::PATIENT_ID).unwrap_or_default(),
            issuer_of_patient_id: text_of(obj, tags::ISSUER_OF_PATIENT_ID).unwrap_or_default(),
            patient: collect(obj, PATIENT_TAGS),
            study: collect(obj, STUDY_TAGS),
            series: collect(obj, SERIES_TAGS),
            instance: collect(obj, INSTANCE_TAGS),
        })
    }
}
