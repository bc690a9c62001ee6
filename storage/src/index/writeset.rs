//! One index batch being built: records read through an overlay of this batch's own changes,
//! so several instances of one new series in the same batch count correctly. At the end every
//! changed record, its secondary keys and the statistics go into a single RocksDB write batch.

use std::collections::{BTreeSet, HashMap};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::keys::{patient_keys, series_keys, study_keys};
use super::rocks::{RocksIndex, CF_INSTANCES, CF_PATIENTS, CF_SECONDARY, CF_SERIES, CF_STUDIES};
use super::{NewInstance, Statistics};
use crate::error::StorageError;
use crate::records::{first_value, InstanceRecord, PatientRecord, SeriesRecord, StudyRecord};

/// Original and current version of each record touched by the batch (`None` = absent).
struct Touched<T> {
    entries: HashMap<String, (Option<T>, Option<T>)>,
}

impl<T: Clone + DeserializeOwned> Touched<T> {
    fn new() -> Self {
        Touched {
            entries: HashMap::new(),
        }
    }

    fn get(
        &mut self,
        index: &RocksIndex,
        cf: &'static str,
        key: &str,
    ) -> Result<Option<T>, StorageError> {
        if let Some((_, cur)) = self.entries.get(key) {
            return Ok(cur.clone());
        }
        let orig: Option<T> = index.get_record(cf, key)?;
        self.entries
            .insert(key.to_string(), (orig.clone(), orig.clone()));
        Ok(orig)
    }

    fn set(&mut self, key: &str, value: Option<T>) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.1 = value;
        }
    }
}

pub(crate) struct WriteSet<'a> {
    index: &'a RocksIndex,
    patients: Touched<PatientRecord>,
    studies: Touched<StudyRecord>,
    series: Touched<SeriesRecord>,
    instances: Touched<InstanceRecord>,
    pub(crate) stats: Statistics,
}

impl<'a> WriteSet<'a> {
    pub(crate) fn new(index: &'a RocksIndex, stats: Statistics) -> Self {
        WriteSet {
            index,
            patients: Touched::new(),
            studies: Touched::new(),
            series: Touched::new(),
            instances: Touched::new(),
            stats,
        }
    }

    pub(crate) fn instance(&mut self, sop: &str) -> Result<Option<InstanceRecord>, StorageError> {
        self.instances.get(self.index, CF_INSTANCES, sop)
    }

    pub(crate) fn add_instance(&mut self, item: NewInstance) -> Result<(), StorageError> {
        let mut rec = item.record;
        let size = rec.size;
        let modality = first_value(&item.series, "00080060").to_string();
        let existing_study = self
            .studies
            .get(self.index, CF_STUDIES, &rec.study_instance_uid)?;
        if let Some(study) = &existing_study {
            if study.patient_key != rec.patient_key {
                // A study belongs to one patient: keep the first one seen, and say so.
                tracing::warn!(
                    study = %study.study_instance_uid,
                    sop = %rec.sop_instance_uid,
                    "instance names another patient than its study; indexed under the study's patient"
                );
                rec.patient_key = study.patient_key.clone();
            }
        }
        let pkey = rec.patient_key.clone();

        let mut patient = match self.patients.get(self.index, CF_PATIENTS, &pkey)? {
            Some(mut p) => {
                fill_missing(&mut p.attributes, &item.patient);
                p
            }
            None => {
                self.stats.patients += 1;
                PatientRecord {
                    key: pkey.clone(),
                    attributes: item.patient.clone(),
                    num_studies: 0,
                    num_series: 0,
                    num_instances: 0,
                }
            }
        };
        let mut study = match existing_study {
            Some(mut s) => {
                fill_missing(&mut s.attributes, &item.study);
                s
            }
            None => {
                self.stats.studies += 1;
                patient.num_studies += 1;
                let mut attributes = item.study.clone();
                // Patient attributes are copied into the study so study-level answers need one read.
                fill_missing(&mut attributes, &item.patient);
                StudyRecord {
                    study_instance_uid: rec.study_instance_uid.clone(),
                    patient_key: pkey.clone(),
                    attributes,
                    modalities: BTreeSet::new(),
                    sop_classes: BTreeSet::new(),
                    num_series: 0,
                    num_instances: 0,
                    bytes: 0,
                    last_update_ms: 0,
                }
            }
        };
        let mut series = match self
            .series
            .get(self.index, CF_SERIES, &rec.series_instance_uid)?
        {
            Some(mut s) => {
                fill_missing(&mut s.attributes, &item.series);
                s
            }
            None => {
                self.stats.series += 1;
                study.num_series += 1;
                patient.num_series += 1;
                SeriesRecord {
                    series_instance_uid: rec.series_instance_uid.clone(),
                    study_instance_uid: rec.study_instance_uid.clone(),
                    attributes: item.series.clone(),
                    num_instances: 0,
                    bytes: 0,
                    last_update_ms: 0,
                }
            }
        };

        series.num_instances += 1;
        series.bytes += size;
        series.last_update_ms = rec.received_ms;
        study.num_instances += 1;
        study.bytes += size;
        study.last_update_ms = rec.received_ms;
        if !modality.is_empty() {
            study.modalities.insert(modality);
        }
        study.sop_classes.insert(rec.sop_class_uid.clone());
        patient.num_instances += 1;
        self.stats.instances += 1;
        self.stats.bytes += size;

        self.patients.set(&pkey, Some(patient));
        self.studies.set(&rec.study_instance_uid, Some(study));
        self.series.set(&rec.series_instance_uid, Some(series));
        let sop = rec.sop_instance_uid.clone();
        self.instances.get(self.index, CF_INSTANCES, &sop)?;
        self.instances.set(&sop, Some(rec));
        Ok(())
    }

