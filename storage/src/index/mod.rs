//! The study index: records per level, secondary keys for queries, and statistics.
//!
//! Layers: the [`Index`] trait (reads, and writes as whole batches); the domain rules of a
//! write (`rules`, `hierarchy`) written against one `txn::IndexTxn`; and a backend that supplies
//! transactions and reads (`rocks*`: RocksDB). A second backend implements `IndexTxn` and
//! `Index` and reuses the rules unchanged.

pub(crate) mod codec;
mod hierarchy;
mod keys;
pub(crate) mod rejection_rules;
pub(crate) mod rules;
pub(crate) mod touched;
pub(crate) mod txn;
// The embedded backend (left out of builds without RocksDB, e.g. fuzzing).
#[cfg(feature = "rocksdb")]
mod rocks;
#[cfg(feature = "rocksdb")]
mod rocks_commitments;
#[cfg(feature = "rocksdb")]
mod rocks_db;
#[cfg(feature = "rocksdb")]
mod rocks_events;
#[cfg(feature = "rocksdb")]
mod rocks_mpps;
#[cfg(feature = "rocksdb")]
mod rocks_orders;
#[cfg(feature = "rocksdb")]
mod rocks_outbox;
#[cfg(feature = "rocksdb")]
mod rocks_pseudonyms;
#[cfg(feature = "rocksdb")]
mod rocks_txn;

pub use keys::{normalize_name, Lookup, SecondaryKey};
#[cfg(feature = "rocksdb")]
pub use rocks::RocksIndex;

use serde::{Deserialize, Serialize};

use crate::blob::BlobKey;
use crate::error::StorageError;
use crate::query::model::{Query, QueryError, QueryMatch};
use crate::records::{Attributes, InstanceRecord, PatientRecord, SeriesRecord, StudyRecord};
use crate::rejection::{RejectedInstance, RejectionNote, RejectionReason};

/// Archive-wide counts, as served by `/api/statistics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statistics {
    pub patients: u64,
    pub studies: u64,
    pub series: u64,
    pub instances: u64,
    pub bytes: u64,
}

/// One instance to add: its record plus the attributes of the levels above it.
#[derive(Debug, Clone)]
pub struct NewInstance {
    pub record: InstanceRecord,
    pub patient: Attributes,
    pub study: Attributes,
    pub series: Attributes,
}

/// What to do when the SOP Instance UID is already in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DuplicatePolicy {
    /// Keep the stored instance and drop the new copy.
    #[default]
    Keep,
    /// Replace the stored instance with the new copy.
    Overwrite,
}

/// The index's decision for one instance of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreDecision {
    Stored,
    /// Already present and kept; the new blob is not referenced.
    Duplicate,
    /// Replaced; the old blobs (its file and any earlier versions) are no longer referenced.
    Replaced {
        old_blobs: Vec<BlobKey>,
    },
    /// A rejection note hid this instance earlier: the new copy is not kept.
    PreviouslyRejected {
        reason: RejectionReason,
    },
}

/// What a rejection note did: the note's own store decision and the instances it hid now
/// (those it names that were hidden before are not counted again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectionApplied {
    pub note: StoreDecision,
    pub hidden: Vec<String>,
}

/// One instance a correction wrote anew: the file it must still be served from (else it
/// changed meanwhile and the correction is refused) and its new record, whose `versions`
/// keep that file.
#[derive(Debug, Clone)]
pub struct Rewritten {
    pub expected_blob: BlobKey,
    pub item: NewInstance,
}

/// A correction as one atomic index change: instances replaced by their rewritten versions
/// (moving between studies and patients as their new attributes say), the events that tell
/// the systems fed from the archive, and patient attributes set on a record that other
/// studies share.
#[derive(Debug, Clone, Default)]
pub struct IndexCorrection {
    pub rewritten: Vec<Rewritten>,
    pub events: Vec<crate::events::NewEvent>,
    pub patient_attributes: Option<(String, Attributes)>,
}

