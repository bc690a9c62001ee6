//! [`IndexTxn`] on PostgreSQL: one SQL transaction (READ COMMITTED) on one connection.
//!
//! Several nodes write at once, so every record the rules read is read `FOR UPDATE`: a
//! second writer of the same study waits for the first to commit and then sees its counts
//! (no lost update). Two writers creating the same new study both find nothing; the second
//! one's INSERT fails on the primary key and the whole transaction is run again by
//! [`super::PgIndex`], now seeing the study. Writes go to the database as they are made,
//! so reads see the transaction's own changes.
//!
//! Events are inserted last, under one advisory lock held to the commit: sequence numbers
//! are then given in commit order, and a reader of the outbox can never pass a number whose
//! transaction is still open.

use std::collections::HashMap;

use deadpool_postgres::Object;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::conn::{decode, encode, pg_error, PgPool};
use super::rows::{Kind, RecordColumns};
use super::EVENTS_LOCK;
use crate::error::StorageError;
use crate::events::{Event, NewEvent};
use crate::index::txn::IndexTxn;
use crate::index::Statistics;
use crate::records::{InstanceRecord, PatientRecord, SeriesRecord, StudyRecord};
use crate::rejection::RejectedInstance;

pub(crate) type Params = Vec<Box<dyn ToSql + Send + Sync>>;

pub(crate) struct PgTxn<'a> {
    pool: &'a PgPool,
    client: Option<Object>,
    /// Rows this transaction has read or written: present (with the record) or absent.
    seen: HashMap<(Kind, String), Option<Vec<u8>>>,
    stats_base: Option<Statistics>,
    stats: Option<Statistics>,
    events: Vec<NewEvent>,
}

impl Drop for PgTxn<'_> {
    fn drop(&mut self) {
        // Not committed: close the connection (the server rolls back) rather than hand a
        // half-done transaction back to the pool.
        if let Some(client) = self.client.take() {
            drop(Object::take(client));
        }
    }
}

impl<'a> PgTxn<'a> {
    pub(crate) fn begin(pool: &'a PgPool) -> Result<Self, StorageError> {
        let client = pool.take("starting an index transaction")?;
        let mut txn = PgTxn {
            pool,
            client: Some(client),
            seen: HashMap::new(),
            stats_base: None,
            stats: None,
            events: Vec::new(),
        };
        txn.execute("starting an index transaction", "BEGIN", Vec::new())?;
        Ok(txn)
    }

    /// Run one statement (prepared once per connection) and return its rows.
    pub(crate) fn query(
        &mut self,
        context: &'static str,
        sql: &'static str,
        params: Params,
    ) -> Result<Vec<Row>, StorageError> {
        let client = self.client.take().ok_or(StorageError::WriterGone)?;
        let (client, out) = self.pool.on(client, move |client| async move {
            let out = run_query(&client, context, sql, &params).await;
            (client, out)
        });
        self.client = client;
        out
    }

    pub(crate) fn execute(
        &mut self,
        context: &'static str,
        sql: &'static str,
        params: Params,
    ) -> Result<(), StorageError> {
        self.query(context, sql, params).map(drop)
    }

    /// Insert the statistics delta and the events, then commit.
    pub(crate) fn commit(mut self) -> Result<(), StorageError> {
        if let (Some(base), Some(now)) = (self.stats_base, self.stats) {
            if base != now {
                let d = |a: u64, b: u64| a as i64 - b as i64;
                self.execute(
                    "recording statistics",
                    "INSERT INTO statistics_deltas (patients, studies, series, instances, bytes) \
                     VALUES ($1, $2, $3, $4, $5)",
                    vec![
                        Box::new(d(now.patients, base.patients)),
                        Box::new(d(now.studies, base.studies)),
                        Box::new(d(now.series, base.series)),
                        Box::new(d(now.instances, base.instances)),
                        Box::new(d(now.bytes, base.bytes)),
                    ],
                )?;
            }
        }
        let events = std::mem::take(&mut self.events);
        if !events.is_empty() {
            insert_events(&mut self, events)?;
        }
        self.execute("committing an index transaction", "COMMIT", Vec::new())?;
        // Committed: the connection goes back to the pool.
        self.client.take();
        Ok(())
    }

