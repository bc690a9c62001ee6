//! The store as the rest of the program sees it: index, blobs and the ingest path together.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::io::Read;

#[cfg(feature = "rocksdb")]
use crate::audit::AuditLog;
use crate::audit::{AuditEntry, AuditTrail, Interface, Outcome};
use crate::blob::BlobStore;
#[cfg(feature = "rocksdb")]
use crate::blob::FsBlobStore;
use crate::blob_crypto::BlobKeyMaterial;
#[cfg(feature = "rocksdb")]
use crate::blob_crypto::EncryptedBlobStore;
use crate::commitment::Commitments;
use crate::error::StorageError;
use crate::events::{Flags, Outbox};
#[cfg(feature = "rocksdb")]
use crate::index::RocksIndex;
use crate::index::{DuplicatePolicy, Index};
use crate::ingest::Ingestor;
use crate::integrity::{IntegrityProblem, Verified};
use crate::mpps::PerformedSteps;
use crate::orders::Orders;
use crate::pseudonyms::PseudonymTable;
use crate::records::InstanceRecord;

#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    pub duplicate_policy: DuplicatePolicy,
    /// Seal blob files with AES-256-GCM under this key (encryption at rest).
    pub blob_key: Option<BlobKeyMaterial>,
    /// Blobs in an S3-compatible bucket instead of `<dir>/blobs`.
    pub blobs: Option<crate::blob::S3Settings>,
    /// The index on PostgreSQL instead of RocksDB in `<dir>/index`.
    pub index: Option<IndexSettings>,
}

/// `[index] url` and `max_connections`: where the index lives when not embedded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSettings {
    pub url: String,
    pub max_connections: usize,
}

pub struct Store {
    pub index: Arc<dyn Index>,
    /// The event outbox (written by the index's batches).
    pub outbox: Arc<dyn Outbox>,
    /// Findings per study and worklist read marks.
    pub flags: Arc<dyn Flags>,
    /// Imaging orders and the modality worklist they make.
    pub orders: Arc<dyn Orders>,
    /// Performed procedure steps reported by modalities (MPPS).
    pub performed: Arc<dyn PerformedSteps>,
    /// Storage commitment requests not yet answered.
    pub commitments: Arc<dyn Commitments>,
    /// What de-identified exports replaced, for re-identification.
    pub pseudonyms: Arc<dyn PseudonymTable>,
    /// Jobs that run on one node at a time.
    pub leases: Arc<dyn crate::lease::Leases>,
    /// Secrets all nodes of a site hold alike.
    pub secrets: Arc<dyn crate::lease::SharedSecrets>,
    pub blobs: Arc<dyn BlobStore>,
    pub ingestor: Ingestor,
    /// Tamper-evident record of every access and change (its own RocksDB in `<dir>/audit`).
    pub audit: Arc<dyn AuditTrail>,
    data_dir: PathBuf,
}

/// The index and the tables kept beside it, all from one backend.
#[cfg(feature = "rocksdb")]
struct IndexTables {
    index: Arc<dyn Index>,
    outbox: Arc<dyn Outbox>,
    flags: Arc<dyn Flags>,
    orders: Arc<dyn Orders>,
    performed: Arc<dyn PerformedSteps>,
    commitments: Arc<dyn Commitments>,
    pseudonyms: Arc<dyn PseudonymTable>,
    leases: Arc<dyn crate::lease::Leases>,
    secrets: Arc<dyn crate::lease::SharedSecrets>,
}

#[cfg(feature = "rocksdb")]
impl IndexTables {
    fn from<T, L>(backend: Arc<T>, leases: Arc<L>) -> Self
    where
        T: Index
            + Outbox
            + Flags
            + Orders
            + PerformedSteps
            + Commitments
            + PseudonymTable
            + 'static,
        L: crate::lease::Leases + crate::lease::SharedSecrets + 'static,
    {
        IndexTables {
            secrets: leases.clone(),
            leases,
            index: backend.clone(),
            outbox: backend.clone(),
            flags: backend.clone(),
            orders: backend.clone(),
            performed: backend.clone(),
            commitments: backend.clone(),
            pseudonyms: backend,
        }
    }

    /// RocksDB in `<dir>/index`, or PostgreSQL when `[index] url` is set.
    fn open(data_dir: &Path, settings: Option<&IndexSettings>) -> Result<Self, StorageError> {
        match settings {
            #[cfg(feature = "postgres")]
            Some(s) => {
                let pg = Arc::new(crate::pg::PgIndex::open(s)?);
                Ok(IndexTables::from(pg.clone(), pg))
            }
            #[cfg(not(feature = "postgres"))]
            Some(_) => Err(StorageError::IndexConfig(
                "[index] url: this build has no PostgreSQL support".into(),
            )),
            None => Ok(IndexTables::from(
                Arc::new(RocksIndex::open(data_dir.join("index"))?),
                Arc::new(crate::lease::LocalLeases),
            )),
        }
    }
}

