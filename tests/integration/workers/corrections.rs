//! Corrections reach the EHR: after a patient merge the ImagingStudy is sent again with the
//! surviving patient, and after a series moved away from a study the study it joined is sent
//! with the series and the emptied study as `entered-in-error`.

use serde_json::{json, Value};

use super::receiver::{Received, Receiver};
use super::{assert_fhir_r4, config, start};
use crate::security::curl;
use crate::support::*;

/// ImagingStudy bodies the EHR accepted for a study, in order.
fn imaging_studies(got: &[Received], study: &str) -> Vec<Value> {
    got.iter()
        .filter(|r| r.status == 201 && r.uri.ends_with(&format!("urn:oid:{study}")))
        .map(Received::json)
        .collect()
}

fn post(server: &Server, path: &str, body: &Value) -> u16 {
    let r = curl(
        &format!("http://127.0.0.1:{}{path}", server.http_port),
        "POST",
        None,
        &[
            "-H",
            "Content-Type: application/json",
            "--data",
            &body.to_string(),
        ],
    );
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.status
}

#[test]
fn the_ehr_is_told_about_a_merge_and_a_moved_series() {
    let receiver = Receiver::start(0);
    let (_tmp, data) = data_dir();
    let server = start(&data, &config(&data, receiver.port));
    let ct = samples().join("ct_16bit_signed_implicit.dcm");
    let mr = samples().join("mr_explicit.dcm");
    storescu(&server, &[ct.clone(), mr.clone()]);
    let (ct_study, ct_series) = server.parents_of(&file_uids(&ct).0);
    let (mr_study, _) = server.parents_of(&file_uids(&mr).0);
    receiver.wait(
        "both ImagingStudies",
        |got| {
            !imaging_studies(got, &ct_study).is_empty()
                && !imaging_studies(got, &mr_study).is_empty()
        },
        &server,
    );

    // Merge the CT's patient into the MR's: the CT study is sent again under MRN-200871.
    post(
        &server,
        "/api/patients/merge",
        &json!({"from": "MRN-100234", "into": "MRN-200871"}),
    );
    let got = receiver.wait(
        "the CT study under the surviving patient",
        |got| imaging_studies(got, &ct_study).len() >= 2,
        &server,
    );
    let resent = imaging_studies(&got, &ct_study).pop().expect("resent");
    assert_fhir_r4(std::slice::from_ref(&resent));
    assert_eq!(resent["subject"]["identifier"]["value"], "MRN-200871");
    assert_eq!(resent["status"], "available");

    // Move the CT's only series into the MR study: the MR study now has two series, and the
    // CT study, empty, is withdrawn.
    post(
        &server,
        &format!("/api/series/{ct_series}/move"),
        &json!({"study": mr_study}),
    );
    let got = receiver.wait(
        "the MR study with the moved series and the CT study withdrawn",
        |got| {
            imaging_studies(got, &mr_study)
                .last()
                .is_some_and(|r| r["numberOfSeries"] == 2)
                && imaging_studies(got, &ct_study)
                    .last()
                    .is_some_and(|r| r["status"] == "entered-in-error")
        },
        &server,
    );
    let withdrawn = imaging_studies(&got, &ct_study).pop().expect("withdrawn");
    assert_fhir_r4(std::slice::from_ref(&withdrawn));
    assert_eq!(withdrawn["subject"]["identifier"]["value"], "MRN-200871");
    let joined = imaging_studies(&got, &mr_study).pop().expect("joined");
    assert_fhir_r4(std::slice::from_ref(&joined));
    let series: Vec<&str> = joined["series"]
        .as_array()
        .expect("series")
        .iter()
        .filter_map(|s| s["uid"].as_str())
        .collect();
    assert!(series.contains(&ct_series.as_str()), "{joined}");
}
