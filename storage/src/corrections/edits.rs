//! The attributes a correction sets, read from a DICOM JSON object (PS3.18 F.2) and checked
//! before any file is touched: patient and study attributes only (never a UID: a study or
//! series changes place by a move, not by an edit), the dictionary's VR, values that fit the
//! VR, one value unless the attribute is multi-valued.

use dicom_core::dictionary::DataDictionary;
use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::{tags, StandardDataDictionary};
use dicom_object::InMemDicomObject;
use serde_json::Value;

use super::CorrectionError;
use crate::attrs::{tag_key, PATIENT_TAGS, STUDY_TAGS};
use crate::records::{AttrValue, Attributes};

/// Attributes that may hold several values (PS3.6 VM 1-n).
const MULTI_VALUED: [Tag; 3] = [
    tags::OTHER_PATIENT_NAMES,
    tags::NAME_OF_PHYSICIANS_READING_STUDY,
    tags::ADMITTING_DIAGNOSES_DESCRIPTION,
];

/// One attribute to set (an empty `values` sets it empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub tag: Tag,
    pub vr: VR,
    pub values: Vec<String>,
}

/// Checked attribute changes, in tag order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttributeEdits {
    pub edits: Vec<Edit>,
    /// Attributes taken out (what another record of the same level does not have).
    pub removals: Vec<Tag>,
}

impl AttributeEdits {
    /// Read and check a DICOM JSON object of patient and study attributes.
    pub fn from_dicom_json(body: &Value) -> Result<Self, CorrectionError> {
        let map = body.as_object().ok_or_else(|| {
            CorrectionError::Invalid("the body must be a DICOM JSON object".into())
        })?;
        if map.is_empty() {
            return Err(CorrectionError::Invalid("no attribute to change".into()));
        }
        let mut edits = Vec::with_capacity(map.len());
        for (key, attr) in map {
            edits.push(parse_attribute(key, attr)?);
        }
        edits.sort_by_key(|e| e.tag);
        Ok(AttributeEdits {
            edits,
            removals: Vec::new(),
        })
    }

    /// Make `tags` of a data set what an index record holds (a merge takes the surviving
    /// patient's attributes, a moved series its new study's): set those it has, remove the
    /// others.
    pub fn from_record(attrs: &Attributes, tags: &[Tag]) -> Self {
        let mut out = AttributeEdits::default();
        for &tag in tags {
            match attrs.get(&tag_key(tag)) {
                Some(v) => {
                    let vr =
                        v.vr.parse::<VR>()
                            .ok()
                            .or_else(|| StandardDataDictionary.by_tag(tag).map(|e| e.vr.relaxed()))
                            .unwrap_or(VR::LO);
                    out.edits.push(Edit {
                        tag,
                        vr,
                        values: v.values.clone(),
                    });
                }
                None => out.removals.push(tag),
            }
        }
        out
    }

    /// Edits of patient-level attributes only.
    pub fn patient_only(&self) -> bool {
        self.edits.iter().all(|e| PATIENT_TAGS.contains(&e.tag))
    }

    pub fn get(&self, tag: Tag) -> Option<&Edit> {
        self.edits.iter().find(|e| e.tag == tag)
    }

    /// Patient-level edits as index attributes (for the patient record other studies share).
    pub fn patient_attributes(&self) -> Attributes {
        self.edits
            .iter()
            .filter(|e| PATIENT_TAGS.contains(&e.tag))
            .map(|e| {
                (
                    tag_key(e.tag),
                    AttrValue {
                        vr: e.vr.to_string().into(),
                        values: e.values.clone(),
                    },
                )
            })
            .collect()
    }

    /// Set every edited attribute in a data set; text outside ASCII makes the data set UTF-8
    /// (it is decoded in memory, so re-encoding the other values is safe).
    pub fn apply(&self, obj: &mut InMemDicomObject) {
        let non_ascii = self
            .edits
            .iter()
            .any(|e| e.values.iter().any(|v| !v.is_ascii()));
        if non_ascii {
            obj.put(DataElement::new(
                tags::SPECIFIC_CHARACTER_SET,
                VR::CS,
                PrimitiveValue::from("ISO_IR 192"),
            ));
        }
        for e in &self.edits {
            obj.put(element(e.tag, e.vr, &e.values));
        }
        for tag in &self.removals {
            obj.remove_element(*tag);
        }
    }
}

