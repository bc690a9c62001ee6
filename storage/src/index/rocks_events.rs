//! The outbox's part of a RocksDB write batch: events with their next sequence numbers, and
//! the quiet-period marks of studies that received instances or went away. Called under the
//! index's write lock, so sequence numbers follow commit order.

use rocksdb::WriteBatch;

use super::rocks_db::{decode, encode, RocksDb, CF_EVENTS, CF_META, CF_UNSTABLE};
use crate::error::StorageError;
use crate::events::{Event, NewEvent, Unstable};

/// Key of the last sequence number given out, in `meta`.
pub(crate) const SEQ_KEY: &[u8] = b"event_seq";

pub(crate) use super::touched::Touched;

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Put `events` into `batch` with the next sequence numbers.
pub(crate) fn append_events(
    db: &RocksDb,
    batch: &mut WriteBatch,
    events: Vec<NewEvent>,
) -> Result<Vec<Event>, StorageError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let cf = db.cf(CF_EVENTS)?;
    let mut seq = db.read_u64(CF_META, SEQ_KEY)?;
    let time_ms = now_ms();
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        seq += 1;
        let event = e.into_event(seq, time_ms);
        batch.put_cf(
            &cf,
            seq.to_be_bytes(),
            encode(CF_EVENTS, &seq.to_string(), &event)?,
        );
        out.push(event);
    }
    batch.put_cf(&db.cf(CF_META)?, SEQ_KEY, seq.to_be_bytes());
    Ok(out)
}

/// Note in `batch` that these studies received instances now (restarts their quiet period).
pub(crate) fn touch_unstable(
    db: &RocksDb,
    batch: &mut WriteBatch,
    touched: Touched,
) -> Result<(), StorageError> {
    let cf = db.cf(CF_UNSTABLE)?;
    let now = now_ms();
    for (study, (patient_key, series)) in touched {
        let mut entry: Unstable = match db
            .raw()
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
    db: &RocksDb,
    batch: &mut WriteBatch,
    study: &str,
) -> Result<(), StorageError> {
    batch.delete_cf(&db.cf(CF_UNSTABLE)?, study.as_bytes());
    Ok(())
}
