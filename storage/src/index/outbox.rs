//! The outbox on RocksDB: `events` (sequence number → event), `unstable` (study → last
//! update, for the quiet-period events), `deliveries` (worker + sequence → state), and worker
//! cursors and the last sequence number in `meta`. Events are added to the index's own write
//! batches under its write lock, so their order is commit order.

use std::collections::BTreeMap;

use rocksdb::WriteBatch;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::rocks::{
    RocksIndex, CF_DELIVERIES, CF_EVENTS, CF_FLAGS, CF_META, CF_SERIES, CF_STUDIES, CF_UNSTABLE,
};
use crate::error::StorageError;
use crate::events::{Delivery, Event, EventKind, NewEvent, Outbox, Unstable};

const SEQ_KEY: &[u8] = b"event_seq";

/// A raw key and value read from RocksDB.
type KeyValue = (Box<[u8]>, Box<[u8]>);

fn cursor_key(worker: &str) -> Vec<u8> {
    format!("cursor\0{worker}").into_bytes()
}

fn delivered_study_key(worker: &str, study: &str) -> Vec<u8> {
    format!("delivered\0{worker}\0{study}").into_bytes()
}

fn delivery_key(worker: &str, seq: u64) -> Vec<u8> {
    let mut k = worker.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn encode<T: Serialize>(kind: &'static str, key: &str, v: &T) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(v).map_err(|source| StorageError::CorruptRecord {
        kind,
        key: key.to_string(),
        source,
    })
}

fn decode<T: DeserializeOwned>(kind: &'static str, key: &str, b: &[u8]) -> Result<T, StorageError> {
    serde_json::from_slice(b).map_err(|source| StorageError::CorruptRecord {
        kind,
        key: key.to_string(),
        source,
    })
}

impl RocksIndex {
    fn read_u64(&self, cf: &'static str, key: &[u8]) -> Result<u64, StorageError> {
        let handle = self.cf(cf)?;
        Ok(self
            .db()
            .get_pinned_cf(&handle, key)
            .map_err(StorageError::db("reading a counter"))?
            .and_then(|b| <[u8; 8]>::try_from(&b[..]).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0))
    }

    /// Put `events` into `batch` with the next sequence numbers (call under the write lock).
    pub(crate) fn append_events(
        &self,
        batch: &mut WriteBatch,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Event>, StorageError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let cf = self.cf(CF_EVENTS)?;
        let mut seq = self.read_u64(CF_META, SEQ_KEY)?;
        let time_ms = now_ms();
        let mut out = Vec::with_capacity(events.len());
        for e in events {
            seq += 1;
            let event = Event {
                seq,
                time_ms,
                kind: e.kind,
                study_instance_uid: e.study_instance_uid,
                series_instance_uid: e.series_instance_uid,
                sop_instance_uid: e.sop_instance_uid,
                patient_key: e.patient_key,
            };
            batch.put_cf(
                &cf,
                seq.to_be_bytes(),
                encode(CF_EVENTS, &seq.to_string(), &event)?,
            );
            out.push(event);
        }
        batch.put_cf(&self.cf(CF_META)?, SEQ_KEY, seq.to_be_bytes());
        Ok(out)
    }

    /// Note in `batch` that these studies received instances now (restarts their quiet period).
    pub(crate) fn touch_unstable(
        &self,
        batch: &mut WriteBatch,
        touched: BTreeMap<String, (String, Vec<String>)>,
    ) -> Result<(), StorageError> {
        let cf = self.cf(CF_UNSTABLE)?;
        let now = now_ms();
        for (study, (patient_key, series)) in touched {
            let mut entry: Unstable = match self
                .db()
                .get_pinned_cf(&cf, study.as_bytes())
                .map_err(StorageError::db("reading an unstable study"))?
            {
                Some(b) => decode(CF_UNSTABLE, &study, &b)?,
                None => Unstable {
                    study_instance_uid: study.clone(),
                    patient_key,
                    last_update_ms: now,
                    series: Vec::new(),
                },
            };
            entry.last_update_ms = now;
            for s in series {
                if !entry.series.contains(&s) {
                    entry.series.push(s);
                }
            }
            batch.put_cf(&cf, study.as_bytes(), encode(CF_UNSTABLE, &study, &entry)?);
        }
        Ok(())
    }

    /// Forget a deleted study's quiet-period entry.
    pub(crate) fn forget_unstable(
        &self,
        batch: &mut WriteBatch,
        study: &str,
    ) -> Result<(), StorageError> {
        batch.delete_cf(&self.cf(CF_UNSTABLE)?, study.as_bytes());
        Ok(())
    }

