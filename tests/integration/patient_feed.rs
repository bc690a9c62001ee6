//! Patient merges and updates from the EHR against the real server: ADT^A08 and ADT^A40 over
//! MLLP (merge into a stored patient, rename when the surviving patient is new, a prior patient
//! never imaged, a broken message), and FHIR `Patient/$merge` (preview, merge, refusals); QIDO
//! shows each change and the audit trail names it.

use serde_json::{json, Value};

use crate::corrections::{fetch as get, studies};
use crate::hl7::{connect, exchange, msa, orm, server_with_hl7};
use crate::security::{curl, import_two_patients, pacs, Reply};
use crate::support::*;

/// Study UIDs of a patient by QIDO, sorted.
fn studies_of(server: &Server, patient_id: &str) -> Vec<String> {
    studies(server, &format!("PatientID={patient_id}"))
}

fn name_of(server: &Server, study: &str) -> String {
    let r = get(
        server,
        &format!("/dicom-web/studies?StudyInstanceUID={study}"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()[0]["00100010"]["Value"][0]["Alphabetic"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn adt(trigger: &str, control: &str, segments: &str) -> String {
    format!("MSH|^~\\&|ADT|HOSP|PACS|RAD|20261206120000||ADT^{trigger}|{control}|P|2.5.1\rEVN|{trigger}|20261206120000\r{segments}")
}

fn merge_params(source: &str, target: &str, preview: bool) -> Value {
    json!({"resourceType": "Parameters", "parameter": [
        {"name": "source-patient-identifier", "valueIdentifier": {"system": "http://hospital.example/mrn", "value": source}},
        {"name": "target-patient", "valueReference": {"reference": format!("Patient/{target}")}},
        {"name": "preview", "valueBoolean": preview},
    ]})
}

fn post_merge(server: &Server, body: &Value) -> Reply {
    curl(
        &format!("http://127.0.0.1:{}/fhir/Patient/$merge", server.http_port),
        "POST",
        None,
        &[
            "-H",
            "Content-Type: application/fhir+json",
            "--data",
            &body.to_string(),
        ],
    )
}

#[test]
fn ehr_patient_merges_and_updates_over_hl7_and_fhir() {
    let (_tmp, data) = data_dir();
    import_two_patients(&data, 16);
    let out = run(pacs()
        .args(["import", "--quiet", "--data"])
        .arg(&data)
        .arg(samples()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = server_with_hl7(&data);
    let p0 = studies_of(&server, "PAT00000");
    let p1 = studies_of(&server, "PAT00001");
    assert_eq!((p0.len(), p1.len()), (1, 1));
    let mut hl7 = connect(&server);

    // A08: the EHR's demographics reach the stored study; the same A08 again changes nothing.
    let a08 = adt("A08", "U1", "PID|1||PAT00001||Roe^Ann^B||19800203|F\r");
    let ack = exchange(&mut hl7, &a08).expect("ack");
    assert_eq!(msa(&ack), "AA", "{ack}");
    assert_eq!(name_of(&server, &p1[0]), "Roe^Ann^B");
    let sop = get(&server, &format!("/dicom-web/studies/{}/metadata", p1[0])).json()[0]["00080018"]
        ["Value"][0]
        .as_str()
        .expect("sop")
        .to_string();
    let versions = |server: &Server| {
        get(server, &format!("/api/instances/{sop}/versions")).json()["versions"]
            .as_array()
            .map(Vec::len)
    };
    assert_eq!(versions(&server), Some(1));
    let ack = exchange(&mut hl7, &a08.replace("|U1|", "|U2|")).expect("ack");
    assert_eq!(msa(&ack), "AA", "{ack}");
    assert_eq!(
        versions(&server),
        Some(1),
        "an unchanged A08 wrote a new version"
    );

    // A40 into a stored patient: PAT00000's study joins PAT00001 and takes its demographics.
    let a40 = adt(
        "A40",
        "M1",
        "PID|1||PAT00001||Roe^Ann^B||19800203|F\rMRG|PAT00000\r",
    );
    let ack = exchange(&mut hl7, &a40).expect("ack");
    assert_eq!(msa(&ack), "AA", "{ack}");
    let mut both = [p0.clone(), p1.clone()].concat();
    both.sort();
    assert_eq!(studies_of(&server, "PAT00001"), both);
    assert!(studies_of(&server, "PAT00000").is_empty());
    assert_eq!(name_of(&server, &p0[0]), "Roe^Ann^B");

    // An order on the worklist for a patient not yet imaged follows the merge, so the
    // modality picks the surviving patient.
    let ack = exchange(&mut hl7, &orm("O1", "NW", "", "CT")).expect("ack");
    assert_eq!(msa(&ack), "AA", "{ack}");
    let ack = exchange(
        &mut hl7,
        &adt(
            "A40",
            "M1B",
            "PID|1||PAT00001^^^HOSP||Roe^Ann^B\rMRG|HL7P1^^^HOSP\r",
        ),
    )
    .expect("ack");
    assert_eq!(msa(&ack), "AA", "{ack}");
    let order = get(&server, "/fhir/ServiceRequest/HL7ACC1");
    assert_eq!(order.status, 200, "{}", order.text());
    assert!(
        order.text().contains("PAT00001") && !order.text().contains("HL7P1"),
        "{}",
        order.text()
    );

    // A prior patient the archive never imaged: accepted, nothing changes.
    let ack = exchange(
        &mut hl7,
        &adt("A40", "M2", "PID|1||PAT00001\rMRG|NEVER-IMAGED\r"),
    )
    .expect("ack");
    assert_eq!(msa(&ack), "AA", "{ack}");
    assert_eq!(studies_of(&server, "PAT00001"), both);

    // A40 to a surviving patient the archive has not seen: the prior patient is renamed.
    let us = studies_of(&server, "MRN-300552");
    assert!(!us.is_empty());
    let ack = exchange(
        &mut hl7,
        &adt(
            "A40",
            "M3",
            "PID|1||NEW-300552^^^HOSP||Renamed^Rita||19700101|F\rMRG|MRN-300552\r",
        ),
    )
    .expect("ack");
    assert_eq!(msa(&ack), "AA", "{ack}");
    assert_eq!(studies_of(&server, "NEW-300552"), us);
    assert!(studies_of(&server, "MRN-300552").is_empty());
    assert_eq!(name_of(&server, &us[0]), "Renamed^Rita");

    // Broken merges: refused with the field, nothing changed.
    let ack = exchange(&mut hl7, &adt("A40", "M4", "PID|1||PAT00001\r")).expect("ack");
    assert_eq!(msa(&ack), "AR", "{ack}");
    assert!(ack.contains("MRG"), "{ack}");
    let ack = exchange(
        &mut hl7,
        &adt("A40", "M5", "PID|1||PAT00001\rMRG|PAT00001\r"),
    )
    .expect("ack");
    assert_eq!(msa(&ack), "AE", "{ack}");
    assert_eq!(studies_of(&server, "PAT00001"), both);

    // FHIR $merge: preview changes nothing, the merge moves the studies.
    let ct = studies_of(&server, "MRN-100234");
    let mr = studies_of(&server, "MRN-200871");
    assert!(!ct.is_empty() && !mr.is_empty());
    let r = post_merge(&server, &merge_params("MRN-100234", "MRN-200871", true));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(studies_of(&server, "MRN-100234"), ct);
    // An order for the merged patient on the worklist: the FHIR merge moves it too.
    let ack = exchange(
        &mut hl7,
        "MSH|^~\\&|EHR|HOSP|PACS|RAD|20261205083000||ORM^O01|F1|P|2.3\r\
         PID|1||MRN-100234^^^HOSP-A^MR||Doe^Jane||19800101|F\r\
         PV1|1|O\r\
         ORC|NW|PL9|FL9||||^^^202612101015^^S\r\
         OBR|1|PL9|FL9|CT-HEAD^CT head^L||||||||||||||FHIRACC1|RP9|SPS9||||CT\r",
    )
    .expect("ack");
    assert_eq!(msa(&ack), "AA", "{ack}");
    let r = post_merge(&server, &merge_params("MRN-100234", "MRN-200871", false));
    assert_eq!(r.status, 200, "{}", r.text());
    let order = get(&server, "/fhir/ServiceRequest/FHIRACC1");
    assert!(
        order.text().contains("MRN-200871") && !order.text().contains("MRN-100234"),
        "{}",
        order.text()
    );
    let answer = r.json();
    assert_eq!(answer["resourceType"], "Parameters");
    let outcome = &answer["parameter"][1]["resource"];
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .is_some_and(|d| d.starts_with("merged")),
        "{answer}"
    );
    let mut all = [ct.clone(), mr.clone()].concat();
    all.sort();
    all.dedup();
    assert_eq!(studies_of(&server, "MRN-200871"), all);
    assert!(studies_of(&server, "MRN-100234").is_empty());

    // Refusals: a source no longer there (404), a body that is not Parameters (400).
    let r = post_merge(&server, &merge_params("MRN-100234", "MRN-200871", false));
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["resourceType"], "OperationOutcome");
    let r = post_merge(&server, &json!({"resourceType": "Patient"}));
    assert_eq!(r.status, 400, "{}", r.text());
    let r = post_merge(&server, &merge_params("PAT00001", "NOBODY", false));
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(studies_of(&server, "PAT00001"), both);

    // The audit trail names each change and where it came from.
    let audit = get(&server, "/api/audit?limit=1000&action=patient.merge").json();
    let entries = audit["records"].as_array().cloned().unwrap_or_default();
    let ok: Vec<&Value> = entries
        .iter()
        .filter(|e| e["outcome"] == "success")
        .collect();
    assert!(
        ok.iter().any(|e| e["interface"] == "hl7"
            && e["detail"].as_str().is_some_and(|d| d.contains("merged"))),
        "{audit}"
    );
    assert!(ok.iter().any(|e| e["interface"] == "http"), "{audit}");
}
