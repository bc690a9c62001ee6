//! Modality worklist SCP with dcmtk `findscu -W` and pynetdicom: orders in the index become
//! scheduled procedure steps matched on modality, station, date, time and patient, answered
//! with the PS3.4 K.6 return keys in the order's character set; closed orders are not listed.

use std::path::Path;

use dicom_dictionary_std::tags;
use dicom_object::{open_file, InMemDicomObject};
use pacs_storage::index::RocksIndex;
use pacs_storage::order_intake::{receive, Intent};
use pacs_storage::orders::{
    Code, Order, OrderPatient, OrderSource, OrderStatus, Priority, ScheduledStep,
};

use crate::support::*;

fn order(acc: &str, patient: (&str, &str), modality: &str, station: &str, start: &str) -> Order {
    Order {
        accession_number: acc.into(),
        placer_order_number: Some(format!("PL-{acc}")),
        filler_order_number: None,
        status: OrderStatus::Scheduled,
        patient: OrderPatient {
            id: patient.0.into(),
            issuer: "HOSP".into(),
            name: patient.1.into(),
            birth_date: "19800214".into(),
            sex: "F".into(),
        },
        study_instance_uid: String::new(),
        requested_procedure_id: String::new(),
        procedure: Some(Code {
            value: "24627-2".into(),
            scheme: "LN".into(),
            meaning: "CT Chest".into(),
        }),
        procedure_description: "CT Chest".into(),
        priority: Priority::Routine,
        reason: String::new(),
        requesting_physician: "House^Gregory".into(),
        referring_physician: String::new(),
        admission_id: String::new(),
        step: ScheduledStep {
            id: String::new(),
            modality: modality.into(),
            station_ae_title: station.into(),
            start_date: start[..8].into(),
            start_time: start[8..].into(),
            description: "CT Chest".into(),
            ..Default::default()
        },
        charset: "ISO_IR 100".into(),
        source: OrderSource::Hl7,
        created_ms: 0,
        updated_ms: 0,
        performed_steps: Vec::new(),
    }
}

/// Orders written to the index of `data` before the server opens it.
pub(crate) fn seed(data: &Path) {
    let index = RocksIndex::open(data.join("index")).expect("index");
    let orders = [
        order("A100", ("P1", "Müller^Anna"), "CT", "CT1", "20261205093000"),
        order("A101", ("P2", "Doe^Jane"), "CT", "CT2", "20261205140000"),
        order("A102", ("P3", "Moe^Jim"), "MR", "MR1", "20261205100000"),
        order("A103", ("P4", "Mueller^Max"), "CT", "CT1", "20261206080000"),
        order("A104", ("P5", "Gone^Greta"), "CT", "CT1", "20261205110000"),
    ];
    for o in orders {
        receive(&index, o, Intent::Place, 1).expect("place");
    }
    let cancel = order("A104", ("P5", "Gone^Greta"), "CT", "CT1", "20261205110000");
    receive(&index, cancel, Intent::Cancel, 2).expect("cancel");
}

/// `findscu -W` with `keys`, answers extracted to files; the answers, in order.
pub(crate) fn findscu_w(server: &Server, out: &Path, keys: &[&str]) -> Vec<InMemDicomObject> {
    std::fs::create_dir_all(out).expect("out dir");
    let mut cmd = dcmtk("findscu");
    cmd.args(["-W", "-aec", AE, "-X", "-od"]).arg(out);
    cmd.args(["127.0.0.1", &server.port()]);
    for k in keys {
        cmd.args(["-k", k]);
    }
    let run_out = run(&mut cmd);
    assert!(
        run_out.status.success(),
        "{}",
        String::from_utf8_lossy(&run_out.stderr)
    );
    let mut files: Vec<_> = std::fs::read_dir(out)
        .expect("read out")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| open_file(f).expect("answer").into_inner())
        .collect()
}

pub(crate) fn text(obj: &InMemDicomObject, tag: dicom_core::Tag) -> String {
    obj.get(tag)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
        .unwrap_or_default()
}

pub(crate) fn step(obj: &InMemDicomObject) -> &InMemDicomObject {
    obj.get(tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE)
        .and_then(|e| e.items())
        .and_then(|i| i.first())
        .expect("scheduled procedure step item")
}