/// The index behind a small interface, so a larger site can move it to a distributed database.
pub trait Index: Send + Sync {
    /// Add instances in one atomic, durable batch and say what happened to each.
    fn store_instances(
        &self,
        items: Vec<NewInstance>,
        policy: DuplicatePolicy,
    ) -> Result<Vec<StoreDecision>, StorageError>;
    /// Remove instances (and the series, studies and patients they leave empty) in one atomic,
    /// durable batch; returns the records removed, whose blobs the caller then deletes.
    fn delete_instances(&self, uids: &[String]) -> Result<Vec<InstanceRecord>, StorageError>;
    /// Apply a correction in one atomic, durable batch (see [`IndexCorrection`]).
    fn correct_instances(&self, correction: IndexCorrection) -> Result<(), StorageError>;
    /// Store a rejection note and hide the live instances it names, in one atomic, durable
    /// batch. `rejected_by` is who sent the note.
    fn apply_rejection(
        &self,
        note_item: NewInstance,
        note: &RejectionNote,
        rejected_by: &str,
        policy: DuplicatePolicy,
    ) -> Result<RejectionApplied, StorageError>;
    /// A hidden instance, by SOP Instance UID.
    fn rejected_instance(
        &self,
        sop_instance_uid: &str,
    ) -> Result<Option<RejectedInstance>, StorageError>;
    /// Hidden instances in SOP Instance UID order, starting after `after` (paging).
    fn list_rejected(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RejectedInstance>, StorageError>;
    /// Put hidden instances back into the live index (unknown UIDs are skipped); returns
    /// the UIDs restored.
    fn restore_rejected(&self, uids: &[String]) -> Result<Vec<String>, StorageError>;
    /// Forget hidden instances for good; returns their records, whose blobs the caller
    /// then deletes.
    fn purge_rejected(&self, uids: &[String]) -> Result<Vec<RejectedInstance>, StorageError>;
    fn statistics(&self) -> Result<Statistics, StorageError>;
    fn instance(&self, sop_instance_uid: &str) -> Result<Option<InstanceRecord>, StorageError>;
    fn series(&self, series_instance_uid: &str) -> Result<Option<SeriesRecord>, StorageError>;
    fn study(&self, study_instance_uid: &str) -> Result<Option<StudyRecord>, StorageError>;
    fn patient(&self, patient_key: &str) -> Result<Option<PatientRecord>, StorageError>;
    /// UIDs found under a secondary key prefix (e.g. all series of a study), in key order.
    fn scan_secondary(
        &self,
        key: &SecondaryKey,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        self.scan_secondary_by(key, &Lookup::Exact, limit)
    }
    /// UIDs whose indexed value matches the key's value as `lookup` says, in key order.
    fn scan_secondary_by(
        &self,
        key: &SecondaryKey,
        lookup: &Lookup,
        limit: usize,
    ) -> Result<Vec<String>, StorageError>;
    /// Patient keys in key order, starting after `after` (paging).
    fn list_patients(&self, after: Option<&str>, limit: usize)
        -> Result<Vec<String>, StorageError>;
    /// Study UIDs in key order, starting after `after` (paging).
    fn list_studies(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, StorageError>;
    /// SOP Instance UIDs in key order, after `after` (paging through the whole archive).
    fn list_instances(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StorageError>;
    /// Series Instance UIDs of a study, in index order.
    fn series_uids(&self, study_instance_uid: &str) -> Result<Vec<String>, StorageError> {
        self.scan_secondary(
            &SecondaryKey::SeriesOfStudy(study_instance_uid.into()),
            usize::MAX,
        )
    }
    /// At most `limit` SOP Instance UIDs of a series, in index order.
    fn instance_uids(
        &self,
        series_instance_uid: &str,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        self.scan_secondary(
            &SecondaryKey::InstancesOfSeries(series_instance_uid.into()),
            limit,
        )
    }
    /// The instance records of a series, in index order.
    fn series_instances(
        &self,
        series_instance_uid: &str,
    ) -> Result<Vec<InstanceRecord>, StorageError> {
        let mut out = Vec::new();
        for uid in self.instance_uids(series_instance_uid, usize::MAX)? {
            out.extend(self.instance(&uid)?);
        }
        Ok(out)
    }
    /// The instance records of a study, series by series (the walk a retrieve, a share link
    /// or a worker does; an SQL backend answers it with one join).
    fn study_instances(
        &self,
        study_instance_uid: &str,
    ) -> Result<Vec<InstanceRecord>, StorageError> {
        let mut out = Vec::new();
        for series in self.series_uids(study_instance_uid)? {
            out.extend(self.series_instances(&series)?);
        }
        Ok(out)
    }
    /// Study records found through a secondary key, in key order (what a query at study level
    /// reads: an SQL backend answers with one statement instead of a scan and a read each).
    fn studies_by(
        &self,
        key: &SecondaryKey,
        lookup: &Lookup,
        limit: usize,
    ) -> Result<Vec<StudyRecord>, StorageError> {
        self.studies_in(&self.scan_secondary_by(key, lookup, limit)?)
    }
    /// The study records of these UIDs that exist, in this order.
    fn studies_in(&self, uids: &[String]) -> Result<Vec<StudyRecord>, StorageError> {
        let mut out = Vec::with_capacity(uids.len());
        for uid in uids {
            out.extend(self.study(uid)?);
        }
        Ok(out)
    }
    /// Study records in UID order after `after` (paging through the whole archive).
    fn studies_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StudyRecord>, StorageError> {
        self.studies_in(&self.list_studies(after, limit)?)
    }
    /// The series records of a study, in index order.
    fn study_series(&self, study_instance_uid: &str) -> Result<Vec<SeriesRecord>, StorageError> {
        let mut out = Vec::new();
        for uid in self.series_uids(study_instance_uid)? {
            out.extend(self.series(&uid)?);
        }
        Ok(out)
    }
    /// The matches of `query`, handed to `on_match` until it returns false. The embedded
    /// index runs the query engine ([`crate::query::execute`]) over its records and secondary
    /// keys; an SQL backend pushes the whole query down instead of reading candidates one by
    /// one.
    fn find(
        &self,
        query: &Query,
        on_match: &mut dyn FnMut(QueryMatch) -> bool,
    ) -> Result<(), QueryError>;
}

#[cfg(test)]
mod mem_txn;
#[cfg(all(test, feature = "rocksdb"))]
mod rejection_rules_tests;
#[cfg(test)]
mod rules_tests;
#[cfg(all(test, feature = "rocksdb"))]
mod tests;
