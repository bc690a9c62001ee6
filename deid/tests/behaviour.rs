//! Behaviour on built objects: UID consistency, date shifting, odd input, the nesting bound,
//! and profiles read from TOML.

use dicom_core::value::{DataSetSequence, PrimitiveValue, Value};
use dicom_core::{DataElement, Length, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use pacs_deid::{
    deidentify, DateOption, DeidError, HashedPseudonyms, MappingKind, PatientPseudonym, Profile,
    Pseudonyms, MAX_DEPTH,
};

fn el(tag: Tag, vr: VR, v: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, PrimitiveValue::from(v))
}

fn seq(tag: Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    DataElement::new(
        tag,
        VR::SQ,
        Value::Sequence(DataSetSequence::new(items, Length::UNDEFINED)),
    )
}

fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    obj.get(tag)
        .and_then(|e| e.value().to_multi_str().ok().map(|v| v.join("\\")))
}

fn items(obj: &InMemDicomObject, tag: Tag) -> Vec<InMemDicomObject> {
    obj.get(tag)
        .and_then(|e| e.value().items().map(|i| i.to_vec()))
        .unwrap_or_default()
}

/// Pseudonyms with a fixed date offset, to test exact shifts.
struct Fixed(i64);

impl Pseudonyms for Fixed {
    fn uid(&mut self, original: &str) -> String {
        format!("2.25.{}", original.len())
    }
    fn patient(&mut self, _: &str, _: &str) -> PatientPseudonym {
        PatientPseudonym {
            id: "PID".into(),
            name: "NAME".into(),
        }
    }
    fn date_offset_days(&mut self, _: &str, _: &str) -> i64 {
        self.0
    }
}

fn sample() -> InMemDicomObject {
    let referenced = InMemDicomObject::from_element_iter([
        el(
            tags::REFERENCED_SOP_CLASS_UID,
            VR::UI,
            "1.2.840.10008.5.1.4.1.1.2",
        ),
        el(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, "1.2.3.4.100"),
        el(tags::PATIENT_NAME, VR::PN, "Doe^Jane"),
    ]);
    InMemDicomObject::from_element_iter([
        el(tags::SOP_CLASS_UID, VR::UI, "1.2.840.10008.5.1.4.1.1.2"),
        el(tags::SOP_INSTANCE_UID, VR::UI, "1.2.3.4.100"),
        el(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3.4"),
        el(tags::PATIENT_NAME, VR::PN, "Doe^Jane"),
        el(tags::PATIENT_ID, VR::LO, "MRN123"),
        el(tags::ISSUER_OF_PATIENT_ID, VR::LO, "HOSP"),
        el(tags::PATIENT_BIRTH_DATE, VR::DA, "19800229"),
        el(tags::STUDY_DATE, VR::DA, "20240301"),
        el(tags::STUDY_TIME, VR::TM, "101500"),
        el(
            tags::ACQUISITION_DATE_TIME,
            VR::DT,
            "20240301101010.5&+0100",
        ),
        el(tags::STUDY_DESCRIPTION, VR::LO, "CT head for Doe MRN123"),
        el(tags::INSTITUTION_NAME, VR::LO, "General Hospital"),
        el(tags::ROWS, VR::US, "512"),
        seq(tags::REFERENCED_IMAGE_SEQUENCE, vec![referenced]),
        DataElement::new(
            tags::FAILED_SOP_INSTANCE_UID_LIST,
            VR::UI,
            PrimitiveValue::Strs(vec!["1.2.3.4.100".to_owned(), "1.9".to_owned()].into()),
        ),
        el(Tag(0x0009, 0x0010), VR::LO, "ACME PRIVATE"),
        el(Tag(0x0009, 0x1001), VR::LO, "secret"),
    ])
}

#[test]
fn uids_are_replaced_consistently_at_every_level() {
    let mut obj = sample();
    let mut p = HashedPseudonyms::new("proj", b"key");
    let summary = deidentify(&mut obj, &Profile::basic(), &mut p).expect("deidentify");
    let sop = text(&obj, tags::SOP_INSTANCE_UID).expect("sop");
    assert!(sop.starts_with("2.25."));
    let item = &items(&obj, tags::REFERENCED_IMAGE_SEQUENCE)[0];
    assert_eq!(
        text(item, tags::REFERENCED_SOP_INSTANCE_UID),
        Some(sop.clone())
    );
    // The class UID is not an identifier: kept.
    assert_eq!(
        text(item, tags::REFERENCED_SOP_CLASS_UID).as_deref(),
        Some("1.2.840.10008.5.1.4.1.1.2")
    );
    // Multi-valued: each value mapped.
    let failed = text(&obj, tags::FAILED_SOP_INSTANCE_UID_LIST).expect("list");
    let failed: Vec<&str> = failed.split('\\').collect();
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0], sop);
    assert_ne!(failed[1], "1.9");
    // Same object again through a fresh instance: same UIDs.
    let mut again = sample();
    deidentify(
        &mut again,
        &Profile::basic(),
        &mut HashedPseudonyms::new("proj", b"key"),
    )
    .expect("deidentify");
    assert_eq!(text(&again, tags::SOP_INSTANCE_UID), Some(sop));
    assert!(summary.uids_replaced >= 4, "{summary:?}");
    assert!(obj.get(Tag(0x0009, 0x1001)).is_none() && obj.get(Tag(0x0009, 0x0010)).is_none());
    // The pseudonym table re-identifies the patient.
    let mappings = p.take_mappings();
    let pid = text(&obj, tags::PATIENT_ID).expect("pid");
    assert!(mappings.iter().any(|m| m.kind == MappingKind::PatientId
        && m.original == "MRN123^^^HOSP"
        && m.replacement == pid));
    assert!(mappings
        .iter()
        .any(|m| m.kind == MappingKind::Uid && m.original == "1.2.3.4.100"));
    // Nested patient name replaced by the same pseudonym.
    assert_eq!(
        text(item, tags::PATIENT_NAME),
        text(&obj, tags::PATIENT_NAME)
    );
}