#[test]
fn findscu_worklist_matches_modality_station_date_and_names() {
    let (tmp, data) = data_dir();
    seed(&data);
    let server = Server::start(&data);
    let base = [
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "AccessionNumber",
        "StudyInstanceUID",
        "RequestedProcedureID",
        "RequestedProcedureDescription",
        "RequestedProcedureCodeSequence",
        "ScheduledProcedureStepSequence[0].ScheduledStationAETitle",
        "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime",
        "ScheduledProcedureStepSequence[0].ScheduledProcedureStepID",
        "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStatus",
    ];
    // CT today: two steps (the cancelled one and tomorrow's are not listed), in time order.
    let mut keys = base.to_vec();
    keys.push("ScheduledProcedureStepSequence[0].Modality=CT");
    keys.push("ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate=20261205");
    let got = findscu_w(&server, &tmp.path().join("ct"), &keys);
    let accs: Vec<_> = got
        .iter()
        .map(|o| text(o, tags::ACCESSION_NUMBER))
        .collect();
    assert_eq!(accs, ["A100", "A101"]);
    let first = &got[0];
    assert_eq!(text(first, tags::SPECIFIC_CHARACTER_SET), "ISO_IR 100");
    assert_eq!(text(first, tags::PATIENT_NAME), "Müller^Anna");
    assert_eq!(text(first, tags::PATIENT_ID), "P1");
    assert_eq!(text(first, tags::PATIENT_BIRTH_DATE), "19800214");
    assert_eq!(text(first, tags::REQUESTED_PROCEDURE_ID), "A100");
    assert!(text(first, tags::STUDY_INSTANCE_UID).starts_with("2.25."));
    let code = first
        .get(tags::REQUESTED_PROCEDURE_CODE_SEQUENCE)
        .and_then(|e| e.items())
        .and_then(|i| i.first())
        .expect("procedure code item");
    assert_eq!(text(code, tags::CODE_VALUE), "24627-2");
    assert_eq!(text(code, tags::CODING_SCHEME_DESIGNATOR), "LN");
    let s = step(first);
    assert_eq!(text(s, tags::MODALITY), "CT");
    assert_eq!(text(s, tags::SCHEDULED_STATION_AE_TITLE), "CT1");
    assert_eq!(
        text(s, tags::SCHEDULED_PROCEDURE_STEP_START_DATE),
        "20261205"
    );
    assert_eq!(text(s, tags::SCHEDULED_PROCEDURE_STEP_START_TIME), "093000");
    assert_eq!(text(s, tags::SCHEDULED_PROCEDURE_STEP_ID), "A100");
    assert_eq!(text(s, tags::SCHEDULED_PROCEDURE_STEP_STATUS), "SCHEDULED");

    // One station over a date range.
    let mut keys = base.to_vec();
    keys.push("ScheduledProcedureStepSequence[0].ScheduledStationAETitle=CT1");
    keys.push(
        "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate=20261201-20261231",
    );
    let got = findscu_w(&server, &tmp.path().join("station"), &keys);
    let accs: Vec<_> = got
        .iter()
        .map(|o| text(o, tags::ACCESSION_NUMBER))
        .collect();
    assert_eq!(accs, ["A100", "A103"]);

    // Patient name wildcard (case-sensitive by default) and a time range.
    let mut keys = base.to_vec();
    keys.push("PatientName=M*");
    keys.push("ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime=0900-1200");
    let got = findscu_w(&server, &tmp.path().join("names"), &keys);
    let accs: Vec<_> = got
        .iter()
        .map(|o| text(o, tags::ACCESSION_NUMBER))
        .collect();
    assert_eq!(accs, ["A100", "A102"]);

    // Nothing scheduled for this modality.
    let mut keys = base.to_vec();
    keys.push("ScheduledProcedureStepSequence[0].Modality=US");
    assert!(findscu_w(&server, &tmp.path().join("none"), &keys).is_empty());
}

#[test]
fn pynetdicom_worklist_query_and_bad_identifier() {
    let (_tmp, data) = data_dir();
    seed(&data);
    let server = Server::start(&data);
    let script = r#"
import json, sys
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind
port = int(sys.argv[1])
ae = AE(ae_title="MODALITY")
ae.add_requested_context(ModalityWorklistInformationFind)
assoc = ae.associate("127.0.0.1", port, ae_title="PACS")
assert assoc.is_established
out = {}
ds = Dataset()
ds.PatientName = "doe*"
ds.PatientID = ""
ds.AccessionNumber = ""
sps = Dataset()
sps.Modality = "CT"
sps.ScheduledProcedureStepStartDate = ""
ds.ScheduledProcedureStepSequence = [sps]
found = []
for status, ident in assoc.send_c_find(ds, ModalityWorklistInformationFind):
    if status and status.Status in (0xFF00, 0xFF01) and ident is not None:
        found.append([str(ident.PatientName), ident.AccessionNumber])
    elif status:
        out["final"] = status.Status
out["case_sensitive"] = found
bad = Dataset()
bad.AccessionNumber = ""
sps = Dataset()
sps.ScheduledProcedureStepStartDate = "tomorrow"
bad.ScheduledProcedureStepSequence = [sps]
for status, ident in assoc.send_c_find(bad, ModalityWorklistInformationFind):
    if status:
        out["bad"] = status.Status
        out["bad_comment"] = str(status.get("ErrorComment", ""))
assoc.release()
print(json.dumps(out))
"#;
    let out = run(python().arg("-c").arg(script).arg(server.port()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json from the script");
    assert_eq!(v["final"], 0, "{v}");
    // Names match case-sensitively unless configured otherwise: "doe*" finds nothing.
    assert_eq!(v["case_sensitive"], serde_json::json!([]), "{v}");
    assert_eq!(v["bad"], 0xA900, "{v}");
    assert!(
        v["bad_comment"].as_str().unwrap_or("").contains("00400002"),
        "{v}"
    );
}
