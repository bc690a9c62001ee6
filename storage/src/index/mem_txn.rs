//! An index held in maps, for testing the rules without a database: a transaction works on
//! a copy of the state and replaces it on commit, so reads see the transaction's own changes
//! and nothing of a failed write is kept.

use std::collections::BTreeMap;

use super::txn::IndexTxn;
use super::Statistics;
use crate::error::StorageError;
use crate::events::NewEvent;
use crate::records::{InstanceRecord, PatientRecord, SeriesRecord, StudyRecord};
use crate::rejection::RejectedInstance;

/// A study waiting for its quiet period: patient key and series, as the outbox keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Waiting {
    pub patient_key: String,
    pub series: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub(super) struct MemIndex {
    pub patients: BTreeMap<String, PatientRecord>,
    pub studies: BTreeMap<String, StudyRecord>,
    pub series: BTreeMap<String, SeriesRecord>,
    pub instances: BTreeMap<String, InstanceRecord>,
    pub rejected: BTreeMap<String, RejectedInstance>,
    pub stats: Statistics,
    /// Every event committed, in order.
    pub events: Vec<NewEvent>,
    pub unstable: BTreeMap<String, Waiting>,
}

impl MemIndex {
    /// Run `apply` over a transaction; keep its changes only when it succeeds.
    pub(super) fn write<T>(
        &mut self,
        apply: impl FnOnce(&mut dyn IndexTxn) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let mut txn = MemTxn(self.clone());
        let out = apply(&mut txn)?;
        *self = txn.0;
        Ok(out)
    }
}

struct MemTxn(MemIndex);

impl IndexTxn for MemTxn {
    fn patient(&mut self, patient_key: &str) -> Result<Option<PatientRecord>, StorageError> {
        Ok(self.0.patients.get(patient_key).cloned())
    }

    fn study(&mut self, study_instance_uid: &str) -> Result<Option<StudyRecord>, StorageError> {
        Ok(self.0.studies.get(study_instance_uid).cloned())
    }

    fn series(&mut self, series_instance_uid: &str) -> Result<Option<SeriesRecord>, StorageError> {
        Ok(self.0.series.get(series_instance_uid).cloned())
    }

    fn instance(&mut self, sop_instance_uid: &str) -> Result<Option<InstanceRecord>, StorageError> {
        Ok(self.0.instances.get(sop_instance_uid).cloned())
    }

    fn series_of_study(&mut self, study_instance_uid: &str) -> Result<Vec<String>, StorageError> {
        Ok(self
            .0
            .series
            .values()
            .filter(|s| s.study_instance_uid == study_instance_uid)
            .map(|s| s.series_instance_uid.clone())
            .collect())
    }

    fn put_patient(&mut self, record: PatientRecord) -> Result<(), StorageError> {
        self.0.patients.insert(record.key.clone(), record);
        Ok(())
    }

    fn put_study(&mut self, record: StudyRecord) -> Result<(), StorageError> {
        self.0
            .studies
            .insert(record.study_instance_uid.clone(), record);
        Ok(())
    }

    fn put_series(&mut self, record: SeriesRecord) -> Result<(), StorageError> {
        self.0
            .series
            .insert(record.series_instance_uid.clone(), record);
        Ok(())
    }

    fn put_instance(&mut self, record: InstanceRecord) -> Result<(), StorageError> {
        self.0
            .instances
            .insert(record.sop_instance_uid.clone(), record);
        Ok(())
    }

    fn delete_patient(&mut self, patient_key: &str) -> Result<(), StorageError> {
        self.0.patients.remove(patient_key);
        Ok(())
    }

    fn delete_study(&mut self, study_instance_uid: &str) -> Result<(), StorageError> {
        self.0.studies.remove(study_instance_uid);
        Ok(())
    }

    fn delete_series(&mut self, series_instance_uid: &str) -> Result<(), StorageError> {
        self.0.series.remove(series_instance_uid);
        Ok(())
    }

    fn delete_instance(&mut self, sop_instance_uid: &str) -> Result<(), StorageError> {
        self.0.instances.remove(sop_instance_uid);
        Ok(())
    }

    fn rejected(
        &mut self,
        sop_instance_uid: &str,
    ) -> Result<Option<RejectedInstance>, StorageError> {
        Ok(self.0.rejected.get(sop_instance_uid).cloned())
    }

    fn put_rejected(&mut self, record: RejectedInstance) -> Result<(), StorageError> {
        self.0
            .rejected
            .insert(record.record.sop_instance_uid.clone(), record);
        Ok(())
    }

    fn delete_rejected(&mut self, sop_instance_uid: &str) -> Result<(), StorageError> {
        self.0.rejected.remove(sop_instance_uid);
        Ok(())
    }

    fn statistics(&mut self) -> Result<Statistics, StorageError> {
        Ok(self.0.stats)
    }

    fn put_statistics(&mut self, stats: Statistics) -> Result<(), StorageError> {
        self.0.stats = stats;
        Ok(())
    }

    fn append_event(&mut self, event: NewEvent) -> Result<(), StorageError> {
        self.0.events.push(event);
        Ok(())
    }

    fn mark_unstable(
        &mut self,
        study_instance_uid: &str,
        patient_key: &str,
        series_instance_uid: &str,
    ) -> Result<(), StorageError> {
        let waiting = self
            .0
            .unstable
            .entry(study_instance_uid.to_string())
            .or_insert_with(|| Waiting {
                patient_key: patient_key.to_string(),
                series: Vec::new(),
            });
        if !waiting.series.iter().any(|s| s == series_instance_uid) {
            waiting.series.push(series_instance_uid.to_string());
        }
        Ok(())
    }

    fn forget_unstable(&mut self, study_instance_uid: &str) -> Result<(), StorageError> {
        self.0.unstable.remove(study_instance_uid);
        Ok(())
    }
}
