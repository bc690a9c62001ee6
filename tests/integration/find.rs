//! C-FIND with pynetdicom and dcmtk findscu: both information models, every level, each
//! matching kind, computed attributes, cancel and bad identifiers.

use serde_json::{json, Value};

use crate::support::*;

fn find(server: &Server, model: &str, keys: Value) -> Value {
    scu(&["find", &server.port(), model, &keys.to_string()])
}

fn values(v: &Value, keyword: &str) -> Vec<String> {
    let mut out: Vec<String> = v["matches"]
        .as_array()
        .unwrap_or_else(|| panic!("no matches in {v}"))
        .iter()
        .map(|m| m[keyword].as_str().unwrap_or("").to_string())
        .collect();
    out.sort();
    out
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
    assert_eq!(v["matches"].as_array().map(Vec::len), Some(4), "{v}");

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
    let (tmp, data) = data_dir();
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

    // 1,000 studies of one instance each (enough that matches are still being sent when the
    // cancel arrives); cancel after the first match.
    let gen = tmp.path().join("gen");
    generate(
        &gen,
        1000,
        &[
            "--rows",
            "16",
            "--cols",
            "16",
            "--per-series",
            "1",
            "--series-per-study",
            "1",
        ],
    );
    let v = scu(&[
        "store",
        &server.port(),
        "--threads",
        "2",
        &gen.display().to_string(),
    ]);
    assert_eq!(v["statuses"]["0x0000"], 1000, "{v}");
    let all = find(
        &server,
        "study",
        json!({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": ""}),
    );
    assert_eq!(all["matches"].as_array().map(Vec::len), Some(1000));
    let v = scu(&[
        "find",
        &server.port(),
        "study",
        &json!({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": ""}).to_string(),
        "--cancel-after",
        "1",
    ]);
    assert_eq!(v["status"], 0xFE00, "{}", v["status"]);
    let got = v["matches"].as_array().map(Vec::len).unwrap_or(0);
    assert!(got < 1000, "cancel stopped the matches ({got})");
    server.assert_echo();
}

#[test]
fn person_names_match_regardless_of_case_when_configured() {
    let keys =
        json!({"QueryRetrieveLevel": "STUDY", "PatientName": "smith*", "AccessionNumber": ""});
    let (_tmp, data) = data_dir();
    let server = samples_server(&data);
    let v = find(&server, "study", keys.clone());
    assert_eq!(
        v["matches"].as_array().map(Vec::len),
        Some(0),
        "case-sensitive by default: {v}"
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
    assert!(values(&v, "SOPInstanceUID").iter().all(String::is_empty));
    let _ = mr_sop;
}
