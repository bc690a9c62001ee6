//! MPPS SCP with pynetdicom: N-CREATE IN PROGRESS starts the scheduled order, N-SET
//! COMPLETED takes it off the worklist; the refusals of PS3.4 F.7 (duplicate, unknown, no
//! longer updatable, wrong status, missing attributes) come with their statuses; the outbox
//! announces each new status with the order's accession number.

use pacs_storage::events::{EventKind, Outbox};
use pacs_storage::index::RocksIndex;
use pacs_storage::mpps::{MppsStatus, PerformedSteps};
use pacs_storage::orders::{OrderStatus, Orders};
use serde_json::Value;

use crate::support::*;
use crate::worklist::seed;

const SCRIPT: &str = r#"
import json, sys
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import ModalityPerformedProcedureStep as MPPS
from pynetdicom.sop_class import ModalityWorklistInformationFind as MWL

port = int(sys.argv[1])
ae = AE(ae_title="CT1")
ae.add_requested_context(MPPS)
ae.add_requested_context(MWL)
assoc = ae.associate("127.0.0.1", port, ae_title="PACS")
assert assoc.is_established
out = {}

def status_of(result):
    status = result[0]
    return {"status": status.Status if status else None,
            "comment": str(status.get("ErrorComment", "")) if status else ""}

def mwl(acc):
    q = Dataset()
    q.AccessionNumber = acc
    sps = Dataset()
    sps.ScheduledProcedureStepStatus = ""
    q.ScheduledProcedureStepSequence = [sps]
    found = []
    for status, ident in assoc.send_c_find(q, MWL):
        if status and status.Status in (0xFF00, 0xFF01) and ident is not None:
            found.append(ident.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStatus)
    return found

def create(uid, status="IN PROGRESS", with_ssa=True):
    ds = Dataset()
    if with_ssa:
        item = Dataset()
        item.AccessionNumber = "A100"
        item.StudyInstanceUID = "1.2.3.4"
        item.ScheduledProcedureStepID = "A100"
        ds.ScheduledStepAttributesSequence = [item]
    ds.PatientName = "Müller^Anna"
    ds.PatientID = "P1"
    ds.PerformedProcedureStepID = "PPS1"
    ds.PerformedStationAETitle = "CT1"
    ds.PerformedProcedureStepStartDate = "20261205"
    ds.PerformedProcedureStepStartTime = "093500"
    ds.PerformedProcedureStepStatus = status
    ds.Modality = "CT"
    ds.SpecificCharacterSet = "ISO_IR 192"
    return status_of(assoc.send_n_create(ds, MPPS, uid))

uid = generate_uid()
out["create"] = create(uid)
out["duplicate"] = create(uid)
out["create_completed"] = create(generate_uid(), status="COMPLETED")
out["create_without_ssa"] = create(generate_uid(), with_ssa=False)
out["mwl_started"] = mwl("A100")

done = Dataset()
done.PerformedProcedureStepStatus = "COMPLETED"
done.PerformedProcedureStepEndDate = "20261205"
done.PerformedProcedureStepEndTime = "100000"
code = Dataset()
code.CodeValue = "24627-2"
code.CodingSchemeDesignator = "LN"
code.CodeMeaning = "CT Chest"
done.ProcedureCodeSequence = [code]
series = Dataset()
series.SeriesInstanceUID = "1.2.3.4.5"
ref = Dataset()
ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
ref.ReferencedSOPInstanceUID = "1.2.3.4.5.6"
series.ReferencedImageSequence = [ref]
done.PerformedSeriesSequence = [series]
out["set_completed"] = status_of(assoc.send_n_set(done, MPPS, uid))
out["set_again"] = status_of(assoc.send_n_set(done, MPPS, uid))
out["set_unknown"] = status_of(assoc.send_n_set(done, MPPS, generate_uid()))
bad = Dataset()
bad.PerformedProcedureStepStatus = "PAUSED"
out["mwl_after"] = mwl("A100")
assoc.release()
out["uid"] = uid
print(json.dumps(out))
"#;

#[test]
fn pynetdicom_mpps_moves_the_order_and_refuses_what_f7_refuses() {
    let (_tmp, data) = data_dir();
    seed(&data);
    let mut server = Server::start(&data);
    let out = run(python().arg("-c").arg(SCRIPT).arg(server.port()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json from the script");
    assert_eq!(v["create"]["status"], 0, "{v}");
    assert_eq!(v["duplicate"]["status"], 0x0111, "{v}");
    assert_eq!(v["create_completed"]["status"], 0x0106, "{v}");
    assert_eq!(v["create_without_ssa"]["status"], 0x0120, "{v}");
    assert_eq!(v["mwl_started"], serde_json::json!(["STARTED"]), "{v}");
    assert_eq!(v["set_completed"]["status"], 0, "{v}");
    assert_eq!(v["set_again"]["status"], 0x0110, "{v}");
    assert!(
        v["set_again"]["comment"]
            .as_str()
            .unwrap_or("")
            .contains("no longer"),
        "{v}"
    );
    assert_eq!(v["set_unknown"]["status"], 0x0112, "{v}");
    assert_eq!(v["mwl_after"], serde_json::json!([]), "{v}");

    server.terminate();
    let index = RocksIndex::open_read_only(data.join("index")).expect("index");
    let order = index.order("A100").expect("read").expect("order");
    assert_eq!(order.status, OrderStatus::Completed);
    let uid = v["uid"].as_str().expect("uid");
    assert_eq!(order.performed_steps, [uid]);
    let step = index.performed_step(uid).expect("read").expect("step");
    assert_eq!(step.status, MppsStatus::Completed);
    assert_eq!(step.procedure_codes[0].value, "24627-2");
    assert_eq!(step.series[0].sop_instance_uids, ["1.2.3.4.5.6"]);
    assert_eq!(step.patient_name, "Müller^Anna");
    assert_eq!(step.reported_by, "CT1");
    let mpps_events: Vec<_> = index
        .events_after(0, 100)
        .expect("events")
        .into_iter()
        .filter(|e| matches!(e.kind, EventKind::MppsInProgress | EventKind::MppsCompleted))
        .map(|e| (e.kind, e.accession_number))
        .collect();
    assert_eq!(
        mpps_events,
        [
            (EventKind::MppsInProgress, Some("A100".to_string())),
            (EventKind::MppsCompleted, Some("A100".to_string()))
        ]
    );
}