    /// Keys and values of `cf` starting with `prefix`, in key order.
    fn scan_prefix(
        &self,
        cf: &'static str,
        prefix: &[u8],
        context: &'static str,
    ) -> Result<Vec<KeyValue>, StorageError> {
        let handle = self.cf(cf)?;
        let mut out = Vec::new();
        for item in self.db().iterator_cf(
            &handle,
            rocksdb::IteratorMode::From(prefix, rocksdb::Direction::Forward),
        ) {
            let (k, v) = item.map_err(StorageError::db(context))?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k, v));
        }
        Ok(out)
    }

    fn write_synced(&self, batch: WriteBatch, context: &'static str) -> Result<(), StorageError> {
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(true);
        self.db()
            .write_opt(batch, &wo)
            .map_err(StorageError::db(context))
    }
}

impl Outbox for RocksIndex {
    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, StorageError> {
        let cf = self.cf(CF_EVENTS)?;
        let start = (after.saturating_add(1)).to_be_bytes();
        let mut out = Vec::new();
        for item in self.db().iterator_cf(
            &cf,
            rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward),
        ) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(StorageError::db("reading events"))?;
            out.push(decode(CF_EVENTS, &String::from_utf8_lossy(&k), &v)?);
        }
        Ok(out)
    }

    fn last_seq(&self) -> Result<u64, StorageError> {
        self.read_u64(CF_META, SEQ_KEY)
    }

    fn mark_stable(&self, now_ms: u64, quiet_ms: u64) -> Result<Vec<Event>, StorageError> {
        let _guard = self.lock_writes();
        let cf = self.cf(CF_UNSTABLE)?;
        let mut quiet = Vec::new();
        for item in self.db().iterator_cf(&cf, rocksdb::IteratorMode::Start) {
            let (k, v) = item.map_err(StorageError::db("reading unstable studies"))?;
            let entry: Unstable = decode(CF_UNSTABLE, &String::from_utf8_lossy(&k), &v)?;
            if entry.last_update_ms.saturating_add(quiet_ms) <= now_ms {
                quiet.push(entry);
            }
        }
        if quiet.is_empty() {
            return Ok(Vec::new());
        }
        let series_cf = self.cf(CF_SERIES)?;
        let studies_cf = self.cf(CF_STUDIES)?;
        let mut events = Vec::new();
        let mut batch = WriteBatch::default();
        for entry in quiet {
            batch.delete_cf(&cf, entry.study_instance_uid.as_bytes());
            let exists = |cf: &std::sync::Arc<rocksdb::BoundColumnFamily<'_>>, k: &str| {
                self.db()
                    .get_pinned_cf(cf, k.as_bytes())
                    .map(|v| v.is_some())
                    .map_err(StorageError::db("checking a record"))
            };
            for series in &entry.series {
                if exists(&series_cf, series)? {
                    events.push(NewEvent {
                        kind: EventKind::SeriesStable,
                        study_instance_uid: entry.study_instance_uid.clone(),
                        series_instance_uid: Some(series.clone()),
                        sop_instance_uid: None,
                        patient_key: entry.patient_key.clone(),
                    });
                }
            }
            if exists(&studies_cf, &entry.study_instance_uid)? {
                events.push(NewEvent {
                    kind: EventKind::StudyStable,
                    study_instance_uid: entry.study_instance_uid.clone(),
                    series_instance_uid: None,
                    sop_instance_uid: None,
                    patient_key: entry.patient_key.clone(),
                });
            }
        }
        let events = self.append_events(&mut batch, events)?;
        self.write_synced(batch, "committing stability events")?;
        Ok(events)
    }

    fn cursor(&self, worker: &str) -> Result<u64, StorageError> {
        self.read_u64(CF_META, &cursor_key(worker))
    }

    fn advance(&self, worker: &str, cursor: u64, created: &[Delivery]) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        let cf = self.cf(CF_DELIVERIES)?;
        for d in created {
            batch.put_cf(
                &cf,
                delivery_key(&d.worker, d.seq),
                encode(CF_DELIVERIES, &d.idempotency_key, d)?,
            );
        }
        batch.put_cf(&self.cf(CF_META)?, cursor_key(worker), cursor.to_be_bytes());
        self.write_synced(batch, "advancing a worker cursor")
    }

    fn put_delivery(&self, d: &Delivery) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            &self.cf(CF_DELIVERIES)?,
            delivery_key(&d.worker, d.seq),
            encode(CF_DELIVERIES, &d.idempotency_key, d)?,
        );
        if d.state == crate::events::DeliveryState::Delivered {
            batch.put_cf(
                &self.cf(CF_META)?,
                delivered_study_key(&d.worker, &d.study_instance_uid),
                d.seq.to_be_bytes(),
            );
        }
        self.write_synced(batch, "recording a delivery")
    }

    fn delivered_for_study(&self, worker: &str, study: &str) -> Result<Option<u64>, StorageError> {
        let seq = self.read_u64(CF_META, &delivered_study_key(worker, study))?;
        Ok((seq > 0).then_some(seq))
    }

    fn delivery(&self, worker: &str, seq: u64) -> Result<Option<Delivery>, StorageError> {
        let cf = self.cf(CF_DELIVERIES)?;
        self.db()
            .get_pinned_cf(&cf, delivery_key(worker, seq))
            .map_err(StorageError::db("reading a delivery"))?
            .map(|b| decode(CF_DELIVERIES, worker, &b))
            .transpose()
    }

    fn retry(&self, worker: &str, seq: u64) -> Result<Option<Delivery>, StorageError> {
        let Some(mut d) = self.delivery(worker, seq)? else {
            return Ok(None);
        };
        d.state = crate::events::DeliveryState::Pending;
        d.attempts = 0;
        d.next_attempt_ms = 0;
        let mut batch = WriteBatch::default();
        batch.put_cf(
            &self.cf(CF_DELIVERIES)?,
            delivery_key(worker, seq),
            encode(CF_DELIVERIES, &d.idempotency_key, &d)?,
        );
        let mut marker = format!("retry\0{worker}\0").into_bytes();
        marker.extend_from_slice(&seq.to_be_bytes());
        batch.put_cf(&self.cf(CF_META)?, marker, []);
        self.write_synced(batch, "queueing a retry")?;
        Ok(Some(d))
    }

    fn take_retries(&self, worker: &str) -> Result<Vec<Delivery>, StorageError> {
        let meta = self.cf(CF_META)?;
        let prefix = format!("retry\0{worker}\0").into_bytes();
        let markers: Vec<Box<[u8]>> = self
            .scan_prefix(CF_META, &prefix, "reading retry markers")?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        if markers.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut batch = WriteBatch::default();
        for k in markers {
            if let Ok(seq) = <[u8; 8]>::try_from(&k[prefix.len()..]) {
                if let Some(d) = self.delivery(worker, u64::from_be_bytes(seq))? {
                    out.push(d);
                }
            }
            batch.delete_cf(&meta, k);
        }
        self.write_synced(batch, "taking retry markers")?;
        Ok(out)
    }

    fn deliveries(
        &self,
        worker: Option<&str>,
        after: Option<(&str, u64)>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StorageError> {
        let cf = self.cf(CF_DELIVERIES)?;
        let start = match (after, worker) {
            (Some((w, s)), _) => delivery_key(w, s.saturating_add(1)),
            (None, Some(w)) => delivery_key(w, 0),
            (None, None) => Vec::new(),
        };
        let mut out = Vec::new();
        for item in self.db().iterator_cf(
            &cf,
            rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward),
        ) {
            if out.len() >= limit {
                break;
            }
            let (_, v) = item.map_err(StorageError::db("reading deliveries"))?;
            let d: Delivery = decode(CF_DELIVERIES, "delivery", &v)?;
            if worker.is_some_and(|w| w != d.worker) {
                break;
            }
            out.push(d);
        }
        Ok(out)
    }
}

