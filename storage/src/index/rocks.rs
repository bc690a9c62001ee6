//! The index on an embedded RocksDB: one column family per level, one for secondary keys,
//! one for archive metadata (statistics). Every change is one synced write batch.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rocksdb::{
    BoundColumnFamily, ColumnFamilyDescriptor, DBWithThreadMode, MultiThreaded, Options,
};
use serde::de::DeserializeOwned;

use super::keys::{index_prefix, uid_of_entry, value_of_entry};
use super::writeset::WriteSet;
use super::{DuplicatePolicy, Index, Lookup, NewInstance, SecondaryKey, Statistics, StoreDecision};
use crate::error::StorageError;
use crate::events::{EventKind, NewEvent};
use crate::records::{InstanceRecord, PatientRecord, SeriesRecord, StudyRecord};
use std::collections::BTreeMap;

pub(crate) const CF_PATIENTS: &str = "patients";
pub(crate) const CF_STUDIES: &str = "studies";
pub(crate) const CF_SERIES: &str = "series";
pub(crate) const CF_INSTANCES: &str = "instances";
pub(crate) const CF_SECONDARY: &str = "secondary";
pub(crate) const CF_META: &str = "meta";
pub(crate) const CF_EVENTS: &str = "events";
pub(crate) const CF_UNSTABLE: &str = "unstable";
pub(crate) const CF_DELIVERIES: &str = "deliveries";
pub(crate) const CF_FLAGS: &str = "flags";
const ALL_CFS: &[&str] = &[
    CF_PATIENTS,
    CF_STUDIES,
    CF_SERIES,
    CF_INSTANCES,
    CF_SECONDARY,
    CF_META,
    CF_EVENTS,
    CF_UNSTABLE,
    CF_DELIVERIES,
    CF_FLAGS,
];
const STATS_KEY: &[u8] = b"statistics";

type Db = DBWithThreadMode<MultiThreaded>;

pub struct RocksIndex {
    db: Db,
    path: PathBuf,
    /// Serializes read-modify-write batches; readers never take it.
    write_lock: Mutex<()>,
}

impl std::fmt::Debug for RocksIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksIndex")
            .field("path", &self.path)
            .finish()
    }
}

impl RocksIndex {
    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// Serialize read-modify-write batches (index changes, events, stability).
    pub(crate) fn lock_writes(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Write a batch's changes, its events (the outbox) and the statistics as one synced
    /// RocksDB write.
    fn commit(
        &self,
        ws: WriteSet<'_>,
        events: Vec<crate::events::NewEvent>,
        unstable: impl FnOnce(&mut rocksdb::WriteBatch) -> Result<(), StorageError>,
        context: &'static str,
    ) -> Result<(), StorageError> {
        let (mut batch, stats) = ws.into_batch()?;
        self.append_events(&mut batch, events)?;
        unstable(&mut batch)?;
        let meta = self.cf(CF_META)?;
        let stats_bytes =
            serde_json::to_vec(&stats).map_err(|source| StorageError::CorruptRecord {
                kind: CF_META,
                key: "statistics".into(),
                source,
            })?;
        batch.put_cf(&meta, STATS_KEY, stats_bytes);
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(true);
        self.db
            .write_opt(batch, &wo)
            .map_err(StorageError::db(context))
    }

    /// Open for reading only, beside a running server (no lock taken): `pacs verify`.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self, StorageError> {
        let path = path.as_ref().to_path_buf();
        let opts = Options::default();
        let db = Db::open_cf_for_read_only(&opts, &path, ALL_CFS.iter().copied(), false).map_err(
            |source| StorageError::Db {
                context: "opening the index read-only",
                source,
            },
        )?;
        Ok(RocksIndex {
            db,
            path,
            write_lock: Mutex::new(()),
        })
    }

