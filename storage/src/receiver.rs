//! Receiving one instance: stage a blob, write the bytes as they arrive, then ingest. The one
//! path for C-STORE (PDU fragments after a File Meta header we write), STOW-RS (multipart
//! chunks) and `pacs import` (a file copied whole). Blocking file writes: async callers write
//! from their task (small writes into a buffer) and finish on a blocking thread.

use std::io::{BufWriter, Write};

use crate::blob::{BlobStore, StagedBlob};
use crate::error::{IngestError, StorageError};
use crate::ingest::{Expected, IngestSource, Ingested};
use crate::part10::{file_header, FileMetaError, FileMetaFields};
use crate::store::Store;

/// Bytes buffered before a write to the staged file.
const WRITE_BUFFER: usize = 256 * 1024;

/// A change made to a staged file before it is ingested.
pub type Rewrite<'a> = dyn Fn(&std::path::Path) -> Result<(), IngestError> + 'a;

/// Why an instance could not be received.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("cannot stage the instance: {0}")]
    Stage(#[source] StorageError),
    #[error(transparent)]
    FileMeta(#[from] FileMetaError),
    #[error("cannot write the instance: {0}")]
    Write(#[source] std::io::Error),
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

impl ReceiveError {
    /// True when the disk (or quota) is full.
    pub fn is_out_of_space(&self) -> bool {
        match self {
            ReceiveError::Stage(e) => e.is_out_of_space(),
            ReceiveError::Write(e) => crate::error::is_out_of_space(e),
            _ => false,
        }
    }
}

/// One instance being received into a staged blob.
pub struct Receiver {
    key: crate::blob::BlobKey,
    path: std::path::PathBuf,
    out: BufWriter<std::fs::File>,
}

impl Receiver {
    /// Stage a blob for an instance whose bytes are a whole Part 10 file (STOW-RS, import).
    pub fn begin(blobs: &dyn BlobStore) -> Result<Receiver, ReceiveError> {
        let StagedBlob { path, file, key } = blobs.stage().map_err(ReceiveError::Stage)?;
        Ok(Receiver {
            key,
            path,
            out: BufWriter::with_capacity(WRITE_BUFFER, file),
        })
    }

    /// Stage a blob for a bare data set (C-STORE) and write the File Meta Information that
    /// makes it a Part 10 file.
    pub fn begin_dataset(
        blobs: &dyn BlobStore,
        meta: &FileMetaFields<'_>,
    ) -> Result<Receiver, ReceiveError> {
        let header = file_header(meta)?;
        let mut rx = Receiver::begin(blobs)?;
        if let Err(e) = rx.write(&header) {
            rx.abandon(blobs);
            return Err(e);
        }
        Ok(rx)
    }

    /// Append bytes of the instance.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), ReceiveError> {
        self.out.write_all(bytes).map_err(ReceiveError::Write)
    }

    /// Everything is in: make it durable and indexed (blocking: call from a blocking thread).
    /// The staged blob is gone afterwards whatever the outcome.
    pub fn finish(
        self,
        store: &Store,
        source: &IngestSource,
        expected: &Expected,
    ) -> Result<Ingested, ReceiveError> {
        self.finish_rewritten(store, source, expected, None)
    }

    /// As [`Receiver::finish`], with `rewrite` applied to the staged file first (in place:
    /// e.g. re-identifying what an AI service returns); its refusal discards the instance.
    pub fn finish_rewritten(
        self,
        store: &Store,
        source: &IngestSource,
        expected: &Expected,
        rewrite: Option<&Rewrite<'_>>,
    ) -> Result<Ingested, ReceiveError> {
        let Receiver { key, path, out } = self;
        let file = match out.into_inner() {
            Ok(file) => file,
            Err(e) => {
                let (e, writer) = e.into_parts();
                let (file, _) = writer.into_parts();
                store.blobs.discard(StagedBlob { path, file, key });
                return Err(ReceiveError::Write(e));
            }
        };
        if let Some(rewrite) = rewrite {
            if let Err(e) = rewrite(&path) {
                store.blobs.discard(StagedBlob { path, file, key });
                return Err(e.into());
            }
        }
        let ingested = store
            .ingestor
            .ingest(StagedBlob { path, file, key }, source, expected)?;
        if let Some((reason, hidden)) = ingested.rejection {
            audit_rejection(store, source, &ingested, reason, hidden);
        }
        Ok(ingested)
    }

    /// Drop the instance (the sender went away, or it was refused before its end).
    pub fn abandon(self, blobs: &dyn BlobStore) {
        let Receiver { key, path, out } = self;
        let (file, _) = out.into_parts();
        blobs.discard(StagedBlob { path, file, key });
    }
}

/// A rejection note hid instances: an audit record naming the note, its reason and count
/// (the sender's association or request is audited as a store besides).
fn audit_rejection(
    store: &Store,
    source: &IngestSource,
    ingested: &Ingested,
    reason: crate::rejection::RejectionReason,
    hidden: usize,
) {
    use crate::audit::{AuditEntry, Interface, Outcome};
    let interface = match source {
        IngestSource::Dimse { .. } => Interface::Dimse,
        IngestSource::Stow => Interface::Http,
        IngestSource::Import => Interface::Cli,
    };
    let mut e = AuditEntry::new(
        interface,
        source.label(),
        "",
        "instance.reject",
        Outcome::Success,
    );
    if let IngestSource::Dimse { calling_ae } = source {
        e.ae_title = Some(calling_ae.clone());
    }
    e.study_uid = Some(ingested.study_instance_uid.clone());
    e.patient_id = Some(ingested.patient_id.clone()).filter(|p| !p.is_empty());
    e.instance_uid = Some(ingested.sop_instance_uid.clone());
    e.detail = Some(format!(
        "rejection note {}: {reason}; {hidden} instances hidden",
        ingested.sop_instance_uid
    ));
    if let Err(err) = store.audit.record(e) {
        tracing::error!(error = %err, "cannot record the rejection in the audit trail");
    }
}
