//! The DICOM JSON model (PS3.18 F.2): index attributes (QIDO-RS) and whole data sets
//! (WADO-RS metadata) as `{"GGGGEEEE": {"vr": .., "Value": [..]}}`.
//!
//! Hand-written rather than dicom-json's serializer because metadata needs BulkDataURIs
//! (large binary values become links to the bulk data resource) and QIDO-RS answers from index
//! records, not from data sets.

use base64::Engine as _;
use dicom_core::header::{HasLength, Header};
use dicom_core::value::{PrimitiveValue, Value};
use dicom_core::VR;
use dicom_object::InMemDicomObject;
use pacs_storage::records::AttrValue;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{json, Map, Value as Json};

/// Binary values larger than this are sent as BulkDataURI rather than InlineBinary.
pub const BULK_THRESHOLD: usize = 1024;

/// Person name value as its PN components object (F.2.2).
fn person_name(v: &str) -> Json {
    let mut obj = Map::new();
    for (group, key) in v.split('=').zip(["Alphabetic", "Ideographic", "Phonetic"]) {
        if !group.is_empty() {
            obj.insert(key.into(), Json::String(group.into()));
        }
    }
    Json::Object(obj)
}

fn is_integer_vr(vr: &str) -> bool {
    matches!(vr, "IS" | "SL" | "SS" | "UL" | "US" | "SV" | "UV")
}

fn is_decimal_vr(vr: &str) -> bool {
    matches!(vr, "DS" | "FL" | "FD")
}

/// One textual value in its JSON form: numbers for numeric VRs, PN objects, strings otherwise.
fn text_value(vr: &str, v: &str) -> Json {
    let t = v.trim_matches(|c: char| c == ' ' || c == '\0');
    if t.is_empty() {
        return Json::Null;
    }
    if vr == "PN" {
        return person_name(t);
    }
    if is_integer_vr(vr) {
        if let Ok(i) = t.parse::<i64>() {
            return json!(i);
        }
        if let Ok(u) = t.parse::<u64>() {
            return json!(u);
        }
    }
    if is_decimal_vr(vr) {
        if let Some(n) = t.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
            return Json::Number(n);
        }
    }
    Json::String(t.to_string())
}

/// An index attribute as a DICOM JSON attribute object.
pub fn attribute(a: &AttrValue) -> Json {
    serde_json::to_value(AttrJson(a)).unwrap_or(Json::Null)
}

/// Serializes an index attribute straight to DICOM JSON (no intermediate `Value`: QIDO-RS
/// answers of a thousand studies are written this way).
pub struct AttrJson<'a>(pub &'a AttrValue);

struct ValuesJson<'a>(&'a AttrValue);

fn is_blank(v: &str) -> bool {
    v.trim_matches(|c: char| c == ' ' || c == '\0').is_empty()
}

impl Serialize for AttrJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let has_value = self.0.values.iter().any(|v| !is_blank(v));
        let mut map = s.serialize_map(Some(if has_value { 2 } else { 1 }))?;
        map.serialize_entry("vr", &self.0.vr)?;
        if has_value {
            map.serialize_entry("Value", &ValuesJson(self.0))?;
        }
        map.end()
    }
}

impl Serialize for ValuesJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let vr = self.0.vr.as_str();
        let mut seq = s.serialize_seq(Some(self.0.values.len()))?;
        for v in &self.0.values {
            let t = v.trim_matches(|c: char| c == ' ' || c == '\0');
            if t.is_empty() {
                seq.serialize_element(&())?;
            } else if vr == "PN" {
                seq.serialize_element(&PersonNameJson(t))?;
            } else if let Some(i) = is_integer_vr(vr).then(|| t.parse::<i64>().ok()).flatten() {
                seq.serialize_element(&i)?;
            } else if let Some(f) = is_decimal_vr(vr)
                .then(|| t.parse::<f64>().ok().filter(|f| f.is_finite()))
                .flatten()
            {
                seq.serialize_element(&f)?;
            } else {
                seq.serialize_element(t)?;
            }
        }
        seq.end()
    }
}

struct PersonNameJson<'a>(&'a str);

impl Serialize for PersonNameJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let groups: Vec<(&str, &str)> = self
            .0
            .split('=')
            .zip(["Alphabetic", "Ideographic", "Phonetic"])
            .filter(|(g, _)| !g.is_empty())
            .map(|(g, k)| (k, g))
            .collect();
        let mut map = s.serialize_map(Some(groups.len()))?;
        for (k, g) in groups {
            map.serialize_entry(k, g)?;
        }
        map.end()
    }
}

/// Where the bulk data of a data set's elements can be fetched: `{base}/bulk/{tag path}`.
pub struct BulkLinks<'a> {
    pub base: &'a str,
}

/// A whole data set as DICOM JSON. Binary values over [`BULK_THRESHOLD`] and encapsulated pixel
/// data become BulkDataURIs under `links`.
pub fn dataset(obj: &InMemDicomObject, links: &BulkLinks<'_>) -> Json {
    dataset_at(obj, links, "")
}

fn dataset_at(obj: &InMemDicomObject, links: &BulkLinks<'_>, path: &str) -> Json {
    let mut out = Map::new();
    for elem in obj.iter() {
        let tag = elem.tag();
        if tag.group() == 0x0002 {
            continue;
        }
        let key = format!("{:04X}{:04X}", tag.group(), tag.element());
        let vr = elem.vr();
        let elem_path = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}/{key}")
        };
        let mut attr = Map::new();
        attr.insert("vr".into(), Json::String(vr.to_string().into()));
        match elem.value() {
            Value::Sequence(seq) => {
                let items: Vec<Json> = seq
                    .items()
                    .iter()
                    .enumerate()
                    .map(|(i, item)| dataset_at(item, links, &format!("{elem_path}/{i}")))
                    .collect();
                if !items.is_empty() {
                    attr.insert("Value".into(), Json::Array(items));
                }
            }
            Value::PixelSequence(_) => {
                attr.insert(
                    "BulkDataURI".into(),
                    Json::String(format!("{}/bulk/{elem_path}", links.base)),
                );
            }
            Value::Primitive(p) => primitive(&mut attr, vr, p, links, &elem_path),
        }
        out.insert(key, Json::Object(attr));
    }
    Json::Object(out)
}

