//! The outbox and flags on PostgreSQL: `events` (numbered in commit order, see
//! [`super::txn::insert_events`]), `unstable` (quiet periods), worker cursors and
//! `deliveries`, `flags` and `read_marks`. Every write is one transaction.

use std::collections::HashSet;

use super::conn::{decode, encode};
use super::txn::insert_events;
use super::{sql_limit, PgIndex};
use crate::error::StorageError;
use crate::events::{Delivery, DeliveryState, Event, EventKind, Flag, Flags, NewEvent, Outbox};

fn event_of(row: &tokio_postgres::Row) -> Result<Event, StorageError> {
    let seq: i64 = row.get(0);
    let mut event: Event = decode("event", &seq.to_string(), row.get::<_, &[u8]>(1))?;
    event.seq = seq as u64;
    Ok(event)
}

fn delivery_params(d: &Delivery) -> Result<super::txn::Params, StorageError> {
    Ok(vec![
        Box::new(d.worker.clone()),
        Box::new(d.seq as i64),
        Box::new(encode("delivery", &d.idempotency_key, d)?),
    ])
}

const PUT_DELIVERY: &str = "INSERT INTO deliveries (worker, seq, record) VALUES ($1, $2, $3) \
     ON CONFLICT (worker, seq) DO UPDATE SET record = EXCLUDED.record";

impl Outbox for PgIndex {
    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, StorageError> {
        self.number_events()?;
        self.rows(
            "reading events",
            "SELECT seq, record FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
            vec![Box::new(after as i64), Box::new(sql_limit(limit))],
        )?
        .iter()
        .map(event_of)
        .collect()
    }

    fn last_seq(&self) -> Result<u64, StorageError> {
        self.number_events()?;
        let rows = self.rows(
            "reading the last event number",
            "SELECT coalesce(max(seq), 0)::bigint FROM events",
            Vec::new(),
        )?;
        Ok(rows.first().map(|r| r.get::<_, i64>(0)).unwrap_or(0) as u64)
    }

