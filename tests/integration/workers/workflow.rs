//! The department's loop, end to end through the workers: an order is scheduled, the modality
//! reports it performed (MPPS over pynetdicom), its images arrive with the accession number;
//! billing charges the performed code (and holds a study whose performed code is not the
//! ordered one) and the EHR's ImagingStudy is basedOn the ServiceRequest.

use serde_json::Value;

use super::receiver::{Received, Receiver};
use super::start;
use crate::support::*;
use crate::worklist::seed;

/// N-CREATE then N-SET COMPLETED for `accession`, performed as `code` (LOINC).
const MPPS: &str = r#"
import sys
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import ModalityPerformedProcedureStep as MPPS
port, accession, code = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ae = AE(ae_title="CT1")
ae.add_requested_context(MPPS)
assoc = ae.associate("127.0.0.1", port, ae_title="PACS")
assert assoc.is_established
uid = generate_uid()
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
"#;

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
    // A100 is performed as ordered (24627-2); A101 as something else.
    for (acc, code) in [("A100", "24627-2"), ("A101", "30745-4")] {
        let out = run(python()
            .arg("-c")
            .arg(MPPS)
            .args([server.port().as_str(), acc, code]));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut images = Vec::new();
    for acc in ["A100", "A101"] {
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
        images.push(path);
    }
    storescu(&server, &images);
    let is = |r: &Received, prefix: &str| r.uri.starts_with(prefix);
    let got = receiver.wait(
        "one billing transaction and two ImagingStudy updates",
        |r| {
            r.iter().filter(|x| is(x, "/billing")).count() == 1
                && r.iter().filter(|x| is(x, "/fhir/ImagingStudy")).count() == 2
        },
        &server,
    );
    let charge: Value = got
        .iter()
        .find(|r| is(r, "/billing"))
        .map(Received::json)
        .expect("billing");
    let item = &charge["entry"][0]["resource"];
    assert_eq!(item["code"]["coding"][0]["code"], "24627-2", "{charge}");
    assert_eq!(item["identifier"][0]["value"], "A100-24627-2", "{charge}");
    let studies: Vec<Value> = got
        .iter()
        .filter(|r| is(r, "/fhir/ImagingStudy"))
        .map(Received::json)
        .collect();
    for acc in ["A100", "A101"] {
        let study = studies
            .iter()
            .find(|s| s["basedOn"][0]["identifier"]["value"] == acc)
            .unwrap_or_else(|| panic!("an ImagingStudy based on {acc}: {studies:?}"));
        assert_eq!(
            study["basedOn"][0]["reference"],
            format!("ServiceRequest/{acc}")
        );
    }
    let held = server.json("/api/events?worker=billing&state=held");
    assert_eq!(held.as_array().map(Vec::len), Some(1), "{held}");
    let reason = held[0]["last_error"].as_str().unwrap_or_default();
    assert!(
        reason.contains("performed 30745-4 (LN) differs from ordered 24627-2 (LN)"),
        "{reason}"
    );
}
