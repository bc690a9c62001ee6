//! What a check of the chain found.

use std::fmt;

use serde::Serialize;

/// Problems beyond this many are counted, not listed (a wholesale rewrite would otherwise
/// produce one per record).
pub(crate) const MAX_LISTED: usize = 10_000;

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
pub(crate) struct Findings {
    listed: Vec<Problem>,
    unlisted: u64,
}

impl Findings {
    pub(crate) fn push(&mut self, problem: Problem) {
        if self.listed.len() < MAX_LISTED {
            self.listed.push(problem);
        } else {
            self.unlisted += 1;
        }
    }

    pub(crate) fn into_problems(mut self) -> Vec<Problem> {
        if self.unlisted > 0 {
            self.listed.push(Problem::More {
                count: self.unlisted,
            });
        }
        self.listed
    }
}
