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

// The whole exchange takes ~2 s; it hung once in a loaded full-suite run (2026-12-06, not
// reproduced alone): after 180 s the script prints every thread's stack and exits, so the
// suite is not held and the failure says where it stopped.
const SCRIPT: &str = r#"
import json, sys
import faulthandler
faulthandler.dump_traceback_later(180, exit=True)
# pynetdicom 3.0's send_n_action pauses its reactor by clearing a checkpoint and waiting for
# `_is_paused`, which the running reactor also sets for a moment on every loop before
# `get_msg(block=False)`; a GIL switch in that moment lets the reactor take our N-ACTION-RSP and
# send_n_action waits forever (seen under load). A long switch interval keeps the reactor's few
# bytecodes together; the threads still switch whenever one blocks on I/O or sleeps.
sys.setswitchinterval(0.5)
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
ae.dimse_timeout = 120
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
    end = time.time() + 120
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

/// A modality's own storage commitment SCU listening for reports on a new association
/// (pynetdicom, SCP role for the archive accepted); each report is appended to `log` as JSON.
const LISTENER: &str = r#"
import json, sys
from pynetdicom import AE, evt
from pynetdicom.sop_class import StorageCommitmentPushModel as SC
port, log = int(sys.argv[1]), sys.argv[2]

def on_report(event):
    info = event.event_information
    with open(log, "a") as f:
        f.write(json.dumps({
            "type": event.event_type,
            "tx": info.TransactionUID,
            "ok": [r.ReferencedSOPInstanceUID for r in info.get("ReferencedSOPSequence", [])],
            "failed": [r.ReferencedSOPInstanceUID for r in info.get("FailedSOPSequence", [])],
        }) + "\n")
    return 0x0000, None

ae = AE(ae_title="MOD1")
ae.add_supported_context(SC, scu_role=True, scp_role=True)
ae.start_server(("127.0.0.1", port), block=True, evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])
"#;

/// N-ACTION whose report the requester refuses on this association (0x0110): the archive
/// must deliver it later on a new one.
const REFUSING: &str = r#"
import sys
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import StorageCommitmentPushModel as SC
port, tx, cls, inst = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
got = []
def on_report(event):
    got.append(1)
    return 0x0110, None
ae = AE(ae_title="MOD1")
ae.add_requested_context(SC)
assoc = ae.associate("127.0.0.1", port, ae_title="PACS", evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])
assert assoc.is_established
ds = Dataset()
ds.TransactionUID = tx
i = Dataset()
i.ReferencedSOPClassUID = cls
i.ReferencedSOPInstanceUID = inst
ds.ReferencedSOPSequence = [i]
status, _ = assoc.send_n_action(ds, 1, SC, "1.2.840.10008.1.20.1.1")
assert status.Status == 0, status
import time
end = time.time() + 10
while not got and time.time() < end:
    time.sleep(0.05)
assert got, "no report on the association"
assoc.release()
"#;

#[test]
fn a_report_the_requester_missed_is_delivered_on_a_new_association_after_kill_9() {
    let (tmp, data) = data_dir();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let log = tmp.path().join("reports.jsonl");
    let mut listener = python()
        .arg("-c")
        .arg(LISTENER)
        .arg(port.to_string())
        .arg(&log)
        .spawn()
        .expect("listener");
    let cfg = tmp.path().join("pacs.toml");
    std::fs::write(
        &cfg,
        format!("[[nodes]]\nae_title = \"MOD1\"\nhost = \"127.0.0.1\"\nport = {port}\n"),
    )
    .expect("config");
    let cfg_args = ["--config", cfg.to_str().expect("utf-8")];
    let mut server = Server::start_with(
        &data,
        ServerOptions {
            extra_args: &cfg_args,
            ..Default::default()
        },
    );
    let mr = samples().join("mr_explicit.dcm");
    storescu(&server, std::slice::from_ref(&mr));
    let (uid, class) = class_and_uid(&mr);
    let tx = "1.2.826.0.1.3680043.2.1143.77";
    let out = run(python().arg("-c").arg(REFUSING).args([
        server.port().as_str(),
        tx,
        class.as_str(),
        uid.as_str(),
    ]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Killed the moment after: the request was recorded before it was acknowledged.
    server.kill9();
    let mut server = Server::start_with(
        &data,
        ServerOptions {
            extra_args: &cfg_args,
            ..Default::default()
        },
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let report = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().next() {
            break serde_json::from_str::<Value>(line).expect("report json");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no report on a new association"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let _ = listener.kill();
    let _ = listener.wait();
    assert_eq!(report["tx"], tx, "{report}");
    assert_eq!(report["type"], 1, "{report}");
    assert_eq!(report["ok"], serde_json::json!([uid]), "{report}");
    server.terminate();
    let index = RocksIndex::open_read_only(data.join("index")).expect("index");
    assert!(index.pending_commitments(10).expect("pending").is_empty());
}
