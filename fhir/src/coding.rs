//! DICOM coded entries (Code Value, Coding Scheme Designator, Code Meaning) as FHIR Codings.
//! The one table from DICOM coding scheme designators (PS3.16 Table 8-1) to FHIR system URIs,
//! used by every resource we build (ImagingStudy here, the workers' resources in `pacs`).

use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use serde_json::{json, Map, Value};

/// DICOM's own terminology (modalities, PS3.16 Annex D).
pub const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";

/// Designator (as DICOM writes it), its Coding Scheme UID (empty: not looked up by UID), and
/// the FHIR system URI.
/// `CPT4` is not a PS3.16 designator but is what many modalities and RIS put in procedure
/// codes, so it is accepted beside `C4`.
const SYSTEMS: &[(&str, &str, &str)] = &[
    ("SCT", "2.16.840.1.113883.6.96", "http://snomed.info/sct"),
    ("LN", "2.16.840.1.113883.6.1", "http://loinc.org"),
    (
        "C4",
        "2.16.840.1.113883.6.12",
        "http://www.ama-assn.org/go/cpt",
    ),
    (
        "CPT4",
        "2.16.840.1.113883.6.12",
        "http://www.ama-assn.org/go/cpt",
    ),
    ("C5", "", "http://www.ama-assn.org/go/cpt"),
    ("DCM", "1.2.840.10008.2.16.4", DCM),
    ("UCUM", "2.16.840.1.113883.6.8", "http://unitsofmeasure.org"),
    (
        "RXNORM",
        "2.16.840.1.113883.6.88",
        "http://www.nlm.nih.gov/research/umls/rxnorm",
    ),
    ("RADLEX", "2.16.840.1.113883.6.256", "http://radlex.org"),
    (
        "NCIt",
        "2.16.840.1.113883.3.26.1.1",
        "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl",
    ),
    (
        "UMLS",
        "2.16.840.1.113883.6.86",
        "http://www.nlm.nih.gov/research/umls",
    ),
    (
        "I10",
        "2.16.840.1.113883.6.3",
        "http://hl7.org/fhir/sid/icd-10",
    ),
    (
        "I9C",
        "2.16.840.1.113883.6.2",
        "http://hl7.org/fhir/sid/icd-9-cm",
    ),
    (
        "I10P",
        "2.16.840.1.113883.6.4",
        "http://www.cms.gov/Medicare/Coding/ICD10",
    ),
];

/// Designators whose code values are not those of any FHIR system: SRT carries SNOMED-RT
/// style values (`T-D3000`), which are not SNOMED CT identifiers although DICOM gives it
/// SNOMED's scheme UID.
const NO_FHIR_SYSTEM: &[&str] = &["SRT", "SNM3", "99SDM"];

/// The FHIR system of a DICOM coding scheme: from the table by designator, else by Coding
/// Scheme UID (a private scheme with a UID becomes `urn:oid:`), else none.
pub fn system_uri(designator: &str, scheme_uid: Option<&str>) -> Option<String> {
    let designator = designator.trim();
    if NO_FHIR_SYSTEM
        .iter()
        .any(|d| d.eq_ignore_ascii_case(designator))
    {
        return None;
    }
    if let Some((_, _, uri)) = SYSTEMS
        .iter()
        .find(|(d, _, _)| d.eq_ignore_ascii_case(designator))
    {
        return Some((*uri).to_string());
    }
    let uid = scheme_uid.map(str::trim).filter(|u| is_uid(u))?;
    Some(
        SYSTEMS
            .iter()
            .find(|(_, u, _)| !u.is_empty() && *u == uid)
            .map(|(_, _, uri)| (*uri).to_string())
            .unwrap_or_else(|| format!("urn:oid:{uid}")),
    )
}

fn is_uid(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= 64
        && u.split('.')
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
}

/// One coded entry. A code without a known system keeps its code and display (FHIR allows a
/// Coding without `system`; it then means something only to the sender, which is the truth).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    pub value: String,
    pub designator: String,
    pub meaning: String,
    pub scheme_uid: Option<String>,
}

impl Code {
    pub fn new(value: &str, designator: &str, meaning: &str) -> Code {
        Code {
            value: value.into(),
            designator: designator.into(),
            meaning: meaning.into(),
            scheme_uid: None,
        }
    }

