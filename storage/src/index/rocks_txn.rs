//! [`IndexTxn`] on RocksDB: records read through an overlay of this transaction's own
//! changes; at commit every changed record, its secondary keys, the events, the quiet-period
//! marks and the statistics go into one synced write batch. Decides nothing: the rules do.

use std::collections::{BTreeSet, HashMap};

use rocksdb::WriteBatch;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::keys::{instance_keys, patient_keys, series_keys, study_keys};
use super::rocks_db::{
    encode, RocksDb, CF_INSTANCES, CF_META, CF_PATIENTS, CF_REJECTED, CF_SECONDARY, CF_SERIES,
    CF_STUDIES, STATS_KEY,
};
use super::rocks_events::{append_events, forget_unstable, touch_unstable, Touched};
use super::txn::IndexTxn;
use super::{SecondaryKey, Statistics};
use crate::error::StorageError;
use crate::events::NewEvent;
use crate::records::{InstanceRecord, PatientRecord, SeriesRecord, StudyRecord};
use crate::rejection::RejectedInstance;

/// Original and current version of each record of one kind touched by the transaction
/// (`None` = absent), so that commit writes only what changed and moves secondary keys.
struct Overlay<T> {
    cf: &'static str,
    entries: HashMap<String, (Option<T>, Option<T>)>,
}

impl<T: Clone + DeserializeOwned> Overlay<T> {
    fn new(cf: &'static str) -> Self {
        Overlay {
            cf,
            entries: HashMap::new(),
        }
    }

    fn get(&mut self, db: &RocksDb, key: &str) -> Result<Option<T>, StorageError> {
        if let Some((_, cur)) = self.entries.get(key) {
            return Ok(cur.clone());
        }
        let orig: Option<T> = db.get_record(self.cf, key)?;
        self.entries
            .insert(key.to_string(), (orig.clone(), orig.clone()));
        Ok(orig)
    }

    fn set(&mut self, db: &RocksDb, key: &str, value: Option<T>) -> Result<(), StorageError> {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.1 = value;
            return Ok(());
        }
        // Never read by this transaction: the original is needed to move secondary keys.
        let orig: Option<T> = db.get_record(self.cf, key)?;
        self.entries.insert(key.to_string(), (orig, value));
        Ok(())
    }
}

impl<T: Serialize + PartialEq> Overlay<T> {
    /// Puts and deletes of the changed records and of their secondary keys.
    fn write(
        self,
        db: &RocksDb,
        batch: &mut WriteBatch,
        keys_of: impl Fn(&T) -> BTreeSet<Vec<u8>>,
    ) -> Result<(), StorageError> {
        let records = db.cf(self.cf)?;
        let secondary = db.cf(CF_SECONDARY)?;
        for (key, (orig, cur)) in self.entries {
            let old = orig.as_ref().map(&keys_of).unwrap_or_default();
            let new = cur.as_ref().map(&keys_of).unwrap_or_default();
            for k in old.difference(&new) {
                batch.delete_cf(&secondary, k);
            }
            for k in new.difference(&old) {
                batch.put_cf(&secondary, k, []);
            }
            match (&orig, &cur) {
                (_, Some(v)) if orig.as_ref() != Some(v) => {
                    batch.put_cf(&records, key.as_bytes(), encode(self.cf, &key, v)?);
                }
                (Some(_), None) => batch.delete_cf(&records, key.as_bytes()),
                _ => {}
            }
        }
        Ok(())
    }
}

pub(crate) struct RocksTxn<'a> {
    db: &'a RocksDb,
    patients: Overlay<PatientRecord>,
    studies: Overlay<StudyRecord>,
    series: Overlay<SeriesRecord>,
    instances: Overlay<InstanceRecord>,
    rejected: Overlay<RejectedInstance>,
    stats: Statistics,
    events: Vec<NewEvent>,
    touched: Touched,
    gone: Vec<String>,
}

impl<'a> RocksTxn<'a> {
    /// Start a transaction; the caller holds the index's write lock until commit, which is
    /// what makes the read-modify-write of records, statistics and sequence numbers safe.
    pub(crate) fn open(db: &'a RocksDb) -> Result<Self, StorageError> {
        Ok(RocksTxn {
            db,
            patients: Overlay::new(CF_PATIENTS),
            studies: Overlay::new(CF_STUDIES),
            series: Overlay::new(CF_SERIES),
            instances: Overlay::new(CF_INSTANCES),
            rejected: Overlay::new(CF_REJECTED),
            stats: db.statistics()?,
            events: Vec::new(),
            touched: Touched::new(),
            gone: Vec::new(),
        })
    }

