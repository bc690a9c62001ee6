//! One write to the index as the domain rules see it. Reads return the record as this
//! transaction left it (so two instances of a new series in one batch count one series);
//! puts, deletes, events and quiet-period marks become visible to others only when the
//! backend commits them all at once (one RocksDB write batch, one SQL transaction).
//!
//! The rules ([`super::rules`]) are written against this trait alone; a backend supplies the
//! overlay and the atomic commit, and decides nothing itself.

use super::Statistics;
use crate::error::StorageError;
use crate::events::NewEvent;
use crate::records::{InstanceRecord, PatientRecord, SeriesRecord, StudyRecord};
use crate::rejection::RejectedInstance;

pub trait IndexTxn {
    fn patient(&mut self, patient_key: &str) -> Result<Option<PatientRecord>, StorageError>;
    fn study(&mut self, study_instance_uid: &str) -> Result<Option<StudyRecord>, StorageError>;
    fn series(&mut self, series_instance_uid: &str) -> Result<Option<SeriesRecord>, StorageError>;
    fn instance(&mut self, sop_instance_uid: &str) -> Result<Option<InstanceRecord>, StorageError>;
    /// Series Instance UIDs of a study, this transaction's changes included (any order).
    fn series_of_study(&mut self, study_instance_uid: &str) -> Result<Vec<String>, StorageError>;

    fn put_patient(&mut self, record: PatientRecord) -> Result<(), StorageError>;
    fn put_study(&mut self, record: StudyRecord) -> Result<(), StorageError>;
    fn put_series(&mut self, record: SeriesRecord) -> Result<(), StorageError>;
    fn put_instance(&mut self, record: InstanceRecord) -> Result<(), StorageError>;
    fn delete_patient(&mut self, patient_key: &str) -> Result<(), StorageError>;
    fn delete_study(&mut self, study_instance_uid: &str) -> Result<(), StorageError>;
    fn delete_series(&mut self, series_instance_uid: &str) -> Result<(), StorageError>;
    fn delete_instance(&mut self, sop_instance_uid: &str) -> Result<(), StorageError>;

    /// An instance hidden by a rejection note (kept apart from the live records).
    fn rejected(
        &mut self,
        sop_instance_uid: &str,
    ) -> Result<Option<RejectedInstance>, StorageError>;
    fn put_rejected(&mut self, record: RejectedInstance) -> Result<(), StorageError>;
    fn delete_rejected(&mut self, sop_instance_uid: &str) -> Result<(), StorageError>;

    /// Archive-wide counts as this transaction left them.
    fn statistics(&mut self) -> Result<Statistics, StorageError>;
    fn put_statistics(&mut self, stats: Statistics) -> Result<(), StorageError>;

    /// Add an event to the outbox; it gets its sequence number at commit, in this order.
    fn append_event(&mut self, event: NewEvent) -> Result<(), StorageError>;
    /// The study received an instance of `series` now: its quiet period starts again. A
    /// study already waiting keeps the patient key it was first noted with.
    fn mark_unstable(
        &mut self,
        study_instance_uid: &str,
        patient_key: &str,
        series_instance_uid: &str,
    ) -> Result<(), StorageError>;
    /// The study is gone: no stability events for it.
    fn forget_unstable(&mut self, study_instance_uid: &str) -> Result<(), StorageError>;
}