/// A string-valued element (every patient and study attribute is text).
pub(crate) fn element(tag: Tag, vr: VR, values: &[String]) -> DataElement<InMemDicomObject> {
    let value = match values {
        [] => PrimitiveValue::Empty,
        [one] => PrimitiveValue::from(one.as_str()),
        many => PrimitiveValue::Strs(many.iter().cloned().collect()),
    };
    DataElement::new(tag, vr, value)
}

fn parse_attribute(key: &str, attr: &Value) -> Result<Edit, CorrectionError> {
    let invalid = |why: String| CorrectionError::Invalid(format!("{key}: {why}"));
    let tag = parse_tag(key).ok_or_else(|| invalid("not a tag (8 hex digits)".into()))?;
    if tag == tags::STUDY_INSTANCE_UID
        || tag == tags::SERIES_INSTANCE_UID
        || tag == tags::SOP_INSTANCE_UID
    {
        return Err(invalid(
            "a UID is not corrected by an edit (move the series to another study instead)".into(),
        ));
    }
    if tag == tags::SPECIFIC_CHARACTER_SET
        || !(PATIENT_TAGS.contains(&tag) || STUDY_TAGS.contains(&tag))
    {
        return Err(invalid(
            "not a patient or study attribute that can be corrected".into(),
        ));
    }
    let expected = StandardDataDictionary
        .by_tag(tag)
        .map(|e| e.vr.relaxed())
        .ok_or_else(|| invalid("not in the data dictionary".into()))?;
    let obj = attr
        .as_object()
        .ok_or_else(|| invalid("each attribute must be an object with \"vr\"".into()))?;
    let vr_text = obj
        .get("vr")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("missing \"vr\"".into()))?;
    let vr: VR = vr_text
        .parse()
        .map_err(|_| invalid(format!("unknown VR {vr_text:?}")))?;
    if vr != expected {
        return Err(invalid(format!(
            "VR {vr_text} given, the attribute's VR is {expected}"
        )));
    }
    let values = match obj.get("Value") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| json_value(vr, v).map_err(|p| invalid(p.0)))
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(invalid("\"Value\" must be an array".into())),
    };
    if values.len() > 1 && !MULTI_VALUED.contains(&tag) {
        return Err(invalid("takes one value".into()));
    }
    if tag == tags::PATIENT_ID && values.first().is_none_or(|v| v.trim().is_empty()) {
        return Err(invalid("PatientID cannot be empty".into()));
    }
    for v in &values {
        check_value(vr, v).map_err(|p| invalid(p.0))?;
    }
    Ok(Edit { tag, vr, values })
}

fn parse_tag(key: &str) -> Option<Tag> {
    if key.len() != 8 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let group = u16::from_str_radix(&key[..4], 16).ok()?;
    let element = u16::from_str_radix(&key[4..], 16).ok()?;
    Some(Tag(group, element))
}

/// Why a value does not fit its VR (becomes [`CorrectionError::Invalid`] naming the attribute).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ValueProblem(String);

/// One JSON value as DICOM text: PN as its Alphabetic (=Ideographic=Phonetic) groups,
/// numbers as written, null as an empty value.
fn json_value(vr: VR, v: &Value) -> Result<String, ValueProblem> {
    match (vr, v) {
        (_, Value::Null) => Ok(String::new()),
        (VR::PN, Value::Object(groups)) => {
            let group = |name: &str| groups.get(name).and_then(Value::as_str).unwrap_or("");
            let joined = [group("Alphabetic"), group("Ideographic"), group("Phonetic")].join("=");
            Ok(joined.trim_end_matches('=').to_string())
        }
        (VR::PN, _) => Err(ValueProblem(
            "a PN value must be an object with \"Alphabetic\"".into(),
        )),
        (VR::DS | VR::IS, Value::Number(n)) => Ok(n.to_string()),
        (_, Value::String(s)) => Ok(s.clone()),
        _ => Err(ValueProblem(format!("value {v} does not fit VR {vr}"))),
    }
}