#[test]
fn basic_profile_removes_dates_and_sets_the_method_attributes() {
    let mut obj = sample();
    deidentify(&mut obj, &Profile::basic(), &mut Fixed(-1)).expect("deidentify");
    assert_eq!(text(&obj, tags::STUDY_DATE).as_deref(), Some("")); // Z
    assert_eq!(text(&obj, tags::PATIENT_BIRTH_DATE).as_deref(), Some("")); // Z
                                                                           // X/Z/D: a dummy (the alternative that suits any IOD).
    let institution = text(&obj, tags::INSTITUTION_NAME).expect("dummy");
    assert!(!institution.is_empty() && institution != "General Hospital");
    assert!(obj.get(tags::STUDY_DESCRIPTION).is_none()); // X
    assert_eq!(text(&obj, tags::ROWS).as_deref(), Some("512")); // not listed
    assert_eq!(
        text(&obj, tags::PATIENT_IDENTITY_REMOVED).as_deref(),
        Some("YES")
    );
    assert_eq!(
        text(&obj, tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED).as_deref(),
        Some("REMOVED")
    );
    let codes = items(&obj, tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE);
    assert_eq!(codes.len(), 1);
    assert_eq!(text(&codes[0], tags::CODE_VALUE).as_deref(), Some("113100"));
    assert_eq!(
        text(&codes[0], tags::CODING_SCHEME_DESIGNATOR).as_deref(),
        Some("DCM")
    );
}

#[test]
fn modified_dates_shift_da_and_dt_keep_times_and_birth_date_goes() {
    let mut profile = Profile::basic();
    profile.retain_longitudinal_dates = DateOption::Modified;
    let mut obj = sample();
    deidentify(&mut obj, &profile, &mut Fixed(-1)).expect("deidentify");
    assert_eq!(text(&obj, tags::STUDY_DATE).as_deref(), Some("20240229"));
    assert_eq!(text(&obj, tags::STUDY_TIME).as_deref(), Some("101500"));
    assert_eq!(
        text(&obj, tags::ACQUISITION_DATE_TIME).as_deref(),
        Some("20240229101010.5&+0100")
    );
    assert_eq!(text(&obj, tags::PATIENT_BIRTH_DATE).as_deref(), Some(""));
    assert_eq!(
        text(&obj, tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED).as_deref(),
        Some("MODIFIED")
    );
    // Hashed offsets: the same patient always moves by the same number of days.
    let mut a = sample();
    let mut b = sample();
    deidentify(&mut a, &profile, &mut HashedPseudonyms::new("p", b"k")).expect("a");
    deidentify(&mut b, &profile, &mut HashedPseudonyms::new("p", b"k")).expect("b");
    assert_eq!(text(&a, tags::STUDY_DATE), text(&b, tags::STUDY_DATE));
    assert_ne!(text(&a, tags::STUDY_DATE).as_deref(), Some("20240301"));

    profile.retain_longitudinal_dates = DateOption::Full;
    let mut full = sample();
    deidentify(&mut full, &profile, &mut Fixed(-1)).expect("full");
    assert_eq!(text(&full, tags::STUDY_DATE).as_deref(), Some("20240301"));
    assert_eq!(
        text(&full, tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED).as_deref(),
        Some("UNMODIFIED")
    );
}

