//! C-FIND with pynetdicom and dcmtk findscu: both information models, every level, each
//! matching kind, computed attributes, cancel and bad identifiers.

use std::io::Write;

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::pdu::{write_pdu, PDataValue, PDataValueType, Pdu};
use dicom_ul::ClientAssociationOptions;
use serde_json::{json, Value};

use crate::support::*;

/// A command set (implicit VR little endian) with its group length.
pub(crate) fn command_set(elements: &[(Tag, VR, PrimitiveValue)]) -> Vec<u8> {
    let mut obj = InMemDicomObject::new_empty();
    for (tag, vr, value) in elements {
        obj.put(DataElement::new(*tag, *vr, value.clone()));
    }
    let mut body = Vec::new();
    obj.write_dataset_with_ts(&mut body, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .expect("encode");
    let mut out = vec![0, 0, 0, 0, 4, 0, 0, 0];
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Send a study-level C-FIND and its C-CANCEL in one write (dicom-ul client); return the
/// final status and the number of pending responses seen.
fn find_then_cancel(port: u16) -> (u16, usize) {
    raw_find(port, "1.2.840.10008.5.1.4.1.2.2.1", true)
}

/// A C-FIND on the Study Root context whose command names `affected_class`, optionally
/// followed in the same write by its C-CANCEL.
fn raw_find(port: u16, affected_class: &str, cancel_too: bool) -> (u16, usize) {
    const FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
    let mut assoc = ClientAssociationOptions::new()
        .calling_ae_title("CANCELLER")
        .called_ae_title(AE)
        .with_abstract_syntax(FIND)
        .establish(("127.0.0.1", port))
        .expect("association");
    let pc = assoc.presentation_contexts()[0].clone();
    let rq = command_set(&[
        (
            tags::AFFECTED_SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from(affected_class),
        ),
        (
            tags::COMMAND_FIELD,
            VR::US,
            PrimitiveValue::from(0x0020_u16),
        ),
        (tags::MESSAGE_ID, VR::US, PrimitiveValue::from(9_u16)),
        (tags::PRIORITY, VR::US, PrimitiveValue::from(0_u16)),
        (
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            PrimitiveValue::from(0_u16),
        ),
    ]);
    let cancel = command_set(&[
        (
            tags::COMMAND_FIELD,
            VR::US,
            PrimitiveValue::from(0x0FFF_u16),
        ),
        (
            tags::MESSAGE_ID_BEING_RESPONDED_TO,
            VR::US,
            PrimitiveValue::from(9_u16),
        ),
        (
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            PrimitiveValue::from(0x0101_u16),
        ),
    ]);
    let mut ident = InMemDicomObject::new_empty();
    ident.put(DataElement::new(
        tags::QUERY_RETRIEVE_LEVEL,
        VR::CS,
        PrimitiveValue::from("STUDY"),
    ));
    ident.put(DataElement::new(
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::Empty,
    ));
    let ts = TransferSyntaxRegistry.get(&pc.transfer_syntax).expect("ts");
    let mut ident_bytes = Vec::new();
    ident
        .write_dataset_with_ts(&mut ident_bytes, ts)
        .expect("encode");
    let pdv = |value_type, data| PDataValue {
        presentation_context_id: pc.id,
        value_type,
        is_last: true,
        data,
    };
    let mut bytes = Vec::new();
    let mut pdus = vec![Pdu::PData {
        data: vec![
            pdv(PDataValueType::Command, rq),
            pdv(PDataValueType::Data, ident_bytes),
        ],
    }];
    if cancel_too {
        pdus.push(Pdu::PData {
            data: vec![pdv(PDataValueType::Command, cancel)],
        });
    }
    for pdu in pdus {
        write_pdu(&mut bytes, &pdu).expect("encode PDU");
    }
    assoc.inner_stream().write_all(&bytes).expect("send");
    let mut pending = 0;
    loop {
        let Pdu::PData { data } = assoc.receive().expect("receive") else {
            panic!("unexpected PDU");
        };
        for v in data
            .into_iter()
            .filter(|v| v.value_type == PDataValueType::Command)
        {
            let obj = InMemDicomObject::read_dataset_with_ts(
                &v.data[..],
                &IMPLICIT_VR_LITTLE_ENDIAN.erased(),
            )
            .expect("response");
            let status = obj
                .get(tags::STATUS)
                .and_then(|e| e.value().to_int::<u16>().ok())
                .expect("status");
            if status == 0xFF00 {
                pending += 1;
            } else {
                let _ = assoc.release();
                return (status, pending);
            }
        }
    }
}

fn find(server: &Server, model: &str, keys: Value) -> Value {
    scu(&["find", &server.port(), model, &keys.to_string()])
}

/// The values of `keyword` in every match, sorted, after checking that the C-FIND succeeded.
/// A match without the key fails: a key that was asked for must come back, if only empty.
fn values(v: &Value, keyword: &str) -> Vec<String> {
    assert_eq!(v["status"], 0, "C-FIND did not succeed: {v}");
    let mut out: Vec<String> = v["matches"]
        .as_array()
        .unwrap_or_else(|| panic!("no matches in {v}"))
        .iter()
        .map(|m| {
            m[keyword]
                .as_str()
                .unwrap_or_else(|| panic!("{keyword} missing from a match: {m}"))
                .to_string()
        })
        .collect();
    out.sort();
    out
}

/// The number of matches of a successful C-FIND.
fn match_count(v: &Value) -> usize {
    assert_eq!(v["status"], 0, "C-FIND did not succeed: {v}");
    v["matches"]
        .as_array()
        .unwrap_or_else(|| panic!("no matches in {v}"))
        .len()
}

fn samples_server(data: &std::path::Path) -> Server {
    let server = Server::start(data);
    storescu(&server, &sample_files());
    server
}

#[test]
fn study_root_matching_kinds_and_computed_attributes() {
    let (_tmp, data) = data_dir();
    let server = samples_server(&data);
    let study_keys = |extra: Value| {
        let mut keys = json!({
            "QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "", "AccessionNumber": "",
            "PatientName": "", "PatientID": "", "StudyDate": "", "ModalitiesInStudy": "",
            "NumberOfStudyRelatedSeries": "", "NumberOfStudyRelatedInstances": "",
            "StudyDescription": "", "OtherPatientNames": ""
        });
        for (k, v) in extra.as_object().expect("object") {
            keys[k] = v.clone();
        }
        keys
    };

    // single value
    let v = find(
        &server,
        "study",
        study_keys(json!({"PatientID": "MRN-200871"})),
    );
    assert_eq!(v["status"], 0, "{v}");
    assert_eq!(
        values(&v, "AccessionNumber"),
        ["A2023120144", "A2024091807"]
    );
    assert_eq!(values(&v, "ModalitiesInStudy"), ["CR\\OT", "MR"]);
    assert_eq!(values(&v, "NumberOfStudyRelatedInstances"), ["2", "3"]);
    assert_eq!(values(&v, "NumberOfStudyRelatedSeries"), ["1", "2"]);
    assert_eq!(
        values(&v, "StudyDescription"),
        ["MRI BRAIN WITHOUT CONTRAST", "XR CHEST 2 VIEWS"]
    );
    // an unsupported key is returned, empty
    assert_eq!(values(&v, "OtherPatientNames"), ["", ""]);

    // universal: every study
    let v = find(&server, "study", study_keys(json!({})));
    assert_eq!(match_count(&v), 4, "{v}");

    // wildcard
    let v = find(&server, "study", study_keys(json!({"PatientName": "DOE*"})));
    assert_eq!(values(&v, "PatientID"), ["MRN-100234"]);
    let v = find(
        &server,
        "study",
        study_keys(json!({"PatientName": "?ARCIA^M*"})),
    );
    assert_eq!(values(&v, "PatientID"), ["MRN-300552"]);

    // date range, open ranges
    let v = find(
        &server,
        "study",
        study_keys(json!({"StudyDate": "20240101-20241231"})),
    );
    assert_eq!(values(&v, "StudyDate"), ["20240918", "20241105"]);
    let v = find(
        &server,
        "study",
        study_keys(json!({"StudyDate": "20250101-"})),
    );
    assert_eq!(values(&v, "StudyDate"), ["20250302"]);
    let v = find(
        &server,
        "study",
        study_keys(json!({"StudyDate": "-20231231"})),
    );
    assert_eq!(values(&v, "StudyDate"), ["20231201"]);

    // accession, modality, list of UIDs
    let v = find(
        &server,
        "study",
        study_keys(json!({"AccessionNumber": "A2025030219"})),
    );
    assert_eq!(values(&v, "PatientName"), ["GARCIA^MARIA^L"]);
    let v = find(
        &server,
        "study",
        study_keys(json!({"ModalitiesInStudy": "OT"})),
    );
    assert_eq!(values(&v, "AccessionNumber"), ["A2023120144"]);
    let all = find(&server, "study", study_keys(json!({})));
    let uids = values(&all, "StudyInstanceUID");
    let list = format!("{}\\{}", uids[0], uids[2]);
    let v = find(
        &server,
        "study",
        study_keys(json!({ "StudyInstanceUID": list })),
    );
    assert_eq!(
        values(&v, "StudyInstanceUID"),
        [uids[0].clone(), uids[2].clone()]
    );
}

#[test]
fn patient_root_and_lower_levels() {
    let (_tmp, data) = data_dir();
    let server = samples_server(&data);
    let v = find(
        &server,
        "patient",
        json!({"QueryRetrieveLevel": "PATIENT", "PatientName": "SMITH*", "PatientID": "",
               "PatientBirthDate": "", "NumberOfPatientRelatedStudies": "",
               "NumberOfPatientRelatedSeries": "", "NumberOfPatientRelatedInstances": ""}),
    );
    assert_eq!(v["status"], 0, "{v}");
    assert_eq!(values(&v, "PatientID"), ["MRN-200871"]);
    assert_eq!(values(&v, "PatientBirthDate"), ["19550228"]);
    assert_eq!(values(&v, "NumberOfPatientRelatedStudies"), ["2"]);
    assert_eq!(values(&v, "NumberOfPatientRelatedSeries"), ["3"]);
    assert_eq!(values(&v, "NumberOfPatientRelatedInstances"), ["5"]);

    let v = find(
        &server,
        "study",
        json!({"QueryRetrieveLevel": "STUDY", "AccessionNumber": "A2023120144", "StudyInstanceUID": ""}),
    );
    let cr_study = values(&v, "StudyInstanceUID")[0].clone();
    let v = find(
        &server,
        "study",
        json!({"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": cr_study, "SeriesInstanceUID": "",
               "Modality": "", "SeriesNumber": "", "NumberOfSeriesRelatedInstances": ""}),
    );
    assert_eq!(values(&v, "Modality"), ["CR", "OT"], "{v}");
    assert_eq!(values(&v, "SeriesNumber"), ["1", "99"]);
    assert_eq!(values(&v, "NumberOfSeriesRelatedInstances"), ["1", "1"]);

    // Image level in the patient root model, under the CT series.
    let (ct_sop, _) = file_uids(&samples().join("ct_16bit_signed_implicit.dcm"));
    let rec = server.json(&format!("/api/instances/{ct_sop}"));
    let series = rec["series_instance_uid"]
        .as_str()
        .expect("series")
        .to_string();
    let v = find(
        &server,
        "patient",
        json!({"QueryRetrieveLevel": "IMAGE", "PatientID": "MRN-100234",
               "StudyInstanceUID": rec["study_instance_uid"], "SeriesInstanceUID": series,
               "SOPInstanceUID": "", "InstanceNumber": "", "Rows": ""}),
    );
    assert_eq!(values(&v, "InstanceNumber"), ["1", "2", "3", "4"], "{v}");
    assert_eq!(values(&v, "Rows"), ["512", "512", "512", "512"]);
    assert!(values(&v, "SOPInstanceUID").contains(&ct_sop));
}

#[test]
fn findscu_from_dcmtk_gets_the_matches() {
    let (_tmp, data) = data_dir();
    let server = samples_server(&data);
    let out = run(dcmtk("findscu").args([
        "-S",
        "-aec",
        AE,
        "127.0.0.1",
        &server.port(),
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        "PatientName=SMI*",
        "-k",
        "AccessionNumber",
        "-k",
        "StudyInstanceUID",
    ]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(log.matches("(Pending)").count(), 2, "{log}");
    assert!(
        log.contains("A2023120144") && log.contains("A2024091807"),
        "{log}"
    );
}

#[test]
fn bad_identifiers_get_failure_statuses_and_cancel_stops_the_matches() {
    let (_tmp, data) = data_dir();
    let server = Server::start(&data);
    let v = find(&server, "study", json!({"PatientID": ""}));
    assert_eq!(v["status"], 0xA900, "no QueryRetrieveLevel: {v}");
    let v = find(
        &server,
        "study",
        json!({"QueryRetrieveLevel": "SERIES", "Modality": "CT"}),
    );
    assert_eq!(v["status"], 0xA900, "series without its study: {v}");
    let v = find(
        &server,
        "study",
        json!({"QueryRetrieveLevel": "STUDY", "StudyDate": "yesterday"}),
    );
    assert_eq!(v["status"], 0xA900, "malformed date: {v}");
    let v = find(&server, "study", json!({"QueryRetrieveLevel": "WARD"}));
    assert_eq!(v["status"], 0xA900, "unknown level: {v}");
    let v = find(
        &server,
        "study",
        json!({"QueryRetrieveLevel": "STUDY", "StudyDate": ["LO", "20240101-"]}),
    );
    assert_eq!(v["status"], 0xA900, "a key with the wrong VR: {v}");
    assert!(
        v["comment"]
            .as_str()
            .is_some_and(|c| c.contains("00080020")),
        "{v}"
    );
    server.assert_echo();

    // C-CANCEL in the same write as the C-FIND-RQ: the server must stop before the first match.
    storescu(&server, &sample_files());
    let (status, matches) = find_then_cancel(server.dicom_port);
    assert_eq!(status, 0xFE00, "cancelled");
    // A command naming another SOP class than its presentation context: refused.
    let (status, _) = raw_find(server.dicom_port, "1.2.840.10008.5.1.4.1.2.1.1", false);
    assert_eq!(status, 0x0122, "SOP class not supported on this context");
    assert!(matches < 4, "cancel stopped the matches ({matches})");
    server.assert_echo();
}

#[test]
fn person_names_match_regardless_of_case_when_configured() {
    let keys =
        json!({"QueryRetrieveLevel": "STUDY", "PatientName": "smith*", "AccessionNumber": ""});
    let (_tmp, data) = data_dir();
    let server = samples_server(&data);
    let v = find(&server, "study", keys.clone());
    assert_eq!(match_count(&v), 0, "case-sensitive by default: {v}");
    // The same query in upper case matches: the zero above is about case, not a failure.
    let mut upper = keys.clone();
    upper["PatientName"] = json!("SMITH*");
    let v = find(&server, "study", upper);
    assert_eq!(
        values(&v, "AccessionNumber"),
        ["A2023120144", "A2024091807"]
    );
    drop(server);

    let (tmp, data) = data_dir();
    std::fs::write(
        tmp.path().join("pacs.toml"),
        "case_insensitive_names = true\n",
    )
    .expect("toml");
    let server = samples_server(&data);
    let v = find(&server, "study", keys);
    assert_eq!(
        values(&v, "AccessionNumber"),
        ["A2023120144", "A2024091807"],
        "{v}"
    );
}

#[test]
fn every_level_in_both_information_models() {
    let (_tmp, data) = data_dir();
    let server = samples_server(&data);
    let (mr_sop, _) = file_uids(&samples().join("mr_rle.dcm"));
    let rec = server.json(&format!("/api/instances/{mr_sop}"));
    let (study, series) = (
        rec["study_instance_uid"].clone(),
        rec["series_instance_uid"].clone(),
    );
    for model in ["patient", "study"] {
        // Patient root needs the patient's ID above the study level; study root does not mind it.
        let pid = json!("MRN-200871");
        let cases = [
            (
                "STUDY",
                json!({"QueryRetrieveLevel": "STUDY", "PatientID": pid, "StudyInstanceUID": ""}),
                "StudyInstanceUID",
                2,
            ),
            (
                "SERIES",
                json!({"QueryRetrieveLevel": "SERIES", "PatientID": pid, "StudyInstanceUID": study, "SeriesInstanceUID": ""}),
                "SeriesInstanceUID",
                1,
            ),
            (
                "IMAGE",
                json!({"QueryRetrieveLevel": "IMAGE", "PatientID": pid, "StudyInstanceUID": study, "SeriesInstanceUID": series, "SOPInstanceUID": ""}),
                "SOPInstanceUID",
                3,
            ),
        ];
        for (level, keys, key, expected) in cases {
            let v = find(&server, model, keys);
            assert_eq!(v["status"], 0, "{model} {level}: {v}");
            let got = values(&v, key);
            assert_eq!(got.len(), expected, "{model} {level}: {v}");
            assert!(got.iter().all(|u| !u.is_empty()), "{model} {level}: {v}");
        }
    }
    let v = find(
        &server,
        "patient",
        json!({"QueryRetrieveLevel": "PATIENT", "PatientID": "", "PatientName": ""}),
    );
    assert_eq!(
        values(&v, "PatientID"),
        ["MRN-100234", "MRN-200871", "MRN-300552"]
    );
    // Only the keys asked for come back: no lower-level UID at the patient level.
    let matches = v["matches"].as_array().expect("matches");
    assert!(
        matches.iter().all(|m| m.get("SOPInstanceUID").is_none()),
        "{v}"
    );
    let _ = mr_sop;
}

#[test]
fn pynetdicom_cancels_a_find_mid_stream() {
    const TOTAL: u64 = 400;
    // ~2,900 empty keys the index does not hold: each response is about 24 KB, so the
    // answer (~9.5 MB) is more than the sockets between the two can buffer, and the SCP is
    // still sending when the C-CANCEL arrives (scu.py holds back its reads until it is out).
    const PAD_KEYS: &str = "2900";
    let (tmp, data) = data_dir();
    let server = Server::start(&data);
    let gen = tmp.path().join("gen");
    generate(
        &gen,
        TOTAL as usize,
        &[
            "--rows",
            "16",
            "--cols",
            "16",
            "--per-series",
            "400",
            "--seed",
            "find-cancel",
        ],
    );
    let v = scu(&[
        "store",
        &server.port(),
        &gen.display().to_string(),
        "--threads",
        "4",
    ]);
    assert_eq!(v["statuses"]["0x0000"], TOTAL, "{v}");
    let first = files_under(&gen)
        .into_iter()
        .next()
        .expect("a generated file");
    let (sop, _) = file_uids(&first);
    let (study, series) = server.parents_of(&sop);
    let keys = json!({"QueryRetrieveLevel": "IMAGE", "StudyInstanceUID": study,
                      "SeriesInstanceUID": series, "SOPInstanceUID": ""})
    .to_string();

    // Not cancelled: every match arrives (the padding changes the size of the answers, not
    // which instances match; left out here, it would only make this slower).
    let v = scu(&["find", &server.port(), "study", &keys, "--count-only"]);
    assert_eq!(v["status"], 0, "{v}");
    assert_eq!(v["count"], TOTAL, "{v}");

    // Cancelled after the first match: the final status says so and the rest never came.
    let v = scu(&[
        "find",
        &server.port(),
        "study",
        &keys,
        "--pad-keys",
        PAD_KEYS,
        "--count-only",
        "--cancel-after",
        "1",
    ]);
    assert_eq!(v["status"], 0xFE00, "cancelled: {v}");
    let count = v["count"].as_u64().unwrap_or(0);
    assert!(
        (1..TOTAL).contains(&count),
        "fewer matches than the {TOTAL} there are: {v}"
    );
    server.assert_echo();
}
