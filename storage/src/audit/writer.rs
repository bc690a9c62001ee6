//! The single writer thread: group-commits queued entries onto the end of the chain.
//!
//! One thread owns the chain tip, so seq and prev_hash need no lock. Each batch (everything
//! queued, up to [`MAX_BATCH`]) is one synced RocksDB `WriteBatch` that also moves the head,
//! so a crash leaves either all of a batch or none of it.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use rocksdb::{WriteBatch, WriteOptions, DB};

use super::chain::seal;
use super::clock::rfc3339_millis;
use super::db::{self, HEAD_KEY};
use super::error::AuditError;
use super::model::{AuditEntry, AuditRecord, Head, GENESIS_HASH};

/// Most entries committed in one batch; bounds the batch size and the latency of a flush.
const MAX_BATCH: usize = 4096;
/// Commit attempts before a batch is given up (written to the server log instead).
const ATTEMPTS: u32 = 4;
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(50);

// Nearly every message is an entry; boxing it would add an allocation per record for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Msg {
    /// `time` is taken when the caller recorded the entry: the event's time, not the commit's.
    Entry { time: SystemTime, entry: AuditEntry },
    /// Answered once everything queued before it is committed; `Err` carries the failure of
    /// a commit given up since the previous flush.
    Flush(SyncSender<Result<(), super::AuditError>>),
}

/// A record's key and stored bytes.
type Row = ([u8; 9], Vec<u8>);

/// Where the next record attaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tip {
    pub next_seq: u64,
    pub prev_hash: String,
}

impl Tip {
    /// Continues after the head, or after the last record key if that is higher, so that a
    /// seq is never written twice even when the head or the tail has been tampered with.
    /// Disagreements are logged and left for `verify` to report.
    pub fn resume(db: &DB, dir: &Path) -> Result<Tip, AuditError> {
        let head = match db::read_head(db, dir) {
            Ok(head) => head,
            Err(e @ AuditError::Decode { .. }) => {
                tracing::error!(dir = %dir.display(), error = %e, "audit head unreadable; continuing after the last record");
                None
            }
            Err(e) => return Err(e),
        };
        let last = db::read_last_raw(db, dir)?;
        let last_seq = last.as_ref().map_or(0, |(seq, _)| *seq);
        let head_seq = head.as_ref().map_or(0, |h| h.seq);
        if head_seq != last_seq {
            tracing::error!(
                dir = %dir.display(), head_seq, last_seq,
                "audit head and last record disagree (tampering or truncation?); run `pacs audit verify`"
            );
        }
        let top = head_seq.max(last_seq);
        let prev_hash = match (head, last) {
            _ if top == 0 => GENESIS_HASH.to_string(),
            (Some(h), _) if h.seq == top => h.hash,
            (_, Some((seq, bytes))) if seq == top => match db::decode_record(seq, &bytes) {
                Ok(record) => record.hash,
                Err(e) => {
                    // Nothing to chain onto; the break will show in `verify` at top + 1.
                    tracing::error!(dir = %dir.display(), error = %e, "last audit record unreadable");
                    GENESIS_HASH.to_string()
                }
            },
            _ => GENESIS_HASH.to_string(),
        };
        Ok(Tip {
            next_seq: top + 1,
            prev_hash,
        })
    }
}

pub fn spawn(
    db: Arc<DB>,
    dir: PathBuf,
    tip: Tip,
    rx: Receiver<Msg>,
) -> Result<JoinHandle<()>, AuditError> {
    let writer = Writer {
        db,
        dir,
        tip,
        pending: Vec::new(),
        failed: None,
    };
    std::thread::Builder::new()
        .name("audit-writer".into())
        .spawn(move || writer.run(rx))
        .map_err(AuditError::Spawn)
}

struct Writer {
    db: Arc<DB>,
    dir: PathBuf,
    tip: Tip,
    pending: Vec<(SystemTime, AuditEntry)>,
    /// A commit given up since the last flush, reported to the next flusher.
    failed: Option<String>,
}