    /// The FHIR Coding.
    pub fn coding(&self) -> Value {
        let mut c = Map::new();
        if let Some(system) = system_uri(&self.designator, self.scheme_uid.as_deref()) {
            c.insert("system".into(), json!(system));
        }
        c.insert("code".into(), json!(self.value));
        if !self.meaning.is_empty() {
            c.insert("display".into(), json!(self.meaning));
        }
        Value::Object(c)
    }

    /// A CodeableConcept of this code alone, its meaning as the text.
    pub fn concept(&self) -> Value {
        let mut c = json!({"coding": [self.coding()]});
        if !self.meaning.is_empty() {
            c["text"] = json!(self.meaning);
        }
        c
    }
}

fn item_text(item: &InMemDicomObject, tag: dicom_core::Tag) -> Option<String> {
    item.get(tag)
        .and_then(|e| e.value().to_str().ok())
        .map(|v| v.trim_end_matches(['\0', ' ']).trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The coded entries of a code sequence attribute (items without a Code Value are left out;
/// Long/URN Code Value are read when the short one is absent).
pub fn codes(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Vec<Code> {
    let Some(items) = obj.get(tag).and_then(|e| e.value().items()) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let value = item_text(item, tags::CODE_VALUE)
                .or_else(|| item_text(item, tags::LONG_CODE_VALUE))
                .or_else(|| item_text(item, tags::URN_CODE_VALUE))?;
            Some(Code {
                value,
                designator: item_text(item, tags::CODING_SCHEME_DESIGNATOR).unwrap_or_default(),
                meaning: item_text(item, tags::CODE_MEANING).unwrap_or_default(),
                scheme_uid: item_text(item, tags::CODING_SCHEME_UID),
            })
        })
        .collect()
}

/// One CodeableConcept per item of a code sequence.
pub fn concepts(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Vec<Value> {
    codes(obj, tag).iter().map(Code::concept).collect()
}

/// The DICOM coding scheme designator of a FHIR system URI (the reverse of [`system_uri`]),
/// for codes that arrive in FHIR resources (orders). `urn:oid:` systems keep their OID as a
/// designator; anything else unknown keeps the URI itself, which is what it means.
pub fn designator(system: &str) -> String {
    let system = system.trim();
    if system.eq_ignore_ascii_case("http://www.radlex.org") {
        return "RADLEX".into();
    }
    if let Some((d, _, _)) = SYSTEMS.iter().find(|(_, _, uri)| *uri == system) {
        return (*d).to_string();
    }
    system
        .strip_prefix("urn:oid:")
        .unwrap_or(system)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn designators_become_fhir_system_uris() {
        let sys = |d: &str| system_uri(d, None);
        assert_eq!(sys("SCT").as_deref(), Some("http://snomed.info/sct"));
        assert_eq!(sys("LN").as_deref(), Some("http://loinc.org"));
        assert_eq!(
            sys("CPT4").as_deref(),
            Some("http://www.ama-assn.org/go/cpt")
        );
        assert_eq!(sys("C4").as_deref(), Some("http://www.ama-assn.org/go/cpt"));
        assert_eq!(
            sys("DCM").as_deref(),
            Some("http://dicom.nema.org/resources/ontology/DCM")
        );
        // Unknown designators: by scheme UID, else nothing.
        assert_eq!(sys("99LOCAL"), None);
        assert_eq!(
            system_uri("99LOCAL", Some("1.2.3.4")).as_deref(),
            Some("urn:oid:1.2.3.4")
        );
        assert_eq!(
            system_uri("XYZ", Some("2.16.840.1.113883.6.1")).as_deref(),
            Some("http://loinc.org")
        );
        assert_eq!(system_uri("99LOCAL", Some("not a uid")), None);
        // SNOMED-RT style values are not SNOMED CT concepts, whatever the UID says.
        assert_eq!(system_uri("SRT", Some("2.16.840.1.113883.6.96")), None);
    }

    #[test]
    fn codings_leave_out_what_is_unknown() {
        let c = Code::new("71260", "CPT4", "CT chest with contrast");
        assert_eq!(
            c.coding(),
            json!({"system": "http://www.ama-assn.org/go/cpt", "code": "71260", "display": "CT chest with contrast"})
        );
        assert_eq!(
            Code::new("X1", "99LOCAL", "").coding(),
            json!({"code": "X1"})
        );
    }
}