fn is_binary_vr(vr: VR) -> bool {
    matches!(
        vr,
        VR::OB | VR::OD | VR::OF | VR::OL | VR::OV | VR::OW | VR::UN
    )
}

fn primitive(
    attr: &mut Map<String, Json>,
    vr: VR,
    p: &PrimitiveValue,
    links: &BulkLinks<'_>,
    path: &str,
) {
    if p.is_empty() {
        return;
    }
    if is_binary_vr(vr) {
        let bytes = p.to_bytes();
        if bytes.len() > BULK_THRESHOLD {
            attr.insert(
                "BulkDataURI".into(),
                Json::String(format!("{}/bulk/{path}", links.base)),
            );
        } else {
            attr.insert(
                "InlineBinary".into(),
                Json::String(base64::engine::general_purpose::STANDARD.encode(&bytes)),
            );
        }
        return;
    }
    let values: Vec<Json> = match vr {
        VR::AT => match p {
            PrimitiveValue::Tags(tags) => tags
                .iter()
                .map(|t| Json::String(format!("{:04X}{:04X}", t.group(), t.element())))
                .collect(),
            _ => Vec::new(),
        },
        VR::FL | VR::FD | VR::SL | VR::SS | VR::UL | VR::US | VR::SV | VR::UV => numbers(p, vr),
        // Single-valued text VRs: a backslash is part of the text.
        VR::LT | VR::ST | VR::UT | VR::UR => vec![text_value(vr.to_string(), &p.to_str())],
        _ => p
            .to_multi_str()
            .iter()
            .map(|v| text_value(vr.to_string(), v))
            .collect(),
    };
    if values.iter().any(|v| !v.is_null()) {
        attr.insert("Value".into(), Json::Array(values));
    }
}

/// Binary numbers as JSON numbers (NaN and infinities, which JSON cannot carry, become null).
fn numbers(p: &PrimitiveValue, vr: VR) -> Vec<Json> {
    let float = |f: f64| serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number);
    match p {
        PrimitiveValue::F32(v) => v.iter().map(|f| float(f64::from(*f))).collect(),
        PrimitiveValue::F64(v) => v.iter().map(|f| float(*f)).collect(),
        PrimitiveValue::I16(v) => v.iter().map(|n| json!(n)).collect(),
        PrimitiveValue::U16(v) => v.iter().map(|n| json!(n)).collect(),
        PrimitiveValue::I32(v) => v.iter().map(|n| json!(n)).collect(),
        PrimitiveValue::U32(v) => v.iter().map(|n| json!(n)).collect(),
        PrimitiveValue::I64(v) => v.iter().map(|n| json!(n)).collect(),
        PrimitiveValue::U64(v) => v.iter().map(|n| json!(n)).collect(),
        other => other
            .to_multi_str()
            .iter()
            .map(|v| text_value(vr.to_string(), v))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, Tag};
    use dicom_dictionary_std::tags;

    #[test]
    fn index_attributes_use_numbers_and_person_name_components() {
        let pn = AttrValue {
            vr: "PN".into(),
            values: vec!["Yamada^Tarou=山田^太郎".into()],
        };
        assert_eq!(
            attribute(&pn),
            json!({"vr": "PN", "Value": [{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎"}]})
        );
        let is = AttrValue {
            vr: "IS".into(),
            values: vec![" 12".into()],
        };
        assert_eq!(attribute(&is), json!({"vr": "IS", "Value": [12]}));
        let ds = AttrValue {
            vr: "DS".into(),
            values: vec!["-1024".into(), "0.5".into()],
        };
        assert_eq!(attribute(&ds), json!({"vr": "DS", "Value": [-1024.0, 0.5]}));
        let empty = AttrValue {
            vr: "LO".into(),
            values: vec![],
        };
        assert_eq!(attribute(&empty), json!({"vr": "LO"}));
    }

    #[test]
    fn large_binary_values_become_bulk_data_uris() {
        let mut obj = InMemDicomObject::new_empty();
        obj.put(DataElement::new(
            tags::PATIENT_NAME,
            VR::PN,
            PrimitiveValue::from("DOE^JOHN"),
        ));
        obj.put(DataElement::new(
            tags::ROWS,
            VR::US,
            PrimitiveValue::from(512_u16),
        ));
        obj.put(DataElement::new(
            Tag(0x0009, 0x1010),
            VR::OB,
            PrimitiveValue::from(vec![1_u8, 2, 3]),
        ));
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::from(vec![0_u8; 4096]),
        ));
        let out = dataset(
            &obj,
            &BulkLinks {
                base: "http://h:1/i",
            },
        );
        assert_eq!(out["00100010"]["Value"][0]["Alphabetic"], "DOE^JOHN");
        assert_eq!(out["00280010"], json!({"vr": "US", "Value": [512]}));
        assert_eq!(out["00091010"], json!({"vr": "OB", "InlineBinary": "AQID"}));
        assert_eq!(
            out["7FE00010"],
            json!({"vr": "OW", "BulkDataURI": "http://h:1/i/bulk/7FE00010"})
        );
    }
}