impl Store {
    #[cfg(feature = "rocksdb")]
    /// Open (or create) the embedded default: RocksDB in `<dir>/index`, blobs in `<dir>/blobs`.
    pub fn open(data_dir: impl AsRef<Path>, options: StoreOptions) -> Result<Self, StorageError> {
        let data_dir = data_dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| StorageError::io("creating data directory", &data_dir, e))?;
        // The index first: the embedded one's lock tells us whether another process owns
        // this directory before we touch the blob staging area (on PostgreSQL, the audit
        // trail's lock below does).
        let tables = IndexTables::open(&data_dir, options.index.as_ref())?;
        let audit: Arc<dyn AuditTrail> = Arc::new(
            AuditLog::open(data_dir.join("audit"))
                .map_err(|e| StorageError::Audit(e.to_string()))?,
        );
        // Before any blob is read or written: the key must be the archive's (or the archive
        // has none), else every read fails and new blobs go under the wrong key or none.
        crate::key_check::check_blob_key(&data_dir, options.blob_key.as_ref(), true)?;
        let IndexTables {
            index,
            outbox,
            flags,
            orders,
            performed,
            commitments,
            pseudonyms,
            leases,
            secrets,
        } = tables;
        let files: Arc<dyn BlobStore> = match &options.blobs {
            #[cfg(feature = "s3")]
            Some(s3) => Arc::new(crate::blob_s3::S3BlobStore::open(&data_dir, s3)?),
            #[cfg(not(feature = "s3"))]
            Some(_) => {
                return Err(StorageError::BadKey(
                    "[blobs] url: this build has no S3 support".into(),
                ))
            }
            None => Arc::new(FsBlobStore::open(&data_dir)?),
        };
        let blobs: Arc<dyn BlobStore> = match &options.blob_key {
            Some(key) => Arc::new(EncryptedBlobStore::new(files, key)),
            None => files,
        };
        let ingestor = Ingestor::new(index.clone(), blobs.clone(), options.duplicate_policy);
        Ok(Store {
            index,
            outbox,
            flags,
            orders,
            performed,
            commitments,
            pseudonyms,
            leases,
            secrets,
            blobs,
            ingestor,
            audit,
            data_dir,
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A stored instance's bytes, checked against what ingest recorded as they are read (see
    /// [`Verified`]): a blob changed on disk fails the read at its end, is logged, and is
    /// written to the audit trail as `integrity.failure` on `via`.
    pub fn open_verified(
        &self,
        rec: &InstanceRecord,
        via: Interface,
    ) -> Result<Verified<Box<dyn Read + Send>>, StorageError> {
        let reader = self.blobs.open(&rec.blob)?;
        let audit = self.audit.clone();
        let (study, series, instance) = (
            rec.study_instance_uid.clone(),
            rec.series_instance_uid.clone(),
            rec.sop_instance_uid.clone(),
        );
        let on_mismatch = Box::new(move |problem: &IntegrityProblem| {
            tracing::error!(study = %study, instance = %instance, %problem, "stored instance failed its integrity check; not served");
            let mut entry =
                AuditEntry::new(via, "system", "", "integrity.failure", Outcome::Failure);
            entry.study_uid = Some(study);
            entry.series_uid = Some(series);
            entry.instance_uid = Some(instance);
            entry.detail = Some(problem.to_string());
            if let Err(e) = audit.record(entry) {
                tracing::error!(error = %e, "cannot record the integrity failure in the audit trail");
            }
        });
        Ok(Verified::new(reader, rec, on_mismatch))
    }

    /// A stored instance, whole, read through [`Store::open_verified`] to the blob's end: a
    /// blob that is not the one recorded gives [`StorageError::Integrity`].
    pub fn read_verified(
        &self,
        rec: &InstanceRecord,
        via: Interface,
    ) -> Result<dicom_object::DefaultDicomObject, StorageError> {
        let mut blob = self.open_verified(rec, via)?;
        let read = crate::part10::read_instance_from(&mut blob, &rec.blob, false);
        // The parser may stop before the end (trailing padding): read on, so the check runs.
        let rest = std::io::copy(&mut blob, &mut std::io::sink());
        if let Some(problem) = blob.problem_found() {
            return Err(StorageError::Integrity(problem.clone()));
        }
        let obj = read?;
        rest.map_err(|e| StorageError::io("reading", &rec.blob.0, e))?;
        Ok(obj)
    }
}
