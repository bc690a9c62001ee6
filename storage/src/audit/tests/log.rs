//! Appending, reading back, reopening.

use std::sync::Arc;

use super::{all, entry, write_and_close};
use crate::audit::{
    AuditError, AuditFilter, AuditLog, AuditRecord, AuditTrail, Interface, Outcome, GENESIS_HASH,
};

const THREADS: usize = 4;
const PER_THREAD: usize = 250;

fn assert_chain(records: &[AuditRecord]) {
    let mut prev = GENESIS_HASH.to_string();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1, "seq without gaps");
        assert_eq!(
            r.prev_hash, prev,
            "record {} links to the one before",
            r.seq
        );
        assert_eq!(r.hash.len(), 64);
        prev = r.hash.clone();
    }
}

/// Pages of `size` through the whole log, following the cursor.
fn paged(log: &AuditLog, filter: &AuditFilter, size: usize, newest_first: bool) -> Vec<u64> {
    let mut seqs = Vec::new();
    let mut cursor = 0;
    loop {
        let page = log
            .query(filter, cursor, size, newest_first)
            .expect("query");
        assert!(page.len() <= size);
        let Some(last) = page.last() else {
            return seqs;
        };
        cursor = last.seq;
        seqs.extend(page.iter().map(|r| r.seq));
    }
}

#[test]
fn audit_concurrent_appends_query_and_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(AuditLog::open(dir.path()).expect("open"));
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    log.record(entry(t, i)).expect("record");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer thread");
    }
    log.flush().expect("flush");

    let records = all(&log);
    assert_eq!(records.len(), THREADS * PER_THREAD);
    assert_chain(&records);
    // Each caller's entries keep their order.
    for t in 0..THREADS {
        let order: Vec<String> = records
            .iter()
            .filter(|r| r.entry.user == format!("user{t}"))
            .filter_map(|r| r.entry.detail.clone())
            .collect();
        let expected: Vec<String> = (0..PER_THREAD).map(|i| format!("{t}/{i}")).collect();
        assert_eq!(order, expected);
    }

    // Filters agree with filtering by hand.
    let t500 = records[499].time.clone();
    let filters = [
        AuditFilter {
            user: Some("user2".into()),
            ..Default::default()
        },
        AuditFilter {
            action: Some("wado.".into()),
            ..Default::default()
        },
        AuditFilter {
            action: Some("dimse.c-store".into()),
            interface: Some(Interface::Dimse),
            ..Default::default()
        },
        AuditFilter {
            outcome: Some(Outcome::Denied),
            patient_id: Some("P4".into()),
            ..Default::default()
        },
        AuditFilter {
            study_uid: Some("1.2.3.0".into()),
            user: Some("user0".into()),
            ..Default::default()
        },
        AuditFilter {
            since: Some(t500.clone()),
            ..Default::default()
        },
        AuditFilter {
            until: Some(t500),
            ..Default::default()
        },
    ];
    for filter in &filters {
        let expected: Vec<u64> = records
            .iter()
            .filter(|r| filter.matches(r))
            .map(|r| r.seq)
            .collect();
        let got: Vec<u64> = log
            .query(filter, 0, usize::MAX, false)
            .expect("query")
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(got, expected, "{filter:?}");
        assert_eq!(paged(&log, filter, 37, false), expected, "{filter:?}");
        let mut newest: Vec<u64> = expected.clone();
        newest.reverse();
        assert_eq!(paged(&log, filter, 37, true), newest, "{filter:?}");
    }
    let user2 = log.query(&filters[0], 0, usize::MAX, false).expect("query");
    assert_eq!(user2.len(), PER_THREAD);
    let denied = log
        .query(
            &AuditFilter {
                outcome: Some(Outcome::Denied),
                ..Default::default()
            },
            0,
            usize::MAX,
            false,
        )
        .expect("query");
    assert_eq!(denied.len(), THREADS * PER_THREAD / 10);

    // Paging edges.
    let newest = log
        .query(&AuditFilter::default(), 0, 3, true)
        .expect("query");
    assert_eq!(
        newest.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1000, 999, 998]
    );
    assert!(log
        .query(&AuditFilter::default(), 1, 10, true)
        .expect("query")
        .is_empty());
    assert!(log
        .query(&AuditFilter::default(), 0, 0, false)
        .expect("query")
        .is_empty());

    let report = log.verify().expect("verify");
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.records, 1000);
    assert_eq!(report.to_string(), "1000 records, chain intact");
    let head = log.head().expect("head").expect("a head");
    assert_eq!(
        (head.seq, head.hash.as_str()),
        (1000, records[999].hash.as_str())
    );
}

#[test]
fn audit_reopen_continues_the_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_and_close(dir.path(), 3);
    let log = AuditLog::open(dir.path()).expect("reopen");
    log.record(entry(1, 0)).expect("record");
    log.record(entry(1, 1)).expect("record");
    log.flush().expect("flush");
    let records = all(&log);
    assert_eq!(records.len(), 5);
    assert_chain(&records);
    assert_eq!(records[3].entry.user, "user1");
    assert!(log.verify().expect("verify").is_ok());
}

#[test]
fn audit_close_drains_the_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = AuditLog::open(dir.path()).expect("open");
        for i in 0..200 {
            log.record(entry(0, i)).expect("record");
        }
        // Dropped without flush: Drop must still commit everything.
    }
    let log = AuditLog::open_read_only(dir.path()).expect("read-only");
    assert_eq!(all(&log).len(), 200);
    assert!(log.verify().expect("verify").is_ok());
}

#[test]
fn audit_read_only_beside_a_running_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let writer = AuditLog::open(dir.path()).expect("open");
    for i in 0..10 {
        writer.record(entry(0, i)).expect("record");
    }
    writer.flush().expect("flush");

    let reader = AuditLog::open_read_only(dir.path()).expect("read-only beside the writer");
    assert!(reader.is_read_only());
    let report = reader.verify().expect("verify");
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.records, 10);
    assert_eq!(all(&reader).len(), 10);
    assert!(matches!(
        reader.record(entry(0, 0)),
        Err(AuditError::ReadOnly(_))
    ));
    reader.flush().expect("flush is a no-op when read-only");

    // The writer goes on; a new read-only open sees the new records, through the trait.
    for i in 10..15 {
        writer.record(entry(0, i)).expect("record");
    }
    writer.flush().expect("flush");
    let trail: Box<dyn AuditTrail> =
        Box::new(AuditLog::open_read_only(dir.path()).expect("read-only"));
    let report = trail.verify().expect("verify");
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.records, 15);
    let live = writer.verify().expect("verify on the writer");
    assert!(live.is_ok() && live.records == 15, "{live}");
}

#[test]
fn audit_second_writer_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = AuditLog::open(dir.path()).expect("open");
    match AuditLog::open(dir.path()) {
        Err(AuditError::Locked { .. }) => {}
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("a second writer was allowed"),
    }
}

#[test]
fn audit_empty_log_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(dir.path()).expect("open");
    log.flush().expect("flush");
    let report = log.verify().expect("verify");
    assert!(report.is_ok() && report.records == 0, "{report}");
    assert!(log.head().expect("head").is_none());
}