    /// Take an instance out of the counts, removing levels that become empty.
    pub(crate) fn remove_instance(&mut self, rec: &InstanceRecord) -> Result<(), StorageError> {
        self.instances.set(&rec.sop_instance_uid, None);
        self.stats.instances = self.stats.instances.saturating_sub(1);
        self.stats.bytes = self.stats.bytes.saturating_sub(rec.size);

        if let Some(mut series) =
            self.series
                .get(self.index, CF_SERIES, &rec.series_instance_uid)?
        {
            series.num_instances = series.num_instances.saturating_sub(1);
            series.bytes = series.bytes.saturating_sub(rec.size);
            let series_gone = series.num_instances == 0;
            self.series
                .set(&rec.series_instance_uid, (!series_gone).then_some(series));
            if let Some(mut study) =
                self.studies
                    .get(self.index, CF_STUDIES, &rec.study_instance_uid)?
            {
                let study_patient = study.patient_key.clone();
                study.num_instances = study.num_instances.saturating_sub(1);
                study.bytes = study.bytes.saturating_sub(rec.size);
                if series_gone {
                    study.num_series = study.num_series.saturating_sub(1);
                    self.stats.series = self.stats.series.saturating_sub(1);
                }
                let study_gone = study.num_instances == 0;
                self.studies
                    .set(&rec.study_instance_uid, (!study_gone).then_some(study));
                if let Some(mut patient) =
                    self.patients.get(self.index, CF_PATIENTS, &study_patient)?
                {
                    patient.num_instances = patient.num_instances.saturating_sub(1);
                    if series_gone {
                        patient.num_series = patient.num_series.saturating_sub(1);
                    }
                    if study_gone {
                        patient.num_studies = patient.num_studies.saturating_sub(1);
                        self.stats.studies = self.stats.studies.saturating_sub(1);
                    }
                    let patient_gone = patient.num_studies == 0;
                    if patient_gone {
                        self.stats.patients = self.stats.patients.saturating_sub(1);
                    }
                    self.patients
                        .set(&study_patient, (!patient_gone).then_some(patient));
                }
            }
        }
        Ok(())
    }

    /// Whether the study still exists after this batch's changes.
    pub(crate) fn study_exists(&mut self, uid: &str) -> Result<bool, StorageError> {
        Ok(self.studies.get(self.index, CF_STUDIES, uid)?.is_some())
    }