    pub fn open(path: impl AsRef<Path>) -> Result<Self, StorageError> {
        let path = path.as_ref().to_path_buf();
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        opts.set_keep_log_file_num(5);
        opts.increase_parallelism(2);
        let cfs = ALL_CFS.iter().map(|name| {
            let mut cf_opts = Options::default();
            cf_opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
            ColumnFamilyDescriptor::new(*name, cf_opts)
        });
        let db = Db::open_cf_descriptors(&opts, &path, cfs).map_err(|source| {
            let detail = source.to_string();
            if detail.contains("lock") || detail.contains("LOCK") {
                StorageError::Locked {
                    path: path.clone(),
                    detail,
                }
            } else {
                StorageError::Db {
                    context: "opening the index",
                    source,
                }
            }
        })?;
        Ok(RocksIndex {
            db,
            path,
            write_lock: Mutex::new(()),
        })
    }

    pub(crate) fn cf(
        &self,
        name: &'static str,
    ) -> Result<Arc<BoundColumnFamily<'_>>, StorageError> {
        self.db
            .cf_handle(name)
            .ok_or(StorageError::MissingColumnFamily(name))
    }

    fn list_keys(
        &self,
        cf: &'static str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        let handle = self.cf(cf)?;
        let mode = match after {
            Some(a) => rocksdb::IteratorMode::From(a.as_bytes(), rocksdb::Direction::Forward),
            None => rocksdb::IteratorMode::Start,
        };
        let mut out = Vec::new();
        for item in self.db.iterator_cf(&handle, mode) {
            let (k, _) = item.map_err(StorageError::db("listing keys"))?;
            let key = String::from_utf8_lossy(&k).into_owned();
            if Some(key.as_str()) == after {
                continue;
            }
            if out.len() >= limit {
                break;
            }
            out.push(key);
        }
        Ok(out)
    }

    pub(crate) fn get_record<T: DeserializeOwned>(
        &self,
        cf: &'static str,
        key: &str,
    ) -> Result<Option<T>, StorageError> {
        let handle = self.cf(cf)?;
        let Some(bytes) = self
            .db
            .get_pinned_cf(&handle, key.as_bytes())
            .map_err(StorageError::db("reading a record"))?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StorageError::CorruptRecord {
                kind: cf,
                key: key.to_string(),
                source,
            })
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
        let _guard = self.lock_writes();
        let mut ws = WriteSet::new(self, self.statistics()?);
        let mut decisions = Vec::with_capacity(items.len());
        let mut events = Vec::new();
        let mut touched: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
        for item in items {
            let sop = item.record.sop_instance_uid.clone();
            let existing = ws.instance(&sop)?;
            if existing.is_some() && policy == DuplicatePolicy::Keep {
                decisions.push(StoreDecision::Duplicate);
                continue;
            }
            let study = item.record.study_instance_uid.clone();
            let series = item.record.series_instance_uid.clone();
            if let Some(old) = &existing {
                ws.remove_instance(old)?;
            }
            ws.add_instance(item)?;
            // The study's patient, as the write set settled it (a study keeps its first patient).
            let patient_key = ws
                .instance(&sop)?
                .map(|r| r.patient_key)
                .unwrap_or_default();
            events.push(NewEvent {
                kind: EventKind::InstanceStored,
                study_instance_uid: study.clone(),
                series_instance_uid: Some(series.clone()),
                sop_instance_uid: Some(sop),
                patient_key: patient_key.clone(),
            });
            let entry = touched.entry(study).or_insert((patient_key, Vec::new()));
            if !entry.1.contains(&series) {
                entry.1.push(series);
            }
            decisions.push(match existing {
                Some(old) => StoreDecision::Replaced { old_blob: old.blob },
                None => StoreDecision::Stored,
            });
        }
        self.commit(
            ws,
            events,
            |batch| self.touch_unstable(batch, touched),
            "committing an ingest batch",
        )?;
        Ok(decisions)
    }

    fn delete_instances(&self, uids: &[String]) -> Result<Vec<InstanceRecord>, StorageError> {
        let _guard = self.lock_writes();
        let mut ws = WriteSet::new(self, self.statistics()?);
        let mut removed = Vec::with_capacity(uids.len());
        for uid in uids {
            if let Some(rec) = ws.instance(uid)? {
                ws.remove_instance(&rec)?;
                removed.push(rec);
            }
        }
        ws.refresh_modalities(&removed)?;
        let mut events: Vec<NewEvent> = removed
            .iter()
            .map(|r| NewEvent {
                kind: EventKind::InstanceDeleted,
                study_instance_uid: r.study_instance_uid.clone(),
                series_instance_uid: Some(r.series_instance_uid.clone()),
                sop_instance_uid: Some(r.sop_instance_uid.clone()),
                patient_key: r.patient_key.clone(),
            })
            .collect();
        let mut gone = Vec::new();
        let studies: BTreeMap<&str, &str> = removed
            .iter()
            .map(|r| (r.study_instance_uid.as_str(), r.patient_key.as_str()))
            .collect();
        for (study, patient_key) in studies {
            if !ws.study_exists(study)? {
                gone.push(study.to_string());
                events.push(NewEvent {
                    kind: EventKind::StudyDeleted,
                    study_instance_uid: study.to_string(),
                    series_instance_uid: None,
                    sop_instance_uid: None,
                    patient_key: patient_key.to_string(),
                });
            }
        }
        self.commit(
            ws,
            events,
            |batch| {
                gone.iter()
                    .try_for_each(|study| self.forget_unstable(batch, study))
            },
            "committing a deletion",
        )?;
        Ok(removed)
    }

    fn statistics(&self) -> Result<Statistics, StorageError> {
        let meta = self.cf(CF_META)?;
        match self
            .db
            .get_pinned_cf(&meta, STATS_KEY)
            .map_err(StorageError::db("reading statistics"))?
        {
            Some(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| StorageError::CorruptRecord {
                    kind: CF_META,
                    key: "statistics".into(),
                    source,
                })
            }
            None => Ok(Statistics::default()),
        }
    }

    fn instance(&self, sop_instance_uid: &str) -> Result<Option<InstanceRecord>, StorageError> {
        self.get_record(CF_INSTANCES, sop_instance_uid)
    }

    fn series(&self, series_instance_uid: &str) -> Result<Option<SeriesRecord>, StorageError> {
        self.get_record(CF_SERIES, series_instance_uid)
    }

    fn study(&self, study_instance_uid: &str) -> Result<Option<StudyRecord>, StorageError> {
        self.get_record(CF_STUDIES, study_instance_uid)
    }

    fn patient(&self, patient_key: &str) -> Result<Option<PatientRecord>, StorageError> {
        self.get_record(CF_PATIENTS, patient_key)
    }

    fn scan_secondary_by(
        &self,
        key: &SecondaryKey,
        lookup: &Lookup,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        let cf = self.cf(CF_SECONDARY)?;
        let (start, bound) = match lookup {
            Lookup::Exact => (key.exact_prefix(), key.exact_prefix()),
            Lookup::Prefix => (key.value_prefix(), key.value_prefix()),
            Lookup::Range { .. } => (key.value_prefix(), index_prefix(key)),
        };
        let mut out = Vec::new();
        let mode = rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward);
        for item in self.db.iterator_cf(&cf, mode) {
            let (k, _) = item.map_err(StorageError::db("scanning a secondary index"))?;
            if !k.starts_with(&bound) || out.len() >= limit {
                break;
            }
            if let Lookup::Range { upper: Some(upper) } = lookup {
                if value_of_entry(&k).is_some_and(|v| v > upper.as_str()) {
                    break;
                }
            }
            if let Some(uid) = uid_of_entry(&k) {
                out.push(uid.to_string());
            }
        }
        Ok(out)
    }

    fn list_patients(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        self.list_keys(CF_PATIENTS, after, limit)
    }

    fn list_studies(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, StorageError> {
        self.list_keys(CF_STUDIES, after, limit)
    }

    fn list_instances(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        self.list_keys(CF_INSTANCES, after, limit)
    }
}