    fn get(&mut self, kind: Kind, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        if let Some(v) = self.seen.get(&(kind, key.to_string())) {
            return Ok(v.clone());
        }
        let rows = self.query(
            "reading a record",
            kind.select_for_update(),
            vec![Box::new(key.to_string())],
        )?;
        let value: Option<Vec<u8>> = rows.first().map(|r| r.get(0));
        self.seen.insert((kind, key.to_string()), value.clone());
        Ok(value)
    }

    fn read<T: serde::de::DeserializeOwned>(
        &mut self,
        kind: Kind,
        key: &str,
    ) -> Result<Option<T>, StorageError> {
        self.get(kind, key)?
            .map(|b| decode(kind.name(), key, &b))
            .transpose()
    }

    fn put(&mut self, kind: Kind, key: &str, columns: RecordColumns) -> Result<(), StorageError> {
        let exists = self.get(kind, key)?.is_some();
        let record = columns.record.clone();
        let (sql, params) = if exists {
            (kind.update(), columns.into_params(key))
        } else {
            (kind.insert(), columns.into_params(key))
        };
        self.execute("writing a record", sql, params)?;
        self.seen.insert((kind, key.to_string()), Some(record));
        Ok(())
    }

    fn delete(&mut self, kind: Kind, key: &str) -> Result<(), StorageError> {
        self.execute(
            "deleting a record",
            kind.delete(),
            vec![Box::new(key.to_string())],
        )?;
        self.seen.insert((kind, key.to_string()), None);
        Ok(())
    }
}

pub(crate) async fn run_query(
    client: &Object,
    context: &'static str,
    sql: &str,
    params: &Params,
) -> Result<Vec<Row>, StorageError> {
    let statement = client
        .prepare_cached(sql)
        .await
        .map_err(pg_error(context))?;
    let refs: Vec<&(dyn ToSql + Sync)> = params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    client
        .query(&statement, &refs)
        .await
        .map_err(pg_error(context))
}

/// Put `events` into the outbox with the next sequence numbers, in this order, under the
/// events lock (held until the transaction ends). Returns them numbered.
pub(crate) fn insert_events(
    txn: &mut PgTxn<'_>,
    events: Vec<NewEvent>,
) -> Result<Vec<Event>, StorageError> {
    txn.execute(
        "waiting for the outbox",
        "SELECT pg_advisory_xact_lock($1)",
        vec![Box::new(EVENTS_LOCK)],
    )?;
    let time_ms = crate::ingest::now_ms();
    let mut out: Vec<Event> = events
        .into_iter()
        .map(|e| e.into_event(0, time_ms))
        .collect();
    let mut bodies = Vec::with_capacity(out.len());
    for e in &out {
        bodies.push(encode("event", &e.study_instance_uid, e)?);
    }
    // With ORDER BY, PostgreSQL evaluates nextval() after sorting: numbers in this order.
    let rows = txn.query(
        "appending events",
        "INSERT INTO events (seq, record) \
         SELECT nextval('event_seq'), body FROM unnest($1::bytea[]) WITH ORDINALITY AS t(body, n) \
         ORDER BY n RETURNING seq",
        vec![Box::new(bodies)],
    )?;
    let mut seqs: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    seqs.sort_unstable();
    for (e, seq) in out.iter_mut().zip(seqs) {
        e.seq = seq as u64;
    }
    Ok(out)
}