fn flag_key(study: &str, id: &str) -> Vec<u8> {
    format!("{study}\0{id}").into_bytes()
}

impl crate::events::Flags for RocksIndex {
    fn add_flag(&self, flag: &crate::events::Flag) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            &self.cf(CF_FLAGS)?,
            flag_key(&flag.study_instance_uid, &flag.id),
            encode(CF_FLAGS, &flag.id, flag)?,
        );
        self.write_synced(batch, "recording a flag")
    }

    fn flags(&self, study: &str) -> Result<Vec<crate::events::Flag>, StorageError> {
        let prefix = format!("{study}\0").into_bytes();
        self.scan_prefix(CF_FLAGS, &prefix, "reading flags")?
            .iter()
            .map(|(_, v)| decode(CF_FLAGS, study, v))
            .collect()
    }

    fn mark_read(&self, study: &str, read: bool) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        let key = format!("read\0{study}").into_bytes();
        let meta = self.cf(CF_META)?;
        if read {
            batch.put_cf(&meta, key, []);
        } else {
            batch.delete_cf(&meta, key);
        }
        self.write_synced(batch, "marking a study read")
    }

    fn is_read(&self, study: &str) -> Result<bool, StorageError> {
        Ok(self
            .db()
            .get_pinned_cf(&self.cf(CF_META)?, format!("read\0{study}").as_bytes())
            .map_err(StorageError::db("reading a read mark"))?
            .is_some())
    }
}