#[test]
fn options_retain_and_clean() {
    let mut profile = Profile::basic();
    profile.retain_institution_identity = true;
    profile.clean_descriptors = true;
    profile.retain_uids = true;
    let mut obj = sample();
    deidentify(&mut obj, &profile, &mut Fixed(-1)).expect("deidentify");
    assert_eq!(
        text(&obj, tags::INSTITUTION_NAME).as_deref(),
        Some("General Hospital")
    );
    assert_eq!(
        text(&obj, tags::SOP_INSTANCE_UID).as_deref(),
        Some("1.2.3.4.100")
    );
    // The description is kept with the patient's name and ID masked.
    assert_eq!(
        text(&obj, tags::STUDY_DESCRIPTION).as_deref(),
        Some("CT head for *** ******")
    );
    let codes: Vec<String> = items(&obj, tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE)
        .iter()
        .filter_map(|i| text(i, tags::CODE_VALUE))
        .collect();
    assert_eq!(codes, ["113100", "113105", "113110", "113112"]);
}

#[test]
fn odd_input_does_not_panic() {
    let un_uid = DataElement::new(
        tags::SERIES_INSTANCE_UID,
        VR::UN,
        PrimitiveValue::U8(b"1.2.3.5\0".iter().copied().collect()),
    );
    let binary_uid = DataElement::new(
        tags::FRAME_OF_REFERENCE_UID,
        VR::OB,
        PrimitiveValue::U8([0xff, 0xfe].into_iter().collect()),
    );
    let mut obj = InMemDicomObject::from_element_iter([
        el(tags::SOP_INSTANCE_UID, VR::UI, ""),
        el(tags::STUDY_INSTANCE_UID, VR::LO, "1.2.3"), // wrong VR
        DataElement::new(tags::PATIENT_NAME, VR::PN, PrimitiveValue::Empty),
        DataElement::new(
            tags::PATIENT_ID,
            VR::UN,
            PrimitiveValue::U8([0xc3, 0x28].into_iter().collect()),
        ),
        un_uid,
        binary_uid,
        el(tags::STUDY_DATE, VR::DA, "not a date"),
        el(tags::ACQUISITION_DATE, VR::LO, "garbage"),
        el(tags::CONTENT_DATE, VR::DA, ""),
        seq(tags::REFERENCED_STUDY_SEQUENCE, vec![]),
        seq(tags::CONTENT_SEQUENCE, vec![InMemDicomObject::new_empty()]),
        DataElement::new(
            tags::ACQUISITION_CONTEXT_SEQUENCE,
            VR::SQ,
            PrimitiveValue::Empty,
        ),
    ]);
    for dates in [DateOption::Remove, DateOption::Full, DateOption::Modified] {
        let mut profile = Profile::basic();
        profile.retain_longitudinal_dates = dates;
        profile.clean_descriptors = true;
        let mut o = obj.clone();
        deidentify(&mut o, &profile, &mut HashedPseudonyms::new("p", b"k")).expect("odd");
    }
    let mut modified = Profile::basic();
    modified.retain_longitudinal_dates = DateOption::Modified;
    let mut o = obj.clone();
    deidentify(&mut o, &modified, &mut Fixed(-1)).expect("odd");
    // Dates that cannot be read are dropped, not kept, even under a wrong VR.
    assert_eq!(text(&o, tags::STUDY_DATE).as_deref(), Some(""));
    assert_eq!(text(&o, tags::ACQUISITION_DATE).as_deref(), Some(""));
    deidentify(&mut obj, &Profile::basic(), &mut Fixed(-1)).expect("odd");
    // The UN-encoded UID is read as text and replaced; the unreadable one is dropped.
    assert_eq!(
        text(&obj, tags::SERIES_INSTANCE_UID).as_deref(),
        Some("2.25.7")
    );
    assert!(obj.get(tags::FRAME_OF_REFERENCE_UID).is_none());
    assert_eq!(
        text(&obj, tags::STUDY_INSTANCE_UID).as_deref(),
        Some("2.25.5")
    );
    assert_eq!(text(&obj, tags::SOP_INSTANCE_UID).as_deref(), Some(""));
    assert_eq!(text(&obj, tags::PATIENT_ID).as_deref(), Some("PID"));
}