impl IndexTxn for PgTxn<'_> {
    fn patient(&mut self, patient_key: &str) -> Result<Option<PatientRecord>, StorageError> {
        self.read(Kind::Patient, patient_key)
    }

    fn study(&mut self, study_instance_uid: &str) -> Result<Option<StudyRecord>, StorageError> {
        self.read(Kind::Study, study_instance_uid)
    }

    fn series(&mut self, series_instance_uid: &str) -> Result<Option<SeriesRecord>, StorageError> {
        self.read(Kind::Series, series_instance_uid)
    }

    fn instance(&mut self, sop_instance_uid: &str) -> Result<Option<InstanceRecord>, StorageError> {
        self.read(Kind::Instance, sop_instance_uid)
    }

    fn series_of_study(&mut self, study_instance_uid: &str) -> Result<Vec<String>, StorageError> {
        let rows = self.query(
            "listing the series of a study",
            "SELECT uid FROM series WHERE study_uid = $1",
            vec![Box::new(study_instance_uid.to_string())],
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn put_patient(&mut self, record: PatientRecord) -> Result<(), StorageError> {
        let key = record.key.clone();
        self.put(Kind::Patient, &key, RecordColumns::patient(&record)?)
    }

    fn put_study(&mut self, record: StudyRecord) -> Result<(), StorageError> {
        let key = record.study_instance_uid.clone();
        self.put(Kind::Study, &key, RecordColumns::study(&record)?)
    }

    fn put_series(&mut self, record: SeriesRecord) -> Result<(), StorageError> {
        let key = record.series_instance_uid.clone();
        self.put(Kind::Series, &key, RecordColumns::series(&record)?)
    }

    fn put_instance(&mut self, record: InstanceRecord) -> Result<(), StorageError> {
        let key = record.sop_instance_uid.clone();
        self.put(Kind::Instance, &key, RecordColumns::instance(&record)?)
    }

    fn delete_patient(&mut self, patient_key: &str) -> Result<(), StorageError> {
        self.delete(Kind::Patient, patient_key)
    }

    fn delete_study(&mut self, study_instance_uid: &str) -> Result<(), StorageError> {
        self.delete(Kind::Study, study_instance_uid)
    }

    fn delete_series(&mut self, series_instance_uid: &str) -> Result<(), StorageError> {
        self.delete(Kind::Series, series_instance_uid)
    }

    fn delete_instance(&mut self, sop_instance_uid: &str) -> Result<(), StorageError> {
        self.delete(Kind::Instance, sop_instance_uid)
    }

    fn rejected(
        &mut self,
        sop_instance_uid: &str,
    ) -> Result<Option<RejectedInstance>, StorageError> {
        self.read(Kind::Rejected, sop_instance_uid)
    }

    fn put_rejected(&mut self, record: RejectedInstance) -> Result<(), StorageError> {
        let key = record.record.sop_instance_uid.clone();
        self.put(Kind::Rejected, &key, RecordColumns::rejected(&record)?)
    }

    fn delete_rejected(&mut self, sop_instance_uid: &str) -> Result<(), StorageError> {
        self.delete(Kind::Rejected, sop_instance_uid)
    }

    fn statistics(&mut self) -> Result<Statistics, StorageError> {
        if let Some(s) = self.stats {
            return Ok(s);
        }
        let rows = self.query("reading statistics", super::STATISTICS_SQL, Vec::new())?;
        let s = super::statistics_of(rows.first());
        self.stats_base = Some(s);
        self.stats = Some(s);
        Ok(s)
    }

    fn put_statistics(&mut self, stats: Statistics) -> Result<(), StorageError> {
        self.statistics()?;
        self.stats = Some(stats);
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
        self.execute(
            "marking a study unstable",
            "INSERT INTO unstable (study_uid, patient_key, last_update_ms, series) \
             VALUES ($1, $2, $3, ARRAY[$4::text]) \
             ON CONFLICT (study_uid) DO UPDATE SET last_update_ms = EXCLUDED.last_update_ms, \
             series = CASE WHEN $4 = ANY(unstable.series) THEN unstable.series \
                           ELSE unstable.series || $4::text END",
            vec![
                Box::new(study_instance_uid.to_string()),
                Box::new(patient_key.to_string()),
                Box::new(crate::ingest::now_ms() as i64),
                Box::new(series_instance_uid.to_string()),
            ],
        )
    }

    fn forget_unstable(&mut self, study_instance_uid: &str) -> Result<(), StorageError> {
        self.execute(
            "forgetting an unstable study",
            "DELETE FROM unstable WHERE study_uid = $1",
            vec![Box::new(study_instance_uid.to_string())],
        )
    }
}
