//! [`IndexTxn`] on PostgreSQL: one SQL transaction (READ COMMITTED) on one connection.
//!
//! Several nodes write at once, so every record the rules read is read `FOR UPDATE`: a
//! second writer of the same study waits for the first to commit and then sees its counts
//! (no lost update). Two writers creating the same new study both find nothing; the second
//! one's INSERT fails on the primary key and the whole transaction is run again by
//! [`super::PgIndex`], now seeing the study.
//!
//! Round trips are what an ingest pays for, so a transaction makes few: the rows a batch
//! will read are fetched (and locked) together up front, writes are kept here and sent as
//! one statement per table and kind of change, and those statements, the events and COMMIT
//! go down the connection together (pipelined). Reads see the transaction's own changes
//! through the rows kept here; a query the kept rows cannot answer sends the writes first.
//!
//! Events go in unnumbered with the rest of the transaction; they get their sequence numbers
//! once committed (`super::numbering`), so no lock is shared by every writer.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;

use deadpool_postgres::Object;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::conn::{decode, encode, pg_error, PgPool};
use super::rows::{Batch, Kind, RecordColumns};
use crate::error::StorageError;
use crate::events::{Event, NewEvent};
use crate::index::txn::IndexTxn;
use crate::index::Statistics;
use crate::records::{InstanceRecord, PatientRecord, SeriesRecord, StudyRecord};
use crate::rejection::RejectedInstance;

pub(crate) type Params = Vec<Box<dyn ToSql + Send + Sync>>;
type Statement = (String, Params);

/// What the rules see as the archive's counts: an offset, so that counting down never
/// goes below zero; only the difference a transaction makes is stored.
const STATS_BASE: u64 = 1 << 60;
const BASE: Statistics = Statistics {
    patients: STATS_BASE,
    studies: STATS_BASE,
    series: STATS_BASE,
    instances: STATS_BASE,
    bytes: STATS_BASE,
};

/// A row as this transaction sees it.
struct Entry {
    /// Present in the database as far as statements sent so far go.
    in_db: bool,
    current: Option<Vec<u8>>,
    /// A change not sent yet: the new row, or None for a deletion.
    pending: Option<Option<RecordColumns>>,
}

pub(crate) struct PgTxn<'a> {
    pool: &'a PgPool,
    client: Option<Object>,
    /// BEGIN goes with the first statement.
    begun: bool,
    rows: HashMap<(Kind, String), Entry>,
    stats: Option<Statistics>,
    events: Vec<NewEvent>,
    /// Quiet-period marks not sent yet: study → (patient key, series).
    unstable: crate::index::touched::Touched,
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

type Pending<'c> =
    Pin<Box<dyn Future<Output = Result<Vec<Row>, tokio_postgres::Error>> + Send + 'c>>;

impl<'a> PgTxn<'a> {
    pub(crate) fn begin(pool: &'a PgPool) -> Result<Self, StorageError> {
        Ok(PgTxn {
            pool,
            client: Some(pool.take("starting an index transaction")?),
            begun: false,
            rows: HashMap::new(),
            stats: None,
            events: Vec::new(),
            unstable: BTreeMap::new(),
        })
    }

    /// Send `statements` down the connection together (after BEGIN, the first time; with
    /// COMMIT after them when `commit`), and return each one's rows.
    fn send(
        &mut self,
        context: &'static str,
        statements: Vec<Statement>,
        commit: bool,
    ) -> Result<Vec<Vec<Row>>, StorageError> {
        let client = self.client.take().ok_or(StorageError::WriterGone)?;
        let begin = !self.begun;
        let (client, out) = self.pool.on(client, move |client| async move {
            let out = pipeline(&client, begin, &statements, commit).await;
            (client, out.map_err(pg_error(context)))
        });
        self.client = client;
        self.begun = true;
        out
    }

    /// Run one statement (after the writes kept so far) and return its rows.
    pub(crate) fn query(
        &mut self,
        context: &'static str,
        sql: impl Into<String>,
        params: Params,
    ) -> Result<Vec<Row>, StorageError> {
        let mut statements = self.take_writes()?;
        statements.push((sql.into(), params));
        let mut out = self.send(context, statements, false)?;
        Ok(out.pop().unwrap_or_default())
    }

    pub(crate) fn execute(
        &mut self,
        context: &'static str,
        sql: impl Into<String>,
        params: Params,
    ) -> Result<(), StorageError> {
        self.query(context, sql, params).map(drop)
    }

