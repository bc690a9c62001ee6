//! Checking the chain: every record's hash, the seq sequence, the links and the head.

use std::path::Path;

use rocksdb::{IteratorMode, DB};

use super::chain::expected_hash;
use super::db::{self, HEAD_KEY};
use super::error::AuditError;
use super::model::GENESIS_HASH;
use super::report::{Findings, Problem, VerifyReport};

/// Walks every record in seq order on one snapshot (consistent beside a live writer).
///
/// Each record is checked on its own (hash, canonical bytes, seq) and against the one
/// before it (no gap, `prev_hash` = its stored hash); the head must name the last record.
/// A changed field shows at that record; a record rewritten with a recomputed hash shows
/// as a broken chain at the next one; a deleted record as a gap; a cut tail at the head.
pub fn run(db: &DB, dir: &Path) -> Result<VerifyReport, AuditError> {
    let snapshot = db.snapshot();
    let mut findings = Findings::default();
    let mut records = 0u64;
    let mut expected_seq = 1u64;
    // Stored hash of the previous record; `None` when it could not be read.
    let mut prev_hash: Option<String> = Some(GENESIS_HASH.to_string());
    let mut last: Option<(u64, Option<String>)> = None;
    let mut head_bytes = None;

    for item in snapshot.iterator(IteratorMode::Start) {
        let (key, value) = item.map_err(AuditError::db("verifying records", dir))?;
        if &*key == HEAD_KEY {
            head_bytes = Some(value);
            continue;
        }
        let Some(seq) = db::seq_of_key(&key) else {
            findings.push(Problem::ForeignKey {
                key: String::from_utf8_lossy(&key).into_owned(),
            });
            continue;
        };
        records += 1;
        let gap = seq > expected_seq;
        if gap {
            findings.push(Problem::Missing {
                first: expected_seq,
                last: seq - 1,
            });
        }
        expected_seq = seq.saturating_add(1);
        let record = match db::decode_record(seq, &value) {
            Ok(record) => record,
            Err(e) => {
                findings.push(Problem::Undecodable {
                    seq,
                    detail: source_text(&e),
                });
                prev_hash = None;
                last = Some((seq, None));
                continue;
            }
        };
        if record.seq != seq {
            findings.push(Problem::SeqMismatch {
                key_seq: seq,
                record_seq: record.seq,
            });
        }
        if expected_hash(&record)? != record.hash {
            findings.push(Problem::Altered { seq });
        } else if serde_json::to_vec(&record).ok().as_deref() != Some(&value[..]) {
            findings.push(Problem::NotCanonical { seq });
        }
        // After a gap the link cannot match; the gap is the finding.
        if !gap && prev_hash.as_deref().is_some_and(|p| p != record.prev_hash) {
            findings.push(Problem::ChainBroken { seq });
        }
        prev_hash = Some(record.hash.clone());
        last = Some((seq, Some(record.hash)));
    }

    check_head(head_bytes.as_deref(), last, &mut findings);
    let report = VerifyReport {
        records,
        problems: findings.into_problems(),
    };
    if report.is_ok() {
        tracing::info!(dir = %dir.display(), records, "audit chain verified");
    } else {
        tracing::warn!(dir = %dir.display(), records, problems = report.problems.len(), "audit chain has problems");
    }
    Ok(report)
}

fn check_head(
    head_bytes: Option<&[u8]>,
    last: Option<(u64, Option<String>)>,
    findings: &mut Findings,
) {
    let head = match head_bytes.map(db::decode_head) {
        None => {
            if let Some((last_seq, _)) = last {
                findings.push(Problem::HeadMissing { last_seq });
            }
            return;
        }
        Some(Err(e)) => {
            findings.push(Problem::HeadUndecodable {
                detail: source_text(&e),
            });
            return;
        }
        Some(Ok(head)) => head,
    };
    let matches = match &last {
        None => false,
        Some((seq, hash)) => {
            // An unreadable last record was reported already; only its seq can be compared.
            *seq == head.seq && hash.as_ref().is_none_or(|h| *h == head.hash)
        }
    };
    if !matches {
        findings.push(Problem::HeadMismatch {
            head_seq: head.seq,
            last_seq: last.map(|(seq, _)| seq),
        });
    }
}

/// The underlying cause of `e` (the JSON error), without the "undecodable …" wrapper.
fn source_text(e: &AuditError) -> String {
    std::error::Error::source(e).map_or_else(|| e.to_string(), |s| s.to_string())
}
