//! Checking the chain: every record's hash, the seq sequence, the links and the head.

use std::fmt;
use std::path::Path;

use rocksdb::{IteratorMode, DB};
use serde::Serialize;

use super::chain::expected_hash;
use super::db::{self, HEAD_KEY};
use super::error::AuditError;
use super::model::GENESIS_HASH;

/// Problems beyond this many are counted, not listed (a wholesale rewrite would otherwise
/// produce one per record).
const MAX_LISTED: usize = 10_000;

/// One thing wrong with the stored trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// The record's hash does not match its content.
    Altered {
        seq: u64,
    },
    /// The hash matches, but the stored bytes are not the canonical serialization.
    NotCanonical {
        seq: u64,
    },
    /// Seqs `first..=last` are absent.
    Missing {
        first: u64,
        last: u64,
    },
    /// `prev_hash` is not the stored hash of the record before.
    ChainBroken {
        seq: u64,
    },
    /// Stored under one seq but says another.
    SeqMismatch {
        key_seq: u64,
        record_seq: u64,
    },
    Undecodable {
        seq: u64,
        detail: String,
    },
    /// A key that is neither a record nor the head.
    ForeignKey {
        key: String,
    },
    /// The head does not name the last record (`last_seq` `None`: there are no records).
    HeadMismatch {
        head_seq: u64,
        last_seq: Option<u64>,
    },
    HeadMissing {
        last_seq: u64,
    },
    HeadUndecodable {
        detail: String,
    },
    /// More problems than [`MAX_LISTED`]; this many were not listed.
    More {
        count: u64,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Altered { seq } => write!(f, "record {seq}: content altered (hash mismatch)"),
            Problem::NotCanonical { seq } => write!(
                f,
                "record {seq}: content altered (stored bytes are not the canonical form)"
            ),
            Problem::Missing { first, last } if first == last => {
                write!(f, "record {first}: missing (seq gap; deleted?)")
            }
            Problem::Missing { first, last } => {
                write!(f, "records {first} to {last}: missing (seq gap; deleted?)")
            }
            Problem::ChainBroken { seq } => write!(
                f,
                "record {seq}: chain broken (prev_hash is not the hash of record {}; \
                 a record replaced or inserted?)",
                seq.saturating_sub(1)
            ),
            Problem::SeqMismatch {
                key_seq,
                record_seq,
            } => write!(
                f,
                "record {key_seq}: stored as {key_seq} but says seq {record_seq} (moved?)"
            ),
            Problem::Undecodable { seq, detail } => {
                write!(f, "record {seq}: undecodable ({detail})")
            }
            Problem::ForeignKey { key } => write!(f, "unexpected key {key} in the audit database"),
            Problem::HeadMismatch {
                head_seq,
                last_seq: Some(last),
            } if head_seq == last => write!(
                f,
                "head: hash does not match record {last} (head or last record altered)"
            ),
            Problem::HeadMismatch {
                head_seq,
                last_seq: Some(last),
            } if last < head_seq => write!(
                f,
                "head: names record {head_seq} as the last, but the last record is {last} \
                 (tail truncated or head altered)"
            ),
            Problem::HeadMismatch {
                head_seq,
                last_seq: Some(last),
            } => write!(
                f,
                "head: names record {head_seq} as the last, but records go on to {last} \
                 (records added behind the log's back, or head altered)"
            ),
            Problem::HeadMismatch {
                head_seq,
                last_seq: None,
            } => write!(
                f,
                "head: names record {head_seq} as the last, but there are no records (all deleted?)"
            ),
            Problem::HeadMissing { last_seq } => write!(
                f,
                "head: missing although records up to {last_seq} exist (head deleted?)"
            ),
            Problem::HeadUndecodable { detail } => write!(f, "head: undecodable ({detail})"),
            Problem::More { count } => write!(f, "… and {count} more problems"),
        }
    }
}

/// Outcome of [`run`]: how many records were read, and what is wrong (empty when intact).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub records: u64,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_ok() {
            return write!(f, "{} records, chain intact", self.records);
        }
        write!(f, "{} records, PROBLEMS FOUND:", self.records)?;
        for problem in &self.problems {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

/// Collects problems, listing at most [`MAX_LISTED`].
#[derive(Default)]
struct Findings {
    listed: Vec<Problem>,
    unlisted: u64,
}

impl Findings {
    fn push(&mut self, problem: Problem) {
        if self.listed.len() < MAX_LISTED {
            self.listed.push(problem);
        } else {
            self.unlisted += 1;
        }
    }

    fn into_problems(mut self) -> Vec<Problem> {
        if self.unlisted > 0 {
            self.listed.push(Problem::More {
                count: self.unlisted,
            });
        }
        self.listed
    }
}

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