impl Writer {
    /// Runs until every sender is gone and the queue is drained.
    fn run(mut self, rx: Receiver<Msg>) {
        while let Ok(first) = rx.recv() {
            self.take(first);
            while self.pending.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(msg) => self.take(msg),
                    Err(_) => break,
                }
            }
            self.commit_pending();
        }
        tracing::debug!(dir = %self.dir.display(), next_seq = self.tip.next_seq, "audit writer stopped");
    }

    fn take(&mut self, msg: Msg) {
        match msg {
            Msg::Entry { time, entry } => self.pending.push((time, entry)),
            Msg::Flush(reply) => {
                self.commit_pending();
                let answer = match self.failed.take() {
                    None => Ok(()),
                    Some(detail) => Err(super::AuditError::CommitFailed { detail }),
                };
                // The flusher may have gone away; nothing to tell then.
                let _ = reply.send(answer);
            }
        }
    }

    fn commit_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let entries = std::mem::take(&mut self.pending);
        let (rows, head) = match self.seal_all(&entries) {
            Ok(sealed) => sealed,
            Err(e) => return self.give_up(entries, &e),
        };
        let mut delay = FIRST_RETRY_DELAY;
        for attempt in 1..=ATTEMPTS {
            match self.write(&rows, &head) {
                Ok(()) => {
                    tracing::debug!(
                        count = rows.len(),
                        last_seq = head.seq,
                        "audit batch committed"
                    );
                    self.tip = Tip {
                        next_seq: head.seq + 1,
                        prev_hash: head.hash,
                    };
                    return;
                }
                Err(e) if attempt < ATTEMPTS => {
                    tracing::warn!(attempt, error = %e, "audit commit failed; retrying");
                    std::thread::sleep(delay);
                    delay *= 4;
                }
                Err(e) => return self.give_up(entries, &e),
            }
        }
    }

    /// Links `entries` onto the tip: the (key, bytes) rows and the new head.
    fn seal_all(
        &self,
        entries: &[(SystemTime, AuditEntry)],
    ) -> Result<(Vec<Row>, Head), AuditError> {
        let mut rows = Vec::with_capacity(entries.len());
        let mut seq = self.tip.next_seq;
        let mut prev_hash = self.tip.prev_hash.clone();
        for (time, entry) in entries {
            let mut record = AuditRecord {
                seq,
                time: rfc3339_millis(*time),
                entry: entry.clone(),
                prev_hash,
                hash: String::new(),
            };
            rows.push((db::record_key(seq), seal(&mut record)?));
            prev_hash = record.hash;
            seq += 1;
        }
        Ok((
            rows,
            Head {
                seq: seq - 1,
                hash: prev_hash,
            },
        ))
    }

    fn write(&self, rows: &[Row], head: &Head) -> Result<(), AuditError> {
        let head_bytes = serde_json::to_vec(head).map_err(|source| AuditError::Encode {
            what: "head",
            source,
        })?;
        let mut batch = WriteBatch::default();
        for (key, value) in rows {
            batch.put(key, value);
        }
        batch.put(HEAD_KEY, head_bytes);
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.db
            .write_opt(batch, &options)
            .map_err(AuditError::db("committing a batch", &self.dir))
    }

    /// Last resort: the entries go to the server log so they are not lost without trace.
    /// The tip does not move, so the chain stays gap-free.
    fn give_up(&mut self, entries: Vec<(SystemTime, AuditEntry)>, error: &AuditError) {
        tracing::error!(count = entries.len(), error = %error, "audit commit given up; writing the entries to the server log");
        for (time, entry) in &entries {
            let json = serde_json::to_string(entry).unwrap_or_else(|e| format!("{entry:?} ({e})"));
            tracing::error!(time = %rfc3339_millis(*time), entry = %json, "uncommitted audit entry");
        }
        self.failed = Some(error.to_string());
    }
}