    fn mark_stable(&self, now_ms: u64, quiet_ms: u64) -> Result<Vec<Event>, StorageError> {
        self.write(|txn| {
            // Row locks make this safe on every node at once: a study is taken by one.
            let quiet = txn.query(
                "taking quiet studies",
                "DELETE FROM unstable WHERE last_update_ms + $2 <= $1 \
                 RETURNING study_uid, patient_key, series",
                vec![Box::new(now_ms as i64), Box::new(quiet_ms as i64)],
            )?;
            if quiet.is_empty() {
                return Ok(Vec::new());
            }
            let mut series_asked = Vec::new();
            let mut studies_asked = Vec::new();
            for row in &quiet {
                studies_asked.push(row.get::<_, String>(0));
                series_asked.extend(row.get::<_, Vec<String>>(2));
            }
            let held_series: HashSet<String> = txn
                .query(
                    "checking series",
                    "SELECT uid FROM series WHERE uid = ANY($1)",
                    vec![Box::new(series_asked)],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let held_studies: HashSet<String> = txn
                .query(
                    "checking studies",
                    "SELECT uid FROM studies WHERE uid = ANY($1)",
                    vec![Box::new(studies_asked)],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let mut events = Vec::new();
            for row in &quiet {
                let study: String = row.get(0);
                let patient_key: String = row.get(1);
                let stable = |kind, series: Option<String>| NewEvent {
                    kind,
                    study_instance_uid: study.clone(),
                    series_instance_uid: series,
                    sop_instance_uid: None,
                    patient_key: patient_key.clone(),
                    accession_number: None,
                    previous_study_instance_uid: None,
                    previous_patient_key: None,
                };
                for series in row.get::<_, Vec<String>>(2) {
                    if held_series.contains(&series) {
                        events.push(stable(EventKind::SeriesStable, Some(series)));
                    }
                }
                if held_studies.contains(&study) {
                    events.push(stable(EventKind::StudyStable, None));
                }
            }
            let events = if events.is_empty() {
                Vec::new()
            } else {
                insert_events(txn, events)?
            };
            Ok(events)
        })
    }

    fn cursor(&self, worker: &str) -> Result<u64, StorageError> {
        let rows = self.rows(
            "reading a worker cursor",
            "SELECT seq FROM cursors WHERE worker = $1",
            vec![Box::new(worker.to_string())],
        )?;
        Ok(rows.first().map(|r| r.get::<_, i64>(0)).unwrap_or(0) as u64)
    }

    fn advance(&self, worker: &str, cursor: u64, created: &[Delivery]) -> Result<(), StorageError> {
        self.write(|txn| {
            for d in created {
                txn.execute("recording a delivery", PUT_DELIVERY, delivery_params(d)?)?;
            }
            txn.execute(
                "advancing a worker cursor",
                "INSERT INTO cursors (worker, seq) VALUES ($1, $2) \
                 ON CONFLICT (worker) DO UPDATE SET seq = EXCLUDED.seq",
                vec![Box::new(worker.to_string()), Box::new(cursor as i64)],
            )
        })
    }

    fn put_delivery(&self, d: &Delivery) -> Result<(), StorageError> {
        self.write(|txn| {
            txn.execute("recording a delivery", PUT_DELIVERY, delivery_params(d)?)?;
            if d.state == DeliveryState::Delivered {
                txn.execute(
                    "recording a delivered study",
                    "INSERT INTO delivered_studies (worker, study_uid, seq) VALUES ($1, $2, $3) \
                     ON CONFLICT (worker, study_uid) DO UPDATE SET seq = EXCLUDED.seq",
                    vec![
                        Box::new(d.worker.clone()),
                        Box::new(d.study_instance_uid.clone()),
                        Box::new(d.seq as i64),
                    ],
                )?;
            }
            Ok(())
        })
    }

    fn delivered_for_study(&self, worker: &str, study: &str) -> Result<Option<u64>, StorageError> {
        let rows = self.rows(
            "reading a delivered study",
            "SELECT seq FROM delivered_studies WHERE worker = $1 AND study_uid = $2",
            vec![Box::new(worker.to_string()), Box::new(study.to_string())],
        )?;
        Ok(rows.first().map(|r| r.get::<_, i64>(0) as u64))
    }

    fn delivery(&self, worker: &str, seq: u64) -> Result<Option<Delivery>, StorageError> {
        let rows = self.rows(
            "reading a delivery",
            "SELECT record FROM deliveries WHERE worker = $1 AND seq = $2",
            vec![Box::new(worker.to_string()), Box::new(seq as i64)],
        )?;
        rows.first()
            .map(|r| decode("delivery", worker, r.get::<_, &[u8]>(0)))
            .transpose()
    }

    fn retry(&self, worker: &str, seq: u64) -> Result<Option<Delivery>, StorageError> {
        self.write(|txn| {
            let rows = txn.query(
                "reading a delivery",
                "SELECT record FROM deliveries WHERE worker = $1 AND seq = $2 FOR UPDATE",
                vec![Box::new(worker.to_string()), Box::new(seq as i64)],
            )?;
            let Some(row) = rows.first() else {
                return Ok(None);
            };
            let mut d: Delivery = decode("delivery", worker, row.get::<_, &[u8]>(0))?;
            d.state = DeliveryState::Pending;
            d.attempts = 0;
            d.next_attempt_ms = 0;
            txn.execute("queueing a retry", PUT_DELIVERY, delivery_params(&d)?)?;
            txn.execute(
                "queueing a retry",
                "INSERT INTO retries (worker, seq) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                vec![Box::new(worker.to_string()), Box::new(seq as i64)],
            )?;
            Ok(Some(d))
        })
    }

    fn take_retries(&self, worker: &str) -> Result<Vec<Delivery>, StorageError> {
        // Asked every poll of every worker's dispatcher: a plain read when nothing waits,
        // the write transaction only when something does.
        let waiting = self.rows(
            "looking for retries",
            "SELECT 1 FROM retries WHERE worker = $1 LIMIT 1",
            vec![Box::new(worker.to_string())],
        )?;
        if waiting.is_empty() {
            return Ok(Vec::new());
        }
        self.write(|txn| {
            let rows = txn.query(
                "taking retries",
                "WITH taken AS (DELETE FROM retries WHERE worker = $1 RETURNING seq) \
                 SELECT d.record FROM deliveries d JOIN taken t ON d.seq = t.seq \
                 WHERE d.worker = $1 ORDER BY d.seq",
                vec![Box::new(worker.to_string())],
            )?;
            rows.iter()
                .map(|r| decode("delivery", worker, r.get::<_, &[u8]>(0)))
                .collect()
        })
    }

    fn deliveries(
        &self,
        worker: Option<&str>,
        after: Option<(&str, u64)>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StorageError> {
        let (after_worker, after_seq) = match after {
            Some((w, s)) => (Some(w.to_string()), s as i64),
            None => (None, 0),
        };
        self.rows(
            "listing deliveries",
            "SELECT record FROM deliveries WHERE ($1::text IS NULL OR worker = $1) \
             AND ($2::text IS NULL OR (worker, seq) > ($2, $3)) ORDER BY worker, seq LIMIT $4",
            vec![
                Box::new(worker.map(str::to_string)),
                Box::new(after_worker),
                Box::new(after_seq),
                Box::new(sql_limit(limit)),
            ],
        )?
        .iter()
        .map(|r| decode("delivery", "delivery", r.get::<_, &[u8]>(0)))
        .collect()
    }
}

impl Flags for PgIndex {
    fn add_flag(&self, flag: &Flag) -> Result<(), StorageError> {
        self.rows(
            "recording a flag",
            "INSERT INTO flags (study_uid, id, record) VALUES ($1, $2, $3) \
             ON CONFLICT (study_uid, id) DO UPDATE SET record = EXCLUDED.record",
            vec![
                Box::new(flag.study_instance_uid.clone()),
                Box::new(flag.id.clone()),
                Box::new(encode("flag", &flag.id, flag)?),
            ],
        )
        .map(drop)
    }

    fn flags(&self, study: &str) -> Result<Vec<Flag>, StorageError> {
        self.records_of(
            "flag",
            "SELECT record FROM flags WHERE study_uid = $1 ORDER BY id",
            study,
        )
    }

    fn mark_read(&self, study: &str, read: bool) -> Result<(), StorageError> {
        let sql = if read {
            "INSERT INTO read_marks (study_uid) VALUES ($1) ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM read_marks WHERE study_uid = $1"
        };
        self.rows(
            "marking a study read",
            sql,
            vec![Box::new(study.to_string())],
        )
        .map(drop)
    }

    fn is_read(&self, study: &str) -> Result<bool, StorageError> {
        Ok(!self
            .rows(
                "reading a read mark",
                "SELECT 1 FROM read_marks WHERE study_uid = $1",
                vec![Box::new(study.to_string())],
            )?
            .is_empty())
    }
}
