//! The outbox and flags on RocksDB: `events` (sequence number → event), `unstable` (study →
//! last update, for the quiet-period events), `deliveries` (worker + sequence → state), and
//! worker cursors and the last sequence number in `meta`. The index's own writes add their
//! events in the same batch ([`super::rocks_events`]), so their order is commit order.

use rocksdb::WriteBatch;

use super::rocks::RocksIndex;
use super::rocks_db::{
    decode, encode, RocksDb, CF_DELIVERIES, CF_EVENTS, CF_FLAGS, CF_META, CF_SERIES, CF_STUDIES,
    CF_UNSTABLE,
};
use super::rocks_events::{append_events, SEQ_KEY};
use crate::error::StorageError;
use crate::events::{Delivery, Event, EventKind, NewEvent, Outbox, Unstable};

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

/// Keys and values of `cf` starting with `prefix`, in key order.
fn scan_prefix(
    db: &RocksDb,
    cf: &'static str,
    prefix: &[u8],
    context: &'static str,
) -> Result<Vec<KeyValue>, StorageError> {
    let handle = db.cf(cf)?;
    let mut out = Vec::new();
    for item in db.raw().iterator_cf(
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

impl Outbox for RocksIndex {
    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, StorageError> {
        let cf = self.db().cf(CF_EVENTS)?;
        let start = (after.saturating_add(1)).to_be_bytes();
        let mut out = Vec::new();
        for item in self.db().raw().iterator_cf(
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
        self.db().read_u64(CF_META, SEQ_KEY)
    }

    fn mark_stable(&self, now_ms: u64, quiet_ms: u64) -> Result<Vec<Event>, StorageError> {
        let _guard = self.lock_writes();
        let cf = self.db().cf(CF_UNSTABLE)?;
        let mut quiet = Vec::new();
        for item in self
            .db()
            .raw()
            .iterator_cf(&cf, rocksdb::IteratorMode::Start)
        {
            let (k, v) = item.map_err(StorageError::db("reading unstable studies"))?;
            let entry: Unstable = decode(CF_UNSTABLE, &String::from_utf8_lossy(&k), &v)?;
            if entry.last_update_ms.saturating_add(quiet_ms) <= now_ms {
                quiet.push(entry);
            }
        }
        if quiet.is_empty() {
            return Ok(Vec::new());
        }
        let series_cf = self.db().cf(CF_SERIES)?;
        let studies_cf = self.db().cf(CF_STUDIES)?;
        let mut events = Vec::new();
        let mut batch = WriteBatch::default();
        for entry in quiet {
            batch.delete_cf(&cf, entry.study_instance_uid.as_bytes());
            let exists = |cf: &std::sync::Arc<rocksdb::BoundColumnFamily<'_>>, k: &str| {
                self.db()
                    .raw()
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
                        accession_number: None,
                        previous_study_instance_uid: None,
                        previous_patient_key: None,
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
                    accession_number: None,
                    previous_study_instance_uid: None,
                    previous_patient_key: None,
                });
            }
        }
        let events = append_events(self.db(), &mut batch, events)?;
        self.db()
            .write_synced(batch, "committing stability events")?;
        Ok(events)
    }

    fn cursor(&self, worker: &str) -> Result<u64, StorageError> {
        self.db().read_u64(CF_META, &cursor_key(worker))
    }

    fn advance(&self, worker: &str, cursor: u64, created: &[Delivery]) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        let cf = self.db().cf(CF_DELIVERIES)?;
        for d in created {
            batch.put_cf(
                &cf,
                delivery_key(&d.worker, d.seq),
                encode(CF_DELIVERIES, &d.idempotency_key, d)?,
            );
        }
        batch.put_cf(
            &self.db().cf(CF_META)?,
            cursor_key(worker),
            cursor.to_be_bytes(),
        );
        self.db().write_synced(batch, "advancing a worker cursor")
    }

    fn put_delivery(&self, d: &Delivery) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            &self.db().cf(CF_DELIVERIES)?,
            delivery_key(&d.worker, d.seq),
            encode(CF_DELIVERIES, &d.idempotency_key, d)?,
        );
        if d.state == crate::events::DeliveryState::Delivered {
            batch.put_cf(
                &self.db().cf(CF_META)?,
                delivered_study_key(&d.worker, &d.study_instance_uid),
                d.seq.to_be_bytes(),
            );
        }
        self.db().write_synced(batch, "recording a delivery")
    }

    fn delivered_for_study(&self, worker: &str, study: &str) -> Result<Option<u64>, StorageError> {
        let seq = self
            .db()
            .read_u64(CF_META, &delivered_study_key(worker, study))?;
        Ok((seq > 0).then_some(seq))
    }

    fn delivery(&self, worker: &str, seq: u64) -> Result<Option<Delivery>, StorageError> {
        let cf = self.db().cf(CF_DELIVERIES)?;
        self.db()
            .raw()
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
            &self.db().cf(CF_DELIVERIES)?,
            delivery_key(worker, seq),
            encode(CF_DELIVERIES, &d.idempotency_key, &d)?,
        );
        let mut marker = format!("retry\0{worker}\0").into_bytes();
        marker.extend_from_slice(&seq.to_be_bytes());
        batch.put_cf(&self.db().cf(CF_META)?, marker, []);
        self.db().write_synced(batch, "queueing a retry")?;
        Ok(Some(d))
    }

    fn take_retries(&self, worker: &str) -> Result<Vec<Delivery>, StorageError> {
        let meta = self.db().cf(CF_META)?;
        let prefix = format!("retry\0{worker}\0").into_bytes();
        let markers: Vec<Box<[u8]>> =
            scan_prefix(self.db(), CF_META, &prefix, "reading retry markers")?
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
        self.db().write_synced(batch, "taking retry markers")?;
        Ok(out)
    }

    fn deliveries(
        &self,
        worker: Option<&str>,
        after: Option<(&str, u64)>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StorageError> {
        let cf = self.db().cf(CF_DELIVERIES)?;
        let start = match (after, worker) {
            (Some((w, s)), _) => delivery_key(w, s.saturating_add(1)),
            (None, Some(w)) => delivery_key(w, 0),
            (None, None) => Vec::new(),
        };
        let mut out = Vec::new();
        for item in self.db().raw().iterator_cf(
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
            &self.db().cf(CF_FLAGS)?,
            flag_key(&flag.study_instance_uid, &flag.id),
            encode(CF_FLAGS, &flag.id, flag)?,
        );
        self.db().write_synced(batch, "recording a flag")
    }

    fn flags(&self, study: &str) -> Result<Vec<crate::events::Flag>, StorageError> {
        let prefix = format!("{study}\0").into_bytes();
        scan_prefix(self.db(), CF_FLAGS, &prefix, "reading flags")?
            .iter()
            .map(|(_, v)| decode(CF_FLAGS, study, v))
            .collect()
    }

    fn mark_read(&self, study: &str, read: bool) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        let key = format!("read\0{study}").into_bytes();
        let meta = self.db().cf(CF_META)?;
        if read {
            batch.put_cf(&meta, key, []);
        } else {
            batch.delete_cf(&meta, key);
        }
        self.db().write_synced(batch, "marking a study read")
    }

    fn is_read(&self, study: &str) -> Result<bool, StorageError> {
        Ok(self
            .db()
            .raw()
            .get_pinned_cf(&self.db().cf(CF_META)?, format!("read\0{study}").as_bytes())
            .map_err(StorageError::db("reading a read mark"))?
            .is_some())
    }
}
