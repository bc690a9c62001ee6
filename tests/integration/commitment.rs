//! Storage commitment (push model) with pynetdicom: N-ACTION answered, then N-EVENT-REPORT on
//! the same association naming what is safely stored and why the rest failed (unknown
//! instance, class conflict, a blob whose bytes changed); 10,000 references in one request;
//! malformed requests refused with their statuses; delivered requests leave no record.

use pacs_storage::commitment::Commitments;
use pacs_storage::index::RocksIndex;
use serde_json::Value;

use crate::support::*;

/// SOP Instance UID and SOP Class UID of a Part 10 file.
fn class_and_uid(path: &std::path::Path) -> (String, String) {
    let obj = dicom_object::open_file(path).expect("open");
    let meta = obj.meta();
    let clean = |s: &str| s.trim_end_matches('\0').to_string();
    (
        clean(meta.media_storage_sop_instance_uid()),
        clean(meta.media_storage_sop_class_uid()),
    )
}

const SCRIPT: &str = r#"
import json, sys
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import StorageCommitmentPushModel as SC

port = int(sys.argv[1])
refs = json.loads(sys.argv[2])
reports = []

def on_report(event):
    info = event.event_information
    reports.append({
        "type": event.event_type,
        "tx": info.TransactionUID,
        "ok": [r.ReferencedSOPInstanceUID for r in info.get("ReferencedSOPSequence", [])],
        "failed": [[r.ReferencedSOPInstanceUID, r.FailureReason] for r in info.get("FailedSOPSequence", [])],
    })
    return 0x0000, None

ae = AE(ae_title="MOD1")
ae.add_requested_context(SC)
assoc = ae.associate("127.0.0.1", port, ae_title="PACS",
                     evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])
assert assoc.is_established
out = {}

def action(items, tx=True):
    ds = Dataset()
    if tx:
        ds.TransactionUID = generate_uid()
    seq = []
    for cls, inst in items:
        i = Dataset()
        i.ReferencedSOPClassUID = cls
        i.ReferencedSOPInstanceUID = inst
        seq.append(i)
    ds.ReferencedSOPSequence = seq
    status, _ = assoc.send_n_action(ds, 1, SC, "1.2.840.10008.1.20.1.1")
    return (status.Status if status else None, str(status.get("ErrorComment", "")) if status else "", ds.get("TransactionUID", ""))

import time
def wait_reports(n):
    end = time.time() + 30
    while len(reports) < n and time.time() < end:
        time.sleep(0.05)

out["mixed"] = action(refs)
wait_reports(1)
many = [["1.2.840.10008.5.1.4.1.1.4", "1.2.3.%d" % i] for i in range(10000)]
out["many"] = action(many)
wait_reports(2)
out["no_tx"] = action(refs, tx=False)
out["no_refs"] = action([])
assoc.release()
out["reports"] = reports
print(json.dumps(out))
"#;

#[test]
fn pynetdicom_commitment_reports_stored_and_failed_instances() {
    let (_tmp, data) = data_dir();
    let mut server = Server::start(&data);
    let mr = samples().join("mr_explicit.dcm");
    let ct = samples().join("ct_16bit_signed_implicit.dcm");
    storescu(&server, &[mr.clone(), ct.clone()]);
    let (mr_uid, mr_class) = class_and_uid(&mr);
    let (ct_uid, ct_class) = class_and_uid(&ct);
    // The CT's bytes change on disk: it is not committed.
    let blob = server.blob_path(&ct_uid);
    let mut raw = std::fs::read(&blob).expect("blob");
    let last = raw.len() - 1;
    raw[last] ^= 0x01;
    std::fs::write(&blob, &raw).expect("tamper");
    let refs = serde_json::json!([
        [mr_class, mr_uid],
        [ct_class, ct_uid],
        [ct_class, mr_uid],
        [mr_class, "1.2.3.999"],
    ]);
    let out = run(python()
        .arg("-c")
        .arg(SCRIPT)
        .arg(server.port())
        .arg(refs.to_string()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json from the script");
    assert_eq!(v["mixed"][0], 0, "{v}");
    assert_eq!(v["many"][0], 0, "{v}");
    assert_eq!(v["no_tx"][0], 0x0120, "{v}");
    assert_eq!(v["no_refs"][0], 0x0120, "{v}");
    let reports = v["reports"].as_array().expect("reports");
    assert_eq!(reports.len(), 2, "{v}");
    let mixed = &reports[0];
    assert_eq!(mixed["type"], 2, "{mixed}");
    assert_eq!(mixed["tx"], v["mixed"][2]);
    assert_eq!(mixed["ok"], serde_json::json!([mr_uid]), "{mixed}");
    let failed = mixed["failed"].as_array().expect("failed");
    let reason = |uid: &str| {
        failed
            .iter()
            .filter(|f| f[0] == uid)
            .map(|f| f[1].as_u64().unwrap_or(0))
            .collect::<Vec<_>>()
    };
    assert_eq!(reason(&ct_uid), [0x0110], "tampered: {mixed}");
    assert_eq!(reason(&mr_uid), [0x0119], "class conflict: {mixed}");
    assert_eq!(reason("1.2.3.999"), [0x0112], "unknown: {mixed}");
    let many = &reports[1];
    assert_eq!(many["failed"].as_array().map(Vec::len), Some(10000));
    assert_eq!(many["ok"], serde_json::json!([]));

    server.terminate();
    let index = RocksIndex::open_read_only(data.join("index")).expect("index");
    let pending = index.pending_commitments(10).expect("pending");
    assert!(
        pending.is_empty(),
        "delivered reports leave no record: {pending:?}"
    );
}