/// The value fits its VR (PS3.5 6.2): length, characters, date and time forms.
fn check_value(vr: VR, v: &str) -> Result<(), ValueProblem> {
    let too_long = |max: usize| {
        if v.chars().count() > max {
            Err(ValueProblem(format!(
                "{v:?} is longer than {max} characters ({vr})"
            )))
        } else {
            Ok(())
        }
    };
    if v.contains('\\') && vr != VR::LT && vr != VR::ST && vr != VR::UT {
        return Err(ValueProblem(
            "a backslash separates values: give each value as its own array item".into(),
        ));
    }
    if v.chars()
        .any(|c| c.is_control() && !matches!(vr, VR::LT | VR::ST | VR::UT))
    {
        return Err(ValueProblem(format!("{v:?} contains control characters")));
    }
    match vr {
        VR::DA => check_date(v),
        VR::TM => check_time(v),
        VR::AS => {
            let ok = v.len() == 4
                && v[..3].bytes().all(|b| b.is_ascii_digit())
                && matches!(&v[3..], "D" | "W" | "M" | "Y");
            if ok || v.is_empty() {
                Ok(())
            } else {
                Err(ValueProblem(format!(
                    "{v:?} is not an age (nnnD, nnnW, nnnM or nnnY)"
                )))
            }
        }
        VR::CS => {
            too_long(16)?;
            if v.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ' || b == b'_')
            {
                Ok(())
            } else {
                Err(ValueProblem(format!(
                    "{v:?} is not a code string (A-Z, 0-9, space, _)"
                )))
            }
        }
        VR::DS => {
            too_long(16)?;
            if v.is_empty() || v.trim().parse::<f64>().is_ok_and(f64::is_finite) {
                Ok(())
            } else {
                Err(ValueProblem(format!("{v:?} is not a decimal number")))
            }
        }
        VR::IS => {
            too_long(12)?;
            if v.is_empty() || v.trim().parse::<i32>().is_ok() {
                Ok(())
            } else {
                Err(ValueProblem(format!("{v:?} is not an integer")))
            }
        }
        VR::SH => too_long(16),
        VR::LO => too_long(64),
        VR::PN => v.split('=').try_for_each(|group| {
            if group.chars().count() > 64 {
                Err(ValueProblem(format!(
                    "{v:?}: a name group is longer than 64 characters"
                )))
            } else {
                Ok(())
            }
        }),
        VR::ST => too_long(1024),
        VR::LT => too_long(10240),
        VR::UT => Ok(()),
        other => Err(ValueProblem(format!("VR {other} cannot be corrected here"))),
    }
}

fn check_date(v: &str) -> Result<(), ValueProblem> {
    if v.is_empty() {
        return Ok(());
    }
    let bad = || Err(ValueProblem(format!("{v:?} is not a date (YYYYMMDD)")));
    if v.len() != 8 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return bad();
    }
    let (y, m, d) = (
        v[..4].parse::<u32>().unwrap_or(0),
        v[4..6].parse::<u32>().unwrap_or(0),
        v[6..].parse::<u32>().unwrap_or(0),
    );
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return bad(),
    };
    if d == 0 || d > days {
        return bad();
    }
    Ok(())
}

