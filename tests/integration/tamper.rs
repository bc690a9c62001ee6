//! Offline checks after damage: `pacs audit verify` on an audit database edited behind the
//! server's back, `pacs verify` on blob files that vanished.

use std::path::Path;
use std::process::Output;

use crate::security::pacs;
use crate::support::*;

fn audit_verify(data: &Path) -> Output {
    run(pacs().args(["audit", "verify", "--data"]).arg(data))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Key of audit record `seq` in the audit database (storage/src/audit/db.rs).
fn record_key(seq: u64) -> [u8; 9] {
    let mut key = [b'r'; 9];
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

#[test]
fn audit_verify_fails_on_an_edited_record() {
    let (_tmp, data) = data_dir();
    let mut server = Server::start(&data);
    storescu(&server, &sample_files());
    assert_eq!(server.http("/api/statistics").0, 200);
    assert!(server.terminate().success());

    let out = audit_verify(&data);
    assert!(
        out.status.success() && stdout(&out).contains("chain intact"),
        "before: {}",
        stdout(&out)
    );

    // Someone with access to the files changes who did something in record 2.
    {
        let db = rocksdb::DB::open_default(data.join("audit")).expect("open the audit database");
        let bytes = db
            .get(record_key(2))
            .expect("read")
            .expect("record 2 exists");
        let mut record: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON record");
        assert_eq!(record["seq"], 2, "{record}");
        record["user"] = serde_json::json!("mallory");
        db.put(record_key(2), serde_json::to_vec(&record).expect("encode"))
            .expect("write");
    }

    let out = audit_verify(&data);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "after: {text}");
    assert!(text.contains("record 2: content altered"), "{text}");
    assert!(!text.contains("chain intact"), "{text}");
}

#[test]
fn verify_lists_vanished_blobs_and_fails() {
    let (_tmp, data) = data_dir();
    let server = Server::start(&data);
    storescu(&server, &sample_files());
    let verify = || run(pacs().args(["verify", "--data"]).arg(&data));

    // Beside the running server, as the README says it may be run.
    let out = verify();
    assert!(out.status.success(), "before: {}", stdout(&out));
    assert!(
        stdout(&out).contains("checked 10 instances")
            && stdout(&out).contains("0 changed or missing"),
        "{}",
        stdout(&out)
    );

    let (gone, _) = file_uids(&samples().join("mr_rle.dcm"));
    let blob = server.blob_path(&gone);
    std::fs::remove_file(&blob).expect("remove a blob");
    let out = verify();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let key = blob
        .strip_prefix(data.join("blobs"))
        .expect("under blobs")
        .to_string_lossy()
        .into_owned();
    assert!(
        text.lines().any(|l| l.starts_with(&format!("{gone}: "))
            && l.contains(&key)
            && l.contains("missing")),
        "the vanished instance named with its blob: {text}"
    );
    assert!(text.contains("1 changed or missing"), "{text}");
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("missing") && l.contains(": blob"))
            .count(),
        1,
        "only the vanished one is listed: {text}"
    );
}