    /// Read and lock these rows in one round trip, so the rules' reads find them here.
    pub(crate) fn prefetch(&mut self, keys: Vec<(Kind, String)>) -> Result<(), StorageError> {
        let mut wanted: BTreeMap<Kind, Vec<String>> = BTreeMap::new();
        for (kind, key) in keys {
            if !self.rows.contains_key(&(kind, key.clone())) {
                wanted.entry(kind).or_default().push(key);
            }
        }
        let mut statements = self.take_writes()?;
        let first = statements.len();
        let kinds: Vec<(Kind, Vec<String>)> = wanted.into_iter().collect();
        for (kind, keys) in &kinds {
            statements.push((kind.select_many_for_update(), vec![Box::new(keys.clone())]));
        }
        if kinds.is_empty() && statements.is_empty() {
            return Ok(());
        }
        let results = self.send("reading records", statements, false)?;
        for ((kind, keys), rows) in kinds.into_iter().zip(results.into_iter().skip(first)) {
            let mut found: HashMap<String, Vec<u8>> =
                rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            for key in keys {
                let current = found.remove(&key);
                self.rows.insert(
                    (kind, key),
                    Entry {
                        in_db: current.is_some(),
                        current,
                        pending: None,
                    },
                );
            }
        }
        Ok(())
    }

    /// The kept writes as statements (one per table and kind of change), now counted as sent.
    fn take_writes(&mut self) -> Result<Vec<Statement>, StorageError> {
        let mut inserts: BTreeMap<Kind, Batch> = BTreeMap::new();
        let mut updates: BTreeMap<Kind, Batch> = BTreeMap::new();
        let mut deletes: BTreeMap<Kind, Vec<String>> = BTreeMap::new();
        for ((kind, key), entry) in self.rows.iter_mut() {
            let Some(change) = entry.pending.take() else {
                continue;
            };
            match (change, entry.in_db) {
                (Some(row), false) => inserts.entry(*kind).or_default().push(key.clone(), row),
                (Some(row), true) => updates.entry(*kind).or_default().push(key.clone(), row),
                (None, true) => deletes.entry(*kind).or_default().push(key.clone()),
                (None, false) => {}
            }
            entry.in_db = entry.current.is_some();
        }
        let mut out: Vec<Statement> = Vec::new();
        for (kind, keys) in deletes {
            out.push((kind.delete_many(), vec![Box::new(keys)]));
        }
        for (kind, batch) in updates.into_iter().filter(|(_, b)| !b.is_empty()) {
            out.push((kind.update_many(), batch.params()));
        }
        for (kind, batch) in inserts.into_iter().filter(|(_, b)| !b.is_empty()) {
            out.push((kind.insert_many(), batch.params()));
        }
        if !self.unstable.is_empty() {
            let marks = std::mem::take(&mut self.unstable);
            let mut studies = Vec::with_capacity(marks.len());
            let mut patients = Vec::with_capacity(marks.len());
            let mut series = Vec::with_capacity(marks.len());
            for (study, (patient, list)) in marks {
                studies.push(study);
                patients.push(patient);
                series.push(list.join("\\"));
            }
            out.push((
                "INSERT INTO unstable (study_uid, patient_key, last_update_ms, series) \
                 SELECT u.s, u.p, $3, string_to_array(u.se, '\\') \
                 FROM unnest($1::text[], $2::text[], $4::text[]) AS u(s, p, se) \
                 ON CONFLICT (study_uid) DO UPDATE SET last_update_ms = EXCLUDED.last_update_ms, \
                 series = unstable.series || ARRAY(SELECT x FROM unnest(EXCLUDED.series) x \
                                                   WHERE x <> ALL(unstable.series))"
                    .into(),
                vec![
                    Box::new(studies),
                    Box::new(patients),
                    Box::new(crate::ingest::now_ms() as i64),
                    Box::new(series),
                ],
            ));
        }
        Ok(out)
    }

    /// The difference this transaction made to the counts (sent once, at commit: the rules
    /// may keep their own copy of the counts across several puts).
    fn statistics_statement(&mut self) -> Option<Statement> {
        let now = self.stats.take().filter(|s| *s != BASE)?;
        let d = |v: u64| v.wrapping_sub(STATS_BASE) as i64;
        Some((
            "INSERT INTO statistics_deltas (patients, studies, series, instances, bytes) \
             VALUES ($1, $2, $3, $4, $5)"
                .into(),
            vec![
                Box::new(d(now.patients)),
                Box::new(d(now.studies)),
                Box::new(d(now.series)),
                Box::new(d(now.instances)),
                Box::new(d(now.bytes)),
            ],
        ))
    }

    /// Send the kept writes, the counts, the events and COMMIT together.
    pub(crate) fn commit(mut self) -> Result<(), StorageError> {
        let mut statements = self.take_writes()?;
        statements.extend(self.statistics_statement());
        let events = std::mem::take(&mut self.events);
        if !events.is_empty() {
            statements.push(event_statement(events)?);
        }
        if !self.begun && statements.is_empty() {
            // Nothing read or written: nothing to commit.
            self.client.take();
            return Ok(());
        }
        self.send("committing an index transaction", statements, true)?;
        // Committed: the connection goes back to the pool.
        self.client.take();
        Ok(())
    }

