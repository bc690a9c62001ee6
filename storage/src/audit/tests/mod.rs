//! Audit trail tests against a real RocksDB in a temporary directory.

mod export;
mod log;
mod tamper;

use std::path::Path;

use super::{AuditEntry, AuditFilter, AuditLog, AuditRecord, Interface, Outcome};

/// The `i`-th entry of writer `thread`: actions, outcomes and patients vary with `i`, and
/// `detail` says who wrote it in which order.
fn entry(thread: usize, i: usize) -> AuditEntry {
    let (interface, action) = match i % 3 {
        0 => (Interface::Http, "wado.retrieve"),
        1 => (Interface::Http, "qido.search"),
        _ => (Interface::Dimse, "dimse.c-store"),
    };
    let outcome = if i % 10 == 9 {
        Outcome::Denied
    } else {
        Outcome::Success
    };
    let mut e = AuditEntry::new(
        interface,
        format!("user{thread}"),
        format!("10.0.0.{thread}:4{i:04}"),
        action,
        outcome,
    );
    e.patient_id = Some(format!("P{}", i % 5));
    e.study_uid = Some(format!("1.2.3.{}", i % 7));
    e.detail = Some(format!("{thread}/{i}"));
    e
}

/// Writes `n` entries from one thread and closes the log.
fn write_and_close(dir: &Path, n: usize) {
    let log = AuditLog::open(dir).expect("open");
    for i in 0..n {
        log.record(entry(0, i)).expect("record");
    }
    log.close().expect("close");
}

/// Every record, oldest first.
fn all(log: &AuditLog) -> Vec<AuditRecord> {
    log.query(&AuditFilter::default(), 0, usize::MAX, false)
        .expect("query")
}