    /// After removals: each surviving study's ModalitiesInStudy from its remaining series.
    pub(crate) fn refresh_modalities(
        &mut self,
        removed: &[InstanceRecord],
    ) -> Result<(), StorageError> {
        let studies: BTreeSet<&str> = removed
            .iter()
            .map(|r| r.study_instance_uid.as_str())
            .collect();
        for uid in studies {
            let Some(mut study) = self.studies.get(self.index, CF_STUDIES, uid)? else {
                continue;
            };
            let mut modalities = BTreeSet::new();
            let key = super::SecondaryKey::SeriesOfStudy(uid.to_string());
            for series_uid in super::Index::scan_secondary(self.index, &key, usize::MAX)? {
                if let Some(series) = self.series.get(self.index, CF_SERIES, &series_uid)? {
                    let m = first_value(&series.attributes, "00080060");
                    if !m.is_empty() {
                        modalities.insert(m.to_string());
                    }
                }
            }
            study.modalities = modalities;
            self.studies.set(uid, Some(study));
        }
        Ok(())
    }

    /// Turn every change into puts and deletes of one write batch.
    pub(crate) fn into_batch(self) -> Result<(rocksdb::WriteBatch, Statistics), StorageError> {
        let mut batch = rocksdb::WriteBatch::default();
        let index = self.index;
        let cf_secondary = index.cf(CF_SECONDARY)?;
        let secondary =
            |old: BTreeSet<Vec<u8>>, new: BTreeSet<Vec<u8>>, batch: &mut rocksdb::WriteBatch| {
                for k in old.difference(&new) {
                    batch.delete_cf(&cf_secondary, k);
                }
                for k in new.difference(&old) {
                    batch.put_cf(&cf_secondary, k, []);
                }
            };
        for (key, (orig, cur)) in self.patients.entries {
            let old = orig.as_ref().map(patient_keys).unwrap_or_default();
            let new = cur.as_ref().map(patient_keys).unwrap_or_default();
            secondary(old, new, &mut batch);
            put_or_delete(
                index,
                &mut batch,
                CF_PATIENTS,
                &key,
                orig.as_ref(),
                cur.as_ref(),
            )?;
        }
        for (key, (orig, cur)) in self.studies.entries {
            let old = orig.as_ref().map(study_keys).unwrap_or_default();
            let new = cur.as_ref().map(study_keys).unwrap_or_default();
            secondary(old, new, &mut batch);
            put_or_delete(
                index,
                &mut batch,
                CF_STUDIES,
                &key,
                orig.as_ref(),
                cur.as_ref(),
            )?;
        }
        for (key, (orig, cur)) in self.series.entries {
            let old = orig.as_ref().map(series_keys).unwrap_or_default();
            let new = cur.as_ref().map(series_keys).unwrap_or_default();
            secondary(old, new, &mut batch);
            put_or_delete(
                index,
                &mut batch,
                CF_SERIES,
                &key,
                orig.as_ref(),
                cur.as_ref(),
            )?;
        }
        for (key, (orig, cur)) in self.instances.entries {
            let old = orig.as_ref().map(instance_keys).unwrap_or_default();
            let new = cur.as_ref().map(instance_keys).unwrap_or_default();
            secondary(old, new, &mut batch);
            put_or_delete(
                index,
                &mut batch,
                CF_INSTANCES,
                &key,
                orig.as_ref(),
                cur.as_ref(),
            )?;
        }
        Ok((batch, self.stats))
    }
}

fn instance_keys(rec: &InstanceRecord) -> BTreeSet<Vec<u8>> {
    BTreeSet::from([
        super::SecondaryKey::InstancesOfSeries(rec.series_instance_uid.clone())
            .entry(&rec.sop_instance_uid),
    ])
}

fn put_or_delete<T: Serialize + PartialEq>(
    index: &RocksIndex,
    batch: &mut rocksdb::WriteBatch,
    cf: &'static str,
    key: &str,
    orig: Option<&T>,
    cur: Option<&T>,
) -> Result<(), StorageError> {
    let handle = index.cf(cf)?;
    match cur {
        Some(v) if orig != Some(v) => {
            let bytes = serde_json::to_vec(v).map_err(|source| StorageError::CorruptRecord {
                kind: cf,
                key: key.to_string(),
                source,
            })?;
            batch.put_cf(&handle, key.as_bytes(), bytes);
        }
        Some(_) => {}
        None if orig.is_some() => batch.delete_cf(&handle, key.as_bytes()),
        None => {}
    }
    Ok(())
}

fn fill_missing(into: &mut crate::records::Attributes, from: &crate::records::Attributes) {
    for (k, v) in from {
        into.entry(k.clone()).or_insert_with(|| v.clone());
    }
}