    fn get(&mut self, kind: Kind, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        if let Some(entry) = self.rows.get(&(kind, key.to_string())) {
            return Ok(entry.current.clone());
        }
        let rows = self.query(
            "reading a record",
            kind.select_for_update(),
            vec![Box::new(key.to_string())],
        )?;
        let current: Option<Vec<u8>> = rows.first().map(|r| r.get(0));
        self.rows.insert(
            (kind, key.to_string()),
            Entry {
                in_db: current.is_some(),
                current: current.clone(),
                pending: None,
            },
        );
        Ok(current)
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

    fn put(&mut self, kind: Kind, key: &str, row: RecordColumns) -> Result<(), StorageError> {
        self.get(kind, key)?;
        if let Some(entry) = self.rows.get_mut(&(kind, key.to_string())) {
            entry.current = Some(row.record.clone());
            entry.pending = Some(Some(row));
        }
        Ok(())
    }

    fn delete(&mut self, kind: Kind, key: &str) -> Result<(), StorageError> {
        let entry = self.rows.entry((kind, key.to_string())).or_insert(Entry {
            // Not read: a DELETE of a row that is not there does no harm.
            in_db: true,
            current: None,
            pending: None,
        });
        entry.current = None;
        entry.pending = Some(None);
        Ok(())
    }
}

/// Run `statements` pipelined on one connection: prepared (from the connection's cache),
/// then all sent before the first answer is awaited.
async fn pipeline(
    client: &Object,
    begin: bool,
    statements: &[Statement],
    commit: bool,
) -> Result<Vec<Vec<Row>>, tokio_postgres::Error> {
    let mut prepared = Vec::with_capacity(statements.len());
    for (sql, _) in statements {
        prepared.push(client.prepare_cached(sql).await?);
    }
    let mut futures: Vec<Pending<'_>> = Vec::with_capacity(statements.len() + 2);
    if begin {
        futures.push(Box::pin(async move {
            client.batch_execute("BEGIN").await.map(|()| Vec::new())
        }));
    }
    for (statement, (_, params)) in prepared.iter().zip(statements) {
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        futures.push(Box::pin(
            async move { client.query(statement, &refs).await },
        ));
    }
    if commit {
        futures.push(Box::pin(async move {
            client.batch_execute("COMMIT").await.map(|()| Vec::new())
        }));
    }
    let mut results = futures_util::future::join_all(futures).await.into_iter();
    if begin {
        results.next().transpose()?;
    }
    let mut out = Vec::with_capacity(statements.len());
    for result in results.by_ref().take(statements.len()) {
        out.push(result?);
    }
    if commit {
        results.next().transpose()?;
    }
    Ok(out)
}

/// Run one statement on a pooled connection outside any transaction of ours.
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

/// `events`, unnumbered, in this order (numbered once committed: see `super::numbering`).
fn event_statement(events: Vec<NewEvent>) -> Result<Statement, StorageError> {
    let time_ms = crate::ingest::now_ms();
    let mut bodies = Vec::with_capacity(events.len());
    for e in events {
        let event = e.into_event(0, time_ms);
        bodies.push(encode("event", &event.study_instance_uid, &event)?);
    }
    Ok((
        "INSERT INTO events (record) \
         SELECT body FROM unnest($1::bytea[]) WITH ORDINALITY AS t(body, n) ORDER BY n"
            .into(),
        vec![Box::new(bodies)],
    ))
}

/// Put `events` into the outbox numbered now, after any committed ones still waiting for a
/// number (the events lock is held until the transaction ends); returns them numbered.
pub(crate) fn insert_events(
    txn: &mut PgTxn<'_>,
    events: Vec<NewEvent>,
) -> Result<Vec<Event>, StorageError> {
    super::numbering::lock_and_number(txn)?;
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
        // After the kept writes, so the answer includes this transaction's own series.
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
        Ok(self.stats.unwrap_or(BASE))
    }

    fn put_statistics(&mut self, stats: Statistics) -> Result<(), StorageError> {
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
        crate::index::touched::touch(
            &mut self.unstable,
            study_instance_uid,
            patient_key,
            series_instance_uid,
        );
        Ok(())
    }

    fn forget_unstable(&mut self, study_instance_uid: &str) -> Result<(), StorageError> {
        self.unstable.remove(study_instance_uid);
        self.execute(
            "forgetting an unstable study",
            "DELETE FROM unstable WHERE study_uid = $1",
            vec![Box::new(study_instance_uid.to_string())],
        )
    }
}
