//! What the FHIR workers make of coded data sets (tests/support/make_coded.py): brand-name
//! and coded agents classed for allergy alerts, medications and procedures coded with FHIR
//! system URIs, times with their zone, and one portal notice per study however it grows.

use super::*;

#[test]
fn coded_agents_codes_and_zoned_times_reach_every_fhir_worker() {
    let receiver = Receiver::start(0);
    let (tmp, data) = data_dir();
    let dir = tmp.path().join("coded");
    let uids = make("make_coded.py", &dir);
    let (d, e) = (
        uids["d"].as_str().expect("d").to_string(),
        uids["e"].as_str().expect("e").to_string(),
    );
    let p = receiver.port;
    let cfg = write_config(
        &data,
        &format!(
            "stable_after_secs = 0.5\n\
             [workers.ehr]\nurl = \"http://127.0.0.1:{p}/fhir\"\n\
             [workers.pharmacy]\nurl = \"http://127.0.0.1:{p}/pharmacy\"\n\
             [workers.billing]\nurl = \"http://127.0.0.1:{p}/billing\"\n\
             [workers.portal]\nurl = \"http://127.0.0.1:{p}/portal\"\n"
        ),
    );
    let server = start(&data, &cfg);
    storescu(
        &server,
        &[
            dir.join("d_ct_visipaque_1.dcm"),
            dir.join("e_pt_fdg_coded.dcm"),
        ],
    );
    let to = |r: &Received, path: &str| r.uri.starts_with(path) && r.status == 201;
    let count = |r: &[Received], path: &str| r.iter().filter(|x| to(x, path)).count();
    let got = receiver.wait(
        "two of each",
        |r| {
            ["/fhir", "/pharmacy", "/billing", "/portal"]
                .iter()
                .all(|p| count(r, p) == 2)
        },
        &server,
    );
    assert_fhir_r4(&fhir_bodies(&got));
    let about = |path: &str, study: &str, patient: &str| -> Value {
        got.iter()
            .filter(|r| to(r, path))
            .map(Received::json)
            .find(|b| {
                b.to_string().contains(study)
                    || b["entry"][0]["resource"]["subject"]["identifier"]["value"] == patient
            })
            .unwrap_or_else(|| panic!("{path} for {study}"))
    };

    // D: VISIPAQUE 320 coded as Iodixanol, a patient allergic to "contrast dye".
    let pharmacy_d = about("/pharmacy", &d, "CODED4");
    let admin = &pharmacy_d["entry"][0]["resource"];
    assert_eq!(admin["medicationCodeableConcept"]["text"], "VISIPAQUE 320");
    assert_eq!(
        admin["medicationCodeableConcept"]["coding"][0],
        serde_json::json!({"system": "http://snomed.info/sct", "code": "353962003", "display": "Iodixanol"})
    );
    assert_eq!(admin["effectiveDateTime"], "2024-11-05T10:15:00+01:00");
    assert_eq!(admin["dosage"]["route"]["coding"][0]["code"], "47625008");
    assert_eq!(admin["dosage"]["dose"]["value"], 100.0);
    let alert = &pharmacy_d["entry"][1]["resource"];
    assert_eq!(alert["resourceType"], "DetectedIssue", "{pharmacy_d}");
    assert_eq!(alert["code"]["coding"][0]["code"], "ALGY");
    let detail = alert["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("VISIPAQUE 320") && detail.contains("contrast dye"),
        "{detail}"
    );

    // E: FDG coded in the Radiopharmaceutical Code Sequence, started at 09:10 local, -05:00.
    let pharmacy_e = about("/pharmacy", &e, "TRACER5");
    assert_eq!(
        pharmacy_e["entry"].as_array().map(Vec::len),
        Some(1),
        "no allergy, no alert"
    );
    let admin = &pharmacy_e["entry"][0]["resource"];
    assert_eq!(
        admin["medicationCodeableConcept"]["coding"][0]["code"],
        "35321007"
    );
    assert_eq!(
        admin["medicationCodeableConcept"]["coding"][0]["system"],
        "http://snomed.info/sct"
    );
    assert_eq!(
        admin["medicationCodeableConcept"]["text"],
        "Fluorodeoxyglucose F^18^"
    );
    assert_eq!(admin["effectiveDateTime"], "2024-11-08T09:10:00-05:00");
    assert_eq!(admin["dosage"]["dose"]["unit"], "Bq");

    // ImagingStudy: times with the site's zone, procedure codes with their system URI.
    let study_d = about("/fhir", &d, "CODED4");
    assert_eq!(study_d["started"], "2024-11-05T10:10:00+01:00");
    assert_eq!(study_d["series"][0]["started"], "2024-11-05T10:17:00+01:00");
    assert_eq!(
        study_d["procedureCode"][0]["coding"][0]["system"],
        "http://www.ama-assn.org/go/cpt"
    );
    assert_eq!(
        about("/fhir", &e, "TRACER5")["started"],
        "2024-11-08T10:00:00-05:00"
    );
    let charge = &about("/billing", &d, "CODED4")["entry"][0]["resource"];
    assert_eq!(
        charge["code"]["coding"][0]["system"],
        "http://www.ama-assn.org/go/cpt"
    );

    // D grows by a series: the EHR hears of it again, the patient is not told twice.
    storescu(&server, &[dir.join("d_ct_visipaque_2.dcm")]);
    let got = receiver.wait("the EHR's update of D", |r| count(r, "/fhir") == 3, &server);
    let updated = got
        .iter()
        .rev()
        .find(|r| to(r, "/fhir"))
        .map(Received::json)
        .expect("update");
    assert_eq!(updated["numberOfSeries"], 2);
    let portal = wait_json(
        &server,
        "/api/events?worker=portal",
        "the portal's second event for D settled",
        |v| {
            v.as_array()
                .is_some_and(|a| a.len() == 3 && a.iter().all(|d| d["state"] != "pending"))
        },
    );
    let of_d: Vec<&Value> = portal
        .as_array()
        .expect("array")
        .iter()
        .filter(|x| x["study_instance_uid"] == d.as_str())
        .collect();
    assert_eq!(
        of_d.iter()
            .map(|x| x["state"].as_str().unwrap_or(""))
            .collect::<Vec<_>>(),
        ["delivered", "skipped"]
    );
    assert_eq!(
        count(&receiver.received(), "/portal"),
        2,
        "one notice per study"
    );
}