    /// Write every change as one synced RocksDB write.
    pub(crate) fn commit(self, context: &'static str) -> Result<(), StorageError> {
        let db = self.db;
        let mut batch = WriteBatch::default();
        self.patients.write(db, &mut batch, patient_keys)?;
        self.studies.write(db, &mut batch, study_keys)?;
        self.series.write(db, &mut batch, series_keys)?;
        self.instances.write(db, &mut batch, instance_keys)?;
        // Hidden instances are found by their UID or listed whole: no secondary keys.
        self.rejected.write(db, &mut batch, |_| BTreeSet::new())?;
        append_events(db, &mut batch, self.events)?;
        touch_unstable(db, &mut batch, self.touched)?;
        for study in &self.gone {
            forget_unstable(db, &mut batch, study)?;
        }
        batch.put_cf(
            &db.cf(CF_META)?,
            STATS_KEY,
            encode(CF_META, "statistics", &self.stats)?,
        );
        db.write_synced(batch, context)
    }
}

impl IndexTxn for RocksTxn<'_> {
    fn patient(&mut self, patient_key: &str) -> Result<Option<PatientRecord>, StorageError> {
        self.patients.get(self.db, patient_key)
    }

    fn study(&mut self, study_instance_uid: &str) -> Result<Option<StudyRecord>, StorageError> {
        self.studies.get(self.db, study_instance_uid)
    }

    fn series(&mut self, series_instance_uid: &str) -> Result<Option<SeriesRecord>, StorageError> {
        self.series.get(self.db, series_instance_uid)
    }

    fn instance(&mut self, sop_instance_uid: &str) -> Result<Option<InstanceRecord>, StorageError> {
        self.instances.get(self.db, sop_instance_uid)
    }

    fn series_of_study(&mut self, study_instance_uid: &str) -> Result<Vec<String>, StorageError> {
        // The committed secondary keys, then this transaction's changes over them.
        let key = SecondaryKey::SeriesOfStudy(study_instance_uid.to_string());
        let mut out: BTreeSet<String> = self
            .db
            .scan_secondary_by(&key, &super::Lookup::Exact, usize::MAX)?
            .into_iter()
            .collect();
        for (uid, (_, cur)) in &self.series.entries {
            match cur {
                Some(s) if s.study_instance_uid == study_instance_uid => {
                    out.insert(uid.clone());
                }
                _ => {
                    out.remove(uid);
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    fn put_patient(&mut self, record: PatientRecord) -> Result<(), StorageError> {
        let key = record.key.clone();
        self.patients.set(self.db, &key, Some(record))
    }

    fn put_study(&mut self, record: StudyRecord) -> Result<(), StorageError> {
        let key = record.study_instance_uid.clone();
        self.studies.set(self.db, &key, Some(record))
    }

    fn put_series(&mut self, record: SeriesRecord) -> Result<(), StorageError> {
        let key = record.series_instance_uid.clone();
        self.series.set(self.db, &key, Some(record))
    }

    fn put_instance(&mut self, record: InstanceRecord) -> Result<(), StorageError> {
        let key = record.sop_instance_uid.clone();
        self.instances.set(self.db, &key, Some(record))
    }

    fn delete_patient(&mut self, patient_key: &str) -> Result<(), StorageError> {
        self.patients.set(self.db, patient_key, None)
    }

    fn delete_study(&mut self, study_instance_uid: &str) -> Result<(), StorageError> {
        self.studies.set(self.db, study_instance_uid, None)
    }

    fn delete_series(&mut self, series_instance_uid: &str) -> Result<(), StorageError> {
        self.series.set(self.db, series_instance_uid, None)
    }

    fn delete_instance(&mut self, sop_instance_uid: &str) -> Result<(), StorageError> {
        self.instances.set(self.db, sop_instance_uid, None)
    }

    fn rejected(
        &mut self,
        sop_instance_uid: &str,
    ) -> Result<Option<RejectedInstance>, StorageError> {
        self.rejected.get(self.db, sop_instance_uid)
    }

    fn put_rejected(&mut self, record: RejectedInstance) -> Result<(), StorageError> {
        let key = record.record.sop_instance_uid.clone();
        self.rejected.set(self.db, &key, Some(record))
    }

    fn delete_rejected(&mut self, sop_instance_uid: &str) -> Result<(), StorageError> {
        self.rejected.set(self.db, sop_instance_uid, None)
    }

    fn statistics(&mut self) -> Result<Statistics, StorageError> {
        Ok(self.stats)
    }

    fn put_statistics(&mut self, stats: Statistics) -> Result<(), StorageError> {
        self.stats = stats;
        Ok(())
    }

    fn append_event(&mut self, event: NewEvent) -> Result<(), StorageError> {
        self.events.push(event);
        Ok(())
    }

    fn mark_unstable(
        &mut self,
        study_instance_uid: &str,
        patient_key: &str,
        series_instance_uid: &str,
    ) -> Result<(), StorageError> {
        super::touched::touch(
            &mut self.touched,
            study_instance_uid,
            patient_key,
            series_instance_uid,
        );
        // Marked again after being forgotten in this transaction: the mark stands.
        self.gone.retain(|s| s != study_instance_uid);
        Ok(())
    }

    fn forget_unstable(&mut self, study_instance_uid: &str) -> Result<(), StorageError> {
        self.touched.remove(study_instance_uid);
        self.gone.push(study_instance_uid.to_string());
        Ok(())
    }
}
