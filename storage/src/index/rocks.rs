//! The index on an embedded RocksDB: one column family per level, one for secondary keys,
//! one for archive metadata (statistics). Reads go straight to the database; every write is
//! the backend-neutral rules run over a [`RocksTxn`] under one lock, then one synced batch.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::rocks_db::{RocksDb, CF_INSTANCES, CF_PATIENTS, CF_REJECTED, CF_SERIES, CF_STUDIES};
use super::rocks_txn::RocksTxn;
use super::txn::IndexTxn;
use super::{rejection_rules, rules};
use super::{DuplicatePolicy, Index, Lookup, NewInstance, SecondaryKey, Statistics, StoreDecision};
use crate::error::StorageError;
use crate::records::{InstanceRecord, PatientRecord, SeriesRecord, StudyRecord};
use crate::rejection::{RejectedInstance, RejectionNote};

pub struct RocksIndex {
    db: RocksDb,
    /// Serializes read-modify-write batches; readers never take it.
    write_lock: Mutex<()>,
}

impl std::fmt::Debug for RocksIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksIndex")
            .field("path", &self.db.path())
            .finish()
    }
}

impl RocksIndex {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StorageError> {
        Ok(RocksIndex {
            db: RocksDb::open(path.as_ref())?,
            write_lock: Mutex::new(()),
        })
    }

    /// Open for reading only, beside a running server (no lock taken): `pacs verify`.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self, StorageError> {
        Ok(RocksIndex {
            db: RocksDb::open_read_only(path.as_ref())?,
            write_lock: Mutex::new(()),
        })
    }

    pub(crate) fn db(&self) -> &RocksDb {
        &self.db
    }

    /// Serialize read-modify-write batches (index changes, events, stability).
    pub(crate) fn lock_writes(&self) -> MutexGuard<'_, ()> {
        self.write_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Run `apply` (the rules) over one transaction and commit what they did as one synced write.
    fn write<T>(
        &self,
        context: &'static str,
        apply: impl FnOnce(&mut dyn IndexTxn) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let _guard = self.lock_writes();
        let mut txn = RocksTxn::open(&self.db)?;
        let out = apply(&mut txn)?;
        txn.commit(context)?;
        Ok(out)
    }
}

impl Index for RocksIndex {
    fn find(
        &self,
        query: &crate::query::Query,
        on_match: &mut dyn FnMut(crate::query::QueryMatch) -> bool,
    ) -> Result<(), crate::query::QueryError> {
        crate::query::execute(self, query, on_match)
    }

    fn store_instances(
        &self,
        items: Vec<NewInstance>,
        policy: DuplicatePolicy,
    ) -> Result<Vec<StoreDecision>, StorageError> {
        self.write("committing an ingest batch", |txn| {
            rules::store_instances(txn, items, policy)
        })
    }

    fn delete_instances(&self, uids: &[String]) -> Result<Vec<InstanceRecord>, StorageError> {
        self.write("committing a deletion", |txn| {
            rules::delete_instances(txn, uids)
        })
    }

    fn correct_instances(&self, correction: super::IndexCorrection) -> Result<(), StorageError> {
        self.write("committing a correction", |txn| {
            rules::correct_instances(txn, correction)
        })
    }

    fn apply_rejection(
        &self,
        note_item: NewInstance,
        note: &RejectionNote,
        rejected_by: &str,
        policy: DuplicatePolicy,
    ) -> Result<super::RejectionApplied, StorageError> {
        let now = crate::ingest::now_ms();
        self.write("committing a rejection note", |txn| {
            rejection_rules::apply_rejection(txn, note_item, note, rejected_by, now, policy)
        })
    }

    fn rejected_instance(
        &self,
        sop_instance_uid: &str,
    ) -> Result<Option<RejectedInstance>, StorageError> {
        self.db.get_record(CF_REJECTED, sop_instance_uid)
    }

    fn list_rejected(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RejectedInstance>, StorageError> {
        let uids = match self.db.list_keys(CF_REJECTED, after, limit) {
            // A read-only open of an archive from before rejection notes: nothing hidden.
            Err(StorageError::MissingColumnFamily(_)) => Vec::new(),
            other => other?,
        };
        let mut out = Vec::new();
        for uid in uids {
            out.extend(self.rejected_instance(&uid)?);
        }
        Ok(out)
    }

    fn restore_rejected(&self, uids: &[String]) -> Result<Vec<String>, StorageError> {
        self.write("restoring rejected instances", |txn| {
            rejection_rules::restore_rejected(txn, uids)
        })
    }

    fn purge_rejected(&self, uids: &[String]) -> Result<Vec<RejectedInstance>, StorageError> {
        self.write("purging rejected instances", |txn| {
            rejection_rules::purge_rejected(txn, uids)
        })
    }

    fn statistics(&self) -> Result<Statistics, StorageError> {
        self.db.statistics()
    }

    fn instance(&self, sop_instance_uid: &str) -> Result<Option<InstanceRecord>, StorageError> {
        self.db.get_record(CF_INSTANCES, sop_instance_uid)
    }

    fn series(&self, series_instance_uid: &str) -> Result<Option<SeriesRecord>, StorageError> {
        self.db.get_record(CF_SERIES, series_instance_uid)
    }

    fn study(&self, study_instance_uid: &str) -> Result<Option<StudyRecord>, StorageError> {
        self.db.get_record(CF_STUDIES, study_instance_uid)
    }

    fn patient(&self, patient_key: &str) -> Result<Option<PatientRecord>, StorageError> {
        self.db.get_record(CF_PATIENTS, patient_key)
    }

    fn scan_secondary_by(
        &self,
        key: &SecondaryKey,
        lookup: &Lookup,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        self.db.scan_secondary_by(key, lookup, limit)
    }

    fn list_patients(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        self.db.list_keys(CF_PATIENTS, after, limit)
    }

    fn list_studies(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, StorageError> {
        self.db.list_keys(CF_STUDIES, after, limit)
    }

    fn list_instances(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        self.db.list_keys(CF_INSTANCES, after, limit)
    }
}