fn check_time(v: &str) -> Result<(), ValueProblem> {
    if v.is_empty() {
        return Ok(());
    }
    let (hms, frac) = v.split_once('.').unwrap_or((v, ""));
    let fields_ok = hms.len() >= 2
        && hms.len() <= 6
        && hms.len() % 2 == 0
        && hms.bytes().all(|b| b.is_ascii_digit())
        && frac.len() <= 6
        && frac.bytes().all(|b| b.is_ascii_digit())
        && (frac.is_empty() || hms.len() == 6);
    let in_range = fields_ok
        && hms
            .as_bytes()
            .chunks(2)
            .zip([24u32, 60, 61])
            .all(|(pair, max)| {
                let n = u32::from(pair[0] - b'0') * 10 + u32::from(pair[1] - b'0');
                n < max
            });
    if in_range {
        Ok(())
    } else {
        Err(ValueProblem(format!("{v:?} is not a time (HHMMSS.FFFFFF)")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: Value) -> Result<AttributeEdits, CorrectionError> {
        AttributeEdits::from_dicom_json(&body)
    }

    #[test]
    fn reads_patient_and_study_attributes() {
        let edits = parse(json!({
            "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]},
            "00081030": {"vr": "LO", "Value": ["CT HEAD"]},
            "00100030": {"vr": "DA", "Value": ["19800229"]},
            "00101030": {"vr": "DS", "Value": [72.5]},
            "00100040": {"vr": "CS"},
        }))
        .expect("valid");
        let tags: Vec<Tag> = edits.edits.iter().map(|e| e.tag).collect();
        assert_eq!(
            tags,
            [
                tags::STUDY_DESCRIPTION,
                tags::PATIENT_NAME,
                tags::PATIENT_BIRTH_DATE,
                tags::PATIENT_SEX,
                tags::PATIENT_WEIGHT
            ]
        );
        assert_eq!(edits.edits[1].values, ["Doe^Jane"]);
        assert_eq!(edits.edits[4].values, ["72.5"]);
        assert!(edits.edits[3].values.is_empty());
        assert!(!edits.patient_only());
    }

    #[test]
    fn refuses_what_a_correction_cannot_be() {
        let cases = [
            (json!([]), "DICOM JSON object"),
            (json!({}), "no attribute"),
            (
                json!({"0020000D": {"vr": "UI", "Value": ["1.2.3"]}}),
                "UID is not corrected",
            ),
            (
                json!({"00080060": {"vr": "CS", "Value": ["CT"]}}),
                "not a patient or study",
            ),
            (
                json!({"00100010": {"vr": "LO", "Value": ["x"]}}),
                "VR LO given",
            ),
            (
                json!({"00100010": {"vr": "XX", "Value": ["x"]}}),
                "unknown VR",
            ),
            (json!({"0010001": {"vr": "PN"}}), "not a tag"),
            (
                json!({"00100030": {"vr": "DA", "Value": ["20230230"]}}),
                "not a date",
            ),
            (
                json!({"00080030": {"vr": "TM", "Value": ["2561"]}}),
                "not a time",
            ),
            (
                json!({"00100040": {"vr": "CS", "Value": ["f"]}}),
                "code string",
            ),
            (
                json!({"00100020": {"vr": "LO", "Value": [""]}}),
                "cannot be empty",
            ),
            (
                json!({"00100020": {"vr": "LO", "Value": ["A", "B"]}}),
                "one value",
            ),
            (
                json!({"00100020": {"vr": "LO", "Value": ["A\\B"]}}),
                "backslash",
            ),
            (
                json!({"00080050": {"vr": "SH", "Value": ["12345678901234567"]}}),
                "longer than 16",
            ),
            (
                json!({"00100010": {"vr": "PN", "Value": ["Doe"]}}),
                "Alphabetic",
            ),
            (
                json!({"00101010": {"vr": "AS", "Value": ["45"]}}),
                "not an age",
            ),
        ];
        for (body, expected) in cases {
            let err = parse(body.clone())
                .expect_err(&body.to_string())
                .to_string();
            assert!(err.contains(expected), "{body}: {err}");
        }
    }

    #[test]
    fn applies_edits_and_switches_to_utf8_for_other_scripts() {
        let mut obj = InMemDicomObject::new_empty();
        obj.put(element(
            tags::PATIENT_NAME,
            VR::PN,
            &["Old^Name".to_string()],
        ));
        let edits =
            parse(json!({"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Müller^Jürgen"}]}}))
                .expect("valid");
        edits.apply(&mut obj);
        let name = obj
            .element(tags::PATIENT_NAME)
            .ok()
            .and_then(|e| e.to_str().ok())
            .map(|s| s.to_string());
        assert_eq!(name.as_deref(), Some("Müller^Jürgen"));
        let cs = obj
            .element(tags::SPECIFIC_CHARACTER_SET)
            .ok()
            .and_then(|e| e.to_str().ok())
            .map(|s| s.to_string());
        assert_eq!(cs.as_deref(), Some("ISO_IR 192"));
    }
}
