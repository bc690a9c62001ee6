//! The department's loop, end to end through the workers: an order is scheduled, the modality
//! reports it performed (MPPS over pynetdicom), its images arrive with the accession number;
//! billing charges the performed code (and holds a study whose performed code is not the
//! ordered one) and the EHR's ImagingStudy is basedOn the ServiceRequest.

use serde_json::Value;

use super::receiver::{Received, Receiver};
use super::{start, wait_json};
use crate::support::*;
use crate::worklist::seed;

/// MPPS for `accession`, performed as `code` (LOINC): `both` N-CREATEs and N-SETs COMPLETED,
/// `create` only N-CREATEs (printing the step's UID), `complete UID` only N-SETs COMPLETED.
const MPPS: &str = r#"
import sys
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import ModalityPerformedProcedureStep as MPPS
port, accession, code, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ae = AE(ae_title="CT1")
ae.acse_timeout = 60
ae.add_requested_context(MPPS)
assoc = ae.associate("127.0.0.1", port, ae_title="PACS")
assert assoc.is_established
uid = sys.argv[5] if mode == "complete" else generate_uid()
if mode in ("both", "create"):
    ds = Dataset()
    item = Dataset()
    item.AccessionNumber = accession
    ds.ScheduledStepAttributesSequence = [item]
    ds.PatientID = "P1"
    ds.PerformedProcedureStepStartDate = "20261205"
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.Modality = "CT"
    status, _ = assoc.send_n_create(ds, MPPS, uid)
    assert status.Status == 0, status
if mode in ("both", "complete"):
    done = Dataset()
    done.PerformedProcedureStepStatus = "COMPLETED"
    done.PerformedProcedureStepEndDate = "20261205"
    c = Dataset()
    c.CodeValue = code
    c.CodingSchemeDesignator = "LN"
    c.CodeMeaning = "performed"
    done.ProcedureCodeSequence = [c]
    status, _ = assoc.send_n_set(done, MPPS, uid)
    assert status.Status == 0, status
assoc.release()
print(uid)
"#;

