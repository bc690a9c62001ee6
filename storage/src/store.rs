//! The store as the rest of the program sees it: index, blobs and the ingest path together.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::audit::{AuditLog, AuditTrail};
use crate::blob::{BlobStore, FsBlobStore};
use crate::blob_crypto::{BlobKeyMaterial, EncryptedBlobStore};
use crate::error::StorageError;
use crate::events::{Flags, Outbox};
use crate::index::{DuplicatePolicy, Index, RocksIndex};
use crate::ingest::Ingestor;

#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    pub duplicate_policy: DuplicatePolicy,
    /// Seal blob files with AES-256-GCM under this key (encryption at rest).
    pub blob_key: Option<BlobKeyMaterial>,
}

pub struct Store {
    pub index: Arc<dyn Index>,
    /// The event outbox (written by the index's batches).
    pub outbox: Arc<dyn Outbox>,
    /// Findings per study and worklist read marks.
    pub flags: Arc<dyn Flags>,
    pub blobs: Arc<dyn BlobStore>,
    pub ingestor: Ingestor,
    /// Tamper-evident record of every access and change (its own RocksDB in `<dir>/audit`).
    pub audit: Arc<dyn AuditTrail>,
    data_dir: PathBuf,
}

impl Store {
    /// Open (or create) the embedded default: RocksDB in `<dir>/index`, blobs in `<dir>/blobs`.
    pub fn open(data_dir: impl AsRef<Path>, options: StoreOptions) -> Result<Self, StorageError> {
        let data_dir = data_dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| StorageError::io("creating data directory", &data_dir, e))?;
        // The index first: its lock tells us whether another process owns this directory
        // before we touch the blob staging area.
        let rocks = Arc::new(RocksIndex::open(data_dir.join("index"))?);
        let index: Arc<dyn Index> = rocks.clone();
        let outbox: Arc<dyn Outbox> = rocks.clone();
        let flags: Arc<dyn Flags> = rocks;
        let files: Arc<dyn BlobStore> = Arc::new(FsBlobStore::open(&data_dir)?);
        let blobs: Arc<dyn BlobStore> = match &options.blob_key {
            Some(key) => Arc::new(EncryptedBlobStore::new(files, key)),
            None => files,
        };
        let ingestor = Ingestor::new(index.clone(), blobs.clone(), options.duplicate_policy);
        let audit: Arc<dyn AuditTrail> = Arc::new(
            AuditLog::open(data_dir.join("audit"))
                .map_err(|e| StorageError::Audit(e.to_string()))?,
        );
        Ok(Store {
            index,
            outbox,
            flags,
            blobs,
            ingestor,
            audit,
            data_dir,
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}
