//! Editing the database behind the log's back must show in `verify`, naming the record.

use std::path::Path;

use rocksdb::DB;

use super::{entry, write_and_close};
use crate::audit::chain::expected_hash;
use crate::audit::db::{record_key, HEAD_KEY};
use crate::audit::{AuditLog, AuditRecord, Problem, VerifyReport};

const N: usize = 10;

/// A closed log of `N` records, then `tamper` on the raw database, then a read-only verify.
fn tampered(tamper: impl FnOnce(&DB)) -> (tempfile::TempDir, VerifyReport) {
    let dir = tempfile::tempdir().expect("tempdir");
    write_and_close(dir.path(), N);
    {
        let db = DB::open_default(dir.path()).expect("raw open");
        tamper(&db);
    }
    let report = verify(dir.path());
    (dir, report)
}

fn verify(dir: &Path) -> VerifyReport {
    AuditLog::open_read_only(dir)
        .expect("read-only")
        .verify()
        .expect("verify")
}

fn read(db: &DB, seq: u64) -> AuditRecord {
    let bytes = db.get(record_key(seq)).expect("get").expect("present");
    serde_json::from_slice(&bytes).expect("decode")
}

fn write(db: &DB, record: &AuditRecord) {
    let bytes = serde_json::to_vec(record).expect("encode");
    db.put(record_key(record.seq), bytes).expect("put");
}

#[test]
fn audit_tamper_changed_field_is_reported() {
    let (_dir, report) = tampered(|db| {
        let mut r = read(db, 5);
        r.entry.user = "mallory".into();
        write(db, &r);
    });
    assert_eq!(report.problems, [Problem::Altered { seq: 5 }], "{report}");
    assert_eq!(
        report.problems[0].to_string(),
        "record 5: content altered (hash mismatch)"
    );
    assert_eq!(report.records, N as u64);
}

#[test]
fn audit_tamper_non_canonical_bytes_are_reported() {
    // Same decoded content (an unknown field is ignored), different stored bytes.
    let (_dir, report) = tampered(|db| {
        let bytes = db.get(record_key(4)).expect("get").expect("present");
        let mut edited = b"{\"note\":\"x\",".to_vec();
        edited.extend_from_slice(&bytes[1..]);
        db.put(record_key(4), edited).expect("put");
    });
    assert_eq!(
        report.problems,
        [Problem::NotCanonical { seq: 4 }],
        "{report}"
    );
}

#[test]
fn audit_tamper_deleted_middle_record_is_reported() {
    let (_dir, report) = tampered(|db| db.delete(record_key(5)).expect("delete"));
    assert_eq!(
        report.problems,
        [Problem::Missing { first: 5, last: 5 }],
        "{report}"
    );
    assert_eq!(
        report.problems[0].to_string(),
        "record 5: missing (seq gap; deleted?)"
    );
    assert_eq!(report.records, N as u64 - 1);
}

#[test]
fn audit_tamper_deleted_last_record_is_reported_and_stays_visible() {
    let (dir, report) = tampered(|db| db.delete(record_key(10)).expect("delete"));
    assert_eq!(
        report.problems,
        [Problem::HeadMismatch {
            head_seq: 10,
            last_seq: Some(9)
        }],
        "{report}"
    );
    assert!(report.problems[0].to_string().contains("tail truncated"));

    // A restarted writer continues after the head, so the cut stays a visible gap.
    let log = AuditLog::open(dir.path()).expect("reopen");
    log.record(entry(1, 0)).expect("record");
    log.flush().expect("flush");
    let report = log.verify().expect("verify");
    assert_eq!(
        report.problems,
        [Problem::Missing {
            first: 10,
            last: 10
        }],
        "{report}"
    );
}

#[test]
fn audit_tamper_rehashed_record_breaks_the_chain_at_the_next() {
    let (_dir, report) = tampered(|db| {
        let mut r = read(db, 5);
        r.entry.patient_id = Some("SOMEONE-ELSE".into());
        r.hash = expected_hash(&r).expect("hash");
        write(db, &r);
    });
    assert_eq!(
        report.problems,
        [Problem::ChainBroken { seq: 6 }],
        "{report}"
    );
    assert!(report.problems[0]
        .to_string()
        .starts_with("record 6: chain broken"));
}

#[test]
fn audit_tamper_inserted_record_is_reported() {
    // A forged record 11 after the head, with a correct own hash and link.
    let (_dir, report) = tampered(|db| {
        let mut r = read(db, 10);
        r.prev_hash = r.hash.clone();
        r.seq = 11;
        r.hash = expected_hash(&r).expect("hash");
        write(db, &r);
    });
    assert_eq!(
        report.problems,
        [Problem::HeadMismatch {
            head_seq: 10,
            last_seq: Some(11)
        }],
        "{report}"
    );
    assert!(report.problems[0].to_string().contains("records added"));
}

#[test]
fn audit_tamper_head_and_garbage_are_reported() {
    let (_dir, report) = tampered(|db| {
        db.delete(HEAD_KEY).expect("delete head");
        db.put(record_key(3), b"not json").expect("put");
    });
    assert_eq!(report.problems.len(), 2, "{report}");
    assert!(matches!(
        report.problems[0],
        Problem::Undecodable { seq: 3, .. }
    ));
    assert_eq!(report.problems[1], Problem::HeadMissing { last_seq: 10 });
    assert!(report.to_string().contains("record 3: undecodable"));
}
