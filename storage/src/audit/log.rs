//! [`AuditLog`]: the RocksDB-backed audit trail as callers hold it.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::SystemTime;

use rocksdb::DB;

use super::db;
use super::error::AuditError;
use super::filter::AuditFilter;
use super::model::{AuditEntry, AuditRecord, Head};
use super::query;
use super::report::VerifyReport;
use super::trail::AuditTrail;
use super::verify;
use super::writer::{self, Msg, Tip};

/// Entries that may wait for the writer before `record` blocks. Blocking (not dropping) is
/// deliberate: an audit record must never be lost to back-pressure.
const QUEUE_CAPACITY: usize = 65_536;

/// Append-only, hash-chained audit trail in its own RocksDB database.
pub struct AuditLog {
    db: Arc<DB>,
    dir: PathBuf,
    /// `None` when opened read-only.
    writer: Option<WriterHandle>,
}

struct WriterHandle {
    tx: SyncSender<Msg>,
    thread: JoinHandle<()>,
}

impl AuditLog {
    /// Opens or creates the trail in `dir` and starts its writer thread. Fails with
    /// [`AuditError::Locked`] when another process has it open for writing.
    pub fn open(dir: impl AsRef<Path>) -> Result<AuditLog, AuditError> {
        let dir = dir.as_ref().to_path_buf();
        let db = Arc::new(db::open(&dir, false)?);
        let tip = Tip::resume(&db, &dir)?;
        tracing::info!(dir = %dir.display(), next_seq = tip.next_seq, "audit log open");
        let (tx, rx) = sync_channel(QUEUE_CAPACITY);
        let thread = writer::spawn(db.clone(), dir.clone(), tip, rx)?;
        Ok(AuditLog {
            db,
            dir,
            writer: Some(WriterHandle { tx, thread }),
        })
    }

    /// Opens an existing trail without a writer (for `pacs audit verify` / export while the
    /// server runs). It sees the records committed when it was opened; `record` fails.
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<AuditLog, AuditError> {
        let dir = dir.as_ref().to_path_buf();
        let db = Arc::new(db::open(&dir, true)?);
        Ok(AuditLog {
            db,
            dir,
            writer: None,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn is_read_only(&self) -> bool {
        self.writer.is_none()
    }

    /// Queues `entry`; it is timestamped now and committed by the writer shortly after.
    /// Blocks only while the queue is full.
    pub fn record(&self, entry: AuditEntry) -> Result<(), AuditError> {
        let writer = self
            .writer
            .as_ref()
            .ok_or_else(|| AuditError::ReadOnly(self.dir.clone()))?;
        let time = SystemTime::now();
        writer
            .tx
            .send(Msg::Entry { time, entry })
            .map_err(|_| AuditError::WriterGone)
    }

    /// Returns once every entry recorded before the call is committed (no-op when
    /// read-only). Reports a commit the writer gave up on since the previous flush.
    pub fn flush(&self) -> Result<(), AuditError> {
        let Some(writer) = &self.writer else {
            return Ok(());
        };
        let (reply_tx, reply_rx) = sync_channel(1);
        writer
            .tx
            .send(Msg::Flush(reply_tx))
            .map_err(|_| AuditError::WriterGone)?;
        match reply_rx.recv() {
            Ok(answer) => answer,
            Err(_) => Err(AuditError::WriterGone),
        }
    }

    /// The last committed record's seq and hash, to note elsewhere as an anchor.
    pub fn head(&self) -> Result<Option<Head>, AuditError> {
        db::read_head(&self.db, &self.dir)
    }

    /// Committed records matching `filter`, a page of at most `limit` after the cursor
    /// `after_seq` (see [`query::run`]).
    pub fn query(
        &self,
        filter: &AuditFilter,
        after_seq: u64,
        limit: usize,
        newest_first: bool,
    ) -> Result<Vec<AuditRecord>, AuditError> {
        query::run(&self.db, &self.dir, filter, after_seq, limit, newest_first)
    }

    /// Recomputes the whole chain; see [`VerifyReport`].
    pub fn verify(&self) -> Result<VerifyReport, AuditError> {
        verify::run(&self.db, &self.dir)
    }

    /// Drains the queue, stops the writer and closes the database.
    pub fn close(mut self) -> Result<(), AuditError> {
        self.stop_writer()
    }

    fn stop_writer(&mut self) -> Result<(), AuditError> {
        let Some(WriterHandle { tx, thread }) = self.writer.take() else {
            return Ok(());
        };
        // Dropping the last sender ends the writer's loop once the queue is empty.
        drop(tx);
        thread.join().map_err(|_| AuditError::WriterGone)
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        if let Err(e) = self.stop_writer() {
            tracing::error!(dir = %self.dir.display(), error = %e, "audit writer did not stop cleanly");
        }
    }
}

impl AuditTrail for AuditLog {
    fn record(&self, entry: AuditEntry) -> Result<(), AuditError> {
        AuditLog::record(self, entry)
    }

    fn flush(&self) -> Result<(), AuditError> {
        AuditLog::flush(self)
    }

    fn query(
        &self,
        filter: &AuditFilter,
        after_seq: u64,
        limit: usize,
        newest_first: bool,
    ) -> Result<Vec<AuditRecord>, AuditError> {
        AuditLog::query(self, filter, after_seq, limit, newest_first)
    }

    fn verify(&self) -> Result<VerifyReport, AuditError> {
        AuditLog::verify(self)
    }
}