#[test]
fn hostile_nesting_is_refused_without_overflowing_the_stack() {
    // Built, cloned and dropped on a large stack: those recursive operations belong to
    // dicom-object; the walk itself stops at MAX_DEPTH.
    let worker = std::thread::Builder::new()
        .stack_size(512 * 1024 * 1024)
        .spawn(|| {
            let mut inner = InMemDicomObject::from_element_iter([el(
                tags::PATIENT_NAME,
                VR::PN,
                "Deep^Patient",
            )]);
            for _ in 0..10_000 {
                inner =
                    InMemDicomObject::from_element_iter([seq(tags::CONTENT_SEQUENCE, vec![inner])]);
            }
            let result = deidentify(&mut inner, &Profile::basic(), &mut Fixed(-1));
            assert!(
                matches!(result, Err(DeidError::TooDeep { max, .. }) if max == MAX_DEPTH),
                "{result:?}"
            );
            // Just within the bound: fine.
            let mut ok = InMemDicomObject::new_empty();
            for _ in 0..MAX_DEPTH {
                ok = InMemDicomObject::from_element_iter([seq(tags::CONTENT_SEQUENCE, vec![ok])]);
            }
            deidentify(&mut ok, &Profile::basic(), &mut Fixed(-1)).expect("within bound");
        })
        .expect("spawn");
    worker.join().expect("no panic");
}

#[derive(serde::Deserialize)]
struct Config {
    deid: Deid,
}

#[derive(serde::Deserialize)]
struct Deid {
    profiles: Vec<Profile>,
}

#[test]
fn profiles_read_from_toml() {
    let config: Config = toml::from_str(
        r#"
        [[deid.profiles]]
        name = "research"
        retain_uids = false
        retain_longitudinal_dates = "modified"
        retain_patient_characteristics = true
        clean_descriptors = true

        [[deid.profiles]]
        name = "ai-worker"
        retain_uids = true
        retain_device_identity = true
        retain_institution_identity = true
        retain_longitudinal_dates = "full"
        retain_safe_private = true

        [[deid.profiles]]
        name = "basic"
        "#,
    )
    .expect("config");
    let p = &config.deid.profiles;
    assert_eq!(p.len(), 3);
    assert_eq!(p[0].retain_longitudinal_dates, DateOption::Modified);
    assert!(p[0].clean_descriptors && p[0].retain_patient_characteristics && !p[0].retain_uids);
    assert_eq!(p[1].retain_longitudinal_dates, DateOption::Full);
    assert_eq!(p[2], Profile::basic());
    let codes: Vec<&str> = p[1].method_codes().iter().map(|c| c.0).collect();
    assert_eq!(
        codes,
        ["113100", "113106", "113109", "113110", "113111", "113112"]
    );
    // Typos are errors, not silently ignored options.
    assert!(
        toml::from_str::<Config>("[[deid.profiles]]\nname = \"x\"\nretain_uid = true\n").is_err()
    );
    assert!(toml::from_str::<Config>(
        "[[deid.profiles]]\nname = \"x\"\nretain_longitudinal_dates = \"shifted\"\n"
    )
    .is_err());
    // JSON too (the server may keep profiles there).
    let json: Profile =
        serde_json::from_str(r#"{"name":"j","retain_longitudinal_dates":"remove"}"#).expect("json");
    assert_eq!(json.retain_longitudinal_dates, DateOption::Remove);
}