fn mpps(server: &Server, args: &[&str]) -> String {
    let out = run(python().arg("-c").arg(MPPS).arg(server.port()).args(args));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A CT image of patient P1 with `accession`, in a new study; written to `path`.
const IMAGE: &str = r#"
import sys
import pydicom
from pydicom.uid import generate_uid
src, dst, accession = sys.argv[1], sys.argv[2], sys.argv[3]
ds = pydicom.dcmread(src)
ds.PatientID = "P1"
ds.PatientName = "Müller^Anna"
ds.SpecificCharacterSet = "ISO_IR 192"
ds.AccessionNumber = accession
ds.StudyInstanceUID = generate_uid()
ds.SeriesInstanceUID = generate_uid()
ds.SOPInstanceUID = generate_uid()
ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
ds.save_as(dst)
print(ds.StudyInstanceUID)
"#;

#[test]
fn order_performed_billed_and_imaging_study_based_on_it() {
    let receiver = Receiver::start(0);
    let (tmp, data) = data_dir();
    seed(&data);
    let cfg = tmp.path().join("pacs.toml");
    std::fs::write(
        &cfg,
        format!(
            "stable_after_secs = 0.5\n[workers.billing]\nurl = \"http://127.0.0.1:{p}/billing\"\n\
             [workers.ehr]\nurl = \"http://127.0.0.1:{p}/fhir\"\n",
            p = receiver.port
        ),
    )
    .expect("config");
    let server = start(&data, &cfg);
    // A100 is performed as ordered (24627-2); A101 as something else; A102's images arrive
    // while its step is in progress, and are charged when it completes.
    for (acc, code) in [("A100", "24627-2"), ("A101", "30745-4")] {
        mpps(&server, &[acc, code, "both"]);
    }
    let in_progress = mpps(&server, &["A102", "24627-2", "create"]);
    let mut images = Vec::new();
    let mut study_of = std::collections::HashMap::new();
    for acc in ["A100", "A101", "A102"] {
        let path = tmp.path().join(format!("{acc}.dcm"));
        let out = run(python()
            .arg("-c")
            .arg(IMAGE)
            .arg(samples().join("ct_16bit_signed_implicit.dcm"))
            .arg(&path)
            .arg(acc));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        study_of.insert(acc, String::from_utf8_lossy(&out.stdout).trim().to_string());
        images.push(path);
    }
    storescu(&server, &images);
    let is = |r: &Received, prefix: &str| r.uri.starts_with(prefix);
    let charges_for = |r: &[Received], acc: &str| {
        r.iter()
            .filter(|x| is(x, "/billing") && x.text().contains(&format!("\"{acc}-24627-2\"")))
            .count()
    };
    receiver.wait(
        "a charge for A100, three ImagingStudy updates, two ServiceRequests completed",
        |r| {
            charges_for(r, "A100") >= 1
                && r.iter().filter(|x| is(x, "/fhir/ImagingStudy")).count() == 3
                && r.iter().filter(|x| is(x, "/fhir/ServiceRequest")).count() == 2
        },
        &server,
    );
    // A102's study is stable but its step is in progress: billing waits for it.
    let a102 = study_of["A102"].clone();
    wait_json(
        &server,
        "/api/events?worker=billing&state=skipped",
        "billing to pass over A102's stable study",
        |v| {
            v.as_array()
                .is_some_and(|a| a.iter().any(|d| d["study_instance_uid"] == a102.as_str()))
        },
    );
    assert_eq!(charges_for(&receiver.received(), "A102"), 0);
    mpps(&server, &["A102", "24627-2", "complete", &in_progress]);
    let got = receiver.wait(
        "A102 charged and its ServiceRequest completed",
        |r| {
            charges_for(r, "A102") >= 1
                && r.iter().filter(|x| is(x, "/fhir/ServiceRequest")).count() == 3
        },
        &server,
    );

    let charge: Value = got
        .iter()
        .find(|r| is(r, "/billing") && r.text().contains("A100-24627-2"))
        .map(Received::json)
        .expect("billing");
    let item = &charge["entry"][0]["resource"];
    assert_eq!(item["code"]["coding"][0]["code"], "24627-2", "{charge}");
    assert_eq!(item["identifier"][0]["value"], "A100-24627-2", "{charge}");
    assert!(
        got.iter()
            .filter(|r| is(r, "/billing"))
            .all(|r| !r.text().contains("A101")),
        "A101 is held, not charged"
    );
    let studies: Vec<Value> = got
        .iter()
        .filter(|r| is(r, "/fhir/ImagingStudy"))
        .map(Received::json)
        .collect();
    for acc in ["A100", "A101", "A102"] {
        let study = studies
            .iter()
            .find(|s| s["basedOn"][0]["identifier"]["value"] == acc)
            .unwrap_or_else(|| panic!("an ImagingStudy based on {acc}: {studies:?}"));
        assert_eq!(
            study["basedOn"][0]["reference"],
            format!("ServiceRequest/{acc}")
        );
    }
    // The EHR's orders are marked completed, each by a JSON Patch of its status only.
    let mut patched: Vec<String> = got
        .iter()
        .filter(|r| is(r, "/fhir/ServiceRequest"))
        .map(|r| {
            assert_eq!(r.method, "PATCH", "{}", r.uri);
            assert_eq!(r.content_type, "application/json-patch+json", "{}", r.uri);
            assert_eq!(
                r.json(),
                serde_json::json!([{"op": "replace", "path": "/status", "value": "completed"}]),
                "{}",
                r.uri
            );
            r.uri.clone()
        })
        .collect();
    patched.sort();
    assert_eq!(
        patched,
        [
            "/fhir/ServiceRequest?identifier=A100",
            "/fhir/ServiceRequest?identifier=A101",
            "/fhir/ServiceRequest?identifier=A102"
        ]
    );
    let held = server.json("/api/events?worker=billing&state=held");
    let reasons: Vec<&str> = held
        .as_array()
        .map(|a| a.iter().filter_map(|d| d["last_error"].as_str()).collect())
        .unwrap_or_default();
    assert!(!reasons.is_empty(), "{held}");
    for reason in reasons {
        assert!(
            reason.contains("performed 30745-4 (LN) differs from ordered 24627-2 (LN)"),
            "{reason}"
        );
    }
}
