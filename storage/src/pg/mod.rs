//! The index on PostgreSQL (`[index] url = "postgres://..."`), for several `pacs serve` nodes
//! sharing one database. The write rules are the backend-neutral ones the embedded index
//! runs ([`crate::index`]'s `rules`), over a [`txn::PgTxn`]; a transaction that meets a
//! concurrent writer (a new study inserted by another node, a deadlock) is run again.

mod conn;
mod leases;
mod numbering;
mod outbox;
mod rows;
mod schema;
mod secondary;
mod side_tables;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod tls;
mod txn;

pub use conn::PgSettings;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio_postgres::Row;

use conn::{decode, PgPool};
use rows::Kind;
use secondary::secondary_filter;
use txn::{run_query, Params, PgTxn};

use crate::error::StorageError;
use crate::index::txn::IndexTxn;
use crate::index::{
    rejection_rules, rules, DuplicatePolicy, Index, IndexCorrection, Lookup, NewInstance,
    RejectionApplied, SecondaryKey, Statistics, StoreDecision,
};
use crate::query::{Query, QueryError, QueryMatch};
use crate::records::{InstanceRecord, PatientRecord, SeriesRecord, StudyRecord};
use crate::rejection::{RejectedInstance, RejectionNote};

/// Advisory lock held by a transaction that numbers events, to its commit.
pub(crate) const EVENTS_LOCK: i64 = 0x7061_6373_0002;

/// How often a transaction that met a concurrent writer is run again.
const ATTEMPTS: u32 = 8;

pub(crate) const STATISTICS_SQL: &str = "SELECT coalesce(sum(patients), 0)::bigint, \
     coalesce(sum(studies), 0)::bigint, coalesce(sum(series), 0)::bigint, \
     coalesce(sum(instances), 0)::bigint, coalesce(sum(bytes), 0)::bigint FROM statistics_deltas";

pub(crate) fn statistics_of(row: Option<&Row>) -> Statistics {
    let get = |i: usize| row.map(|r| r.get::<_, i64>(i).max(0) as u64).unwrap_or(0);
    Statistics {
        patients: get(0),
        studies: get(1),
        series: get(2),
        instances: get(3),
        bytes: get(4),
    }
}

/// SQLSTATEs after which the whole transaction is simply run again: serialization failure,
/// deadlock, and a unique violation (another node inserted the same new record first).
fn is_retryable(err: &StorageError) -> bool {
    match err {
        StorageError::Postgres { source, .. } => source
            .code()
            .is_some_and(|c| matches!(c.code(), "40001" | "40P01" | "23505")),
        _ => false,
    }
}

pub struct PgIndex {
    pool: PgPool,
    /// Statistics reads since the deltas were last folded.
    reads: AtomicU32,
}

impl std::fmt::Debug for PgIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgIndex").finish_non_exhaustive()
    }
}

impl PgIndex {
    /// Connect and bring the schema up to date.
    pub fn open(settings: &PgSettings) -> Result<Self, StorageError> {
        let pool = PgPool::open(settings)?;
        schema::migrate(&pool)?;
        Ok(PgIndex {
            pool,
            reads: AtomicU32::new(0),
        })
    }

    /// Run one statement on a pooled connection.
    fn rows(
        &self,
        context: &'static str,
        sql: impl Into<String>,
        params: Params,
    ) -> Result<Vec<Row>, StorageError> {
        let sql = sql.into();
        self.pool.with_client(context, move |client| async move {
            run_query(&client, context, &sql, &params).await
        })
    }

    fn record<T: serde::de::DeserializeOwned>(
        &self,
        kind: Kind,
        key: &str,
    ) -> Result<Option<T>, StorageError> {
        let rows = self.rows(
            "reading a record",
            kind.select(),
            vec![Box::new(key.to_string())],
        )?;
        rows.first()
            .map(|r| decode(kind.name(), key, r.get::<_, &[u8]>(0)))
            .transpose()
    }

    fn strings(
        &self,
        context: &'static str,
        sql: impl Into<String>,
        params: Params,
    ) -> Result<Vec<String>, StorageError> {
        Ok(self
            .rows(context, sql, params)?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    /// The records (first column) `sql` selects for one key.
    fn records_of<T: serde::de::DeserializeOwned>(
        &self,
        kind: &'static str,
        sql: &'static str,
        key: &str,
    ) -> Result<Vec<T>, StorageError> {
        self.rows("reading records", sql, vec![Box::new(key.to_string())])?
            .iter()
            .map(|r| decode(kind, key, r.get::<_, &[u8]>(0)))
            .collect()
    }

    /// Run `apply` (the rules) in one transaction, again while it meets concurrent writers.
    pub(crate) fn write<T>(
        &self,
        mut apply: impl FnMut(&mut PgTxn<'_>) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = PgTxn::begin(&self.pool).and_then(|mut txn| {
                let out = apply(&mut txn)?;
                txn.commit()?;
                Ok(out)
            });
            match result {
                Err(e) if attempt < ATTEMPTS && is_retryable(&e) => {
                    tracing::debug!(error = %e, attempt, "index transaction met a concurrent writer; again");
                    std::thread::sleep(Duration::from_millis(2 * u64::from(attempt)));
                }
                other => return other,
            }
        }
    }

    fn list(
        &self,
        context: &'static str,
        table: &'static str,
        key: &'static str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        self.strings(
            context,
            format!(
                "SELECT {key} FROM {table} WHERE $1::text IS NULL OR {key} > $1 \
                 ORDER BY {key} LIMIT $2"
            ),
            vec![
                Box::new(after.map(str::to_string)),
                Box::new(sql_limit(limit)),
            ],
        )
    }
}

/// The rows storing `items` reads: each instance (live and hidden), its series, study and
/// patient.
fn prefetch_keys(items: &[NewInstance]) -> Vec<(Kind, String)> {
    let mut keys = Vec::with_capacity(items.len() * 5);
    for item in items {
        let r = &item.record;
        keys.push((Kind::Patient, r.patient_key.clone()));
        keys.push((Kind::Study, r.study_instance_uid.clone()));
        keys.push((Kind::Series, r.series_instance_uid.clone()));
        keys.push((Kind::Instance, r.sop_instance_uid.clone()));
        keys.push((Kind::Rejected, r.sop_instance_uid.clone()));
    }
    keys.sort();
    keys.dedup();
    keys
}

pub(crate) fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

impl PgIndex {
    /// Records from rows of (key, record).
    fn keyed_records<T: serde::de::DeserializeOwned>(
        &self,
        kind: Kind,
        sql: impl Into<String>,
        params: Params,
    ) -> Result<Vec<T>, StorageError> {
        self.rows("reading records", sql, params)?
            .iter()
            .map(|r| decode(kind.name(), r.get(0), r.get::<_, &[u8]>(1)))
            .collect()
    }
}

impl Index for PgIndex {
    fn store_instances(
        &self,
        items: Vec<NewInstance>,
        policy: DuplicatePolicy,
    ) -> Result<Vec<StoreDecision>, StorageError> {
        let keys = prefetch_keys(&items);
        self.write(|txn| {
            txn.prefetch(keys.clone())?;
            rules::store_instances(txn as &mut dyn IndexTxn, items.clone(), policy)
        })
    }

    fn delete_instances(&self, uids: &[String]) -> Result<Vec<InstanceRecord>, StorageError> {
        let keys: Vec<(Kind, String)> = uids.iter().map(|u| (Kind::Instance, u.clone())).collect();
        self.write(|txn| {
            txn.prefetch(keys.clone())?;
            rules::delete_instances(txn as &mut dyn IndexTxn, uids)
        })
    }

    fn correct_instances(&self, correction: IndexCorrection) -> Result<(), StorageError> {
        self.write(|txn| rules::correct_instances(txn as &mut dyn IndexTxn, correction.clone()))
    }

    fn apply_rejection(
        &self,
        note_item: NewInstance,
        note: &RejectionNote,
        rejected_by: &str,
        policy: DuplicatePolicy,
    ) -> Result<RejectionApplied, StorageError> {
        let now = crate::ingest::now_ms();
        self.write(|txn| {
            rejection_rules::apply_rejection(
                txn as &mut dyn IndexTxn,
                note_item.clone(),
                note,
                rejected_by,
                now,
                policy,
            )
        })
    }

    fn rejected_instance(
        &self,
        sop_instance_uid: &str,
    ) -> Result<Option<RejectedInstance>, StorageError> {
        self.record(Kind::Rejected, sop_instance_uid)
    }

    fn list_rejected(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RejectedInstance>, StorageError> {
        let rows = self.rows(
            "listing rejected instances",
            "SELECT uid, record FROM rejected WHERE $1::text IS NULL OR uid > $1 \
             ORDER BY uid LIMIT $2",
            vec![
                Box::new(after.map(str::to_string)),
                Box::new(sql_limit(limit)),
            ],
        )?;
        rows.iter()
            .map(|r| decode(Kind::Rejected.name(), r.get(0), r.get::<_, &[u8]>(1)))
            .collect()
    }

    fn restore_rejected(&self, uids: &[String]) -> Result<Vec<String>, StorageError> {
        self.write(|txn| rejection_rules::restore_rejected(txn as &mut dyn IndexTxn, uids))
    }

    fn purge_rejected(&self, uids: &[String]) -> Result<Vec<RejectedInstance>, StorageError> {
        self.write(|txn| rejection_rules::purge_rejected(txn as &mut dyn IndexTxn, uids))
    }

    fn statistics(&self) -> Result<Statistics, StorageError> {
        let rows = self.rows("reading statistics", STATISTICS_SQL, Vec::new())?;
        let stats = statistics_of(rows.first());
        if self.reads.fetch_add(1, Ordering::Relaxed) % 64 == 63 {
            self.fold_statistics()?;
        }
        Ok(stats)
    }

    fn instance(&self, sop_instance_uid: &str) -> Result<Option<InstanceRecord>, StorageError> {
        self.record(Kind::Instance, sop_instance_uid)
    }

    fn series(&self, series_instance_uid: &str) -> Result<Option<SeriesRecord>, StorageError> {
        self.record(Kind::Series, series_instance_uid)
    }

    fn study(&self, study_instance_uid: &str) -> Result<Option<StudyRecord>, StorageError> {
        self.record(Kind::Study, study_instance_uid)
    }

    fn patient(&self, patient_key: &str) -> Result<Option<PatientRecord>, StorageError> {
        self.record(Kind::Patient, patient_key)
    }

    fn scan_secondary_by(
        &self,
        key: &SecondaryKey,
        lookup: &Lookup,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        let f = secondary_filter(key, lookup, limit);
        let sql = format!(
            "SELECT {} FROM {} WHERE {} ORDER BY {} LIMIT ${}",
            f.uid, f.table, f.condition, f.order, f.limit_param
        );
        self.strings("scanning a secondary key", sql, f.params)
    }

    fn studies_by(
        &self,
        key: &SecondaryKey,
        lookup: &Lookup,
        limit: usize,
    ) -> Result<Vec<StudyRecord>, StorageError> {
        let f = secondary_filter(key, lookup, limit);
        if f.table != "studies" {
            return self.studies_in(&self.scan_secondary_by(key, lookup, limit)?);
        }
        let sql = format!(
            "SELECT uid, record FROM studies WHERE {} ORDER BY {} LIMIT ${}",
            f.condition, f.order, f.limit_param
        );
        self.keyed_records(Kind::Study, sql, f.params)
    }

    fn studies_in(&self, uids: &[String]) -> Result<Vec<StudyRecord>, StorageError> {
        // In the order asked, as the embedded index gives them.
        let mut found: std::collections::HashMap<String, StudyRecord> = self
            .keyed_records(
                Kind::Study,
                "SELECT uid, record FROM studies WHERE uid = ANY($1)",
                vec![Box::new(uids.to_vec())],
            )?
            .into_iter()
            .map(|s: StudyRecord| (s.study_instance_uid.clone(), s))
            .collect();
        Ok(uids.iter().filter_map(|u| found.remove(u)).collect())
    }

    fn studies_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StudyRecord>, StorageError> {
        self.keyed_records(
            Kind::Study,
            "SELECT uid, record FROM studies WHERE $1::text IS NULL OR uid > $1 \
             ORDER BY uid LIMIT $2",
            vec![
                Box::new(after.map(str::to_string)),
                Box::new(sql_limit(limit)),
            ],
        )
    }

    fn study_series(&self, study_instance_uid: &str) -> Result<Vec<SeriesRecord>, StorageError> {
        self.records_of(
            Kind::Series.name(),
            "SELECT record FROM series WHERE study_uid = $1 ORDER BY uid",
            study_instance_uid,
        )
    }

    fn list_patients(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        self.list("listing patients", "patients", "key", after, limit)
    }

    fn list_studies(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, StorageError> {
        self.list("listing studies", "studies", "uid", after, limit)
    }

    fn list_instances(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        self.list("listing instances", "instances", "uid", after, limit)
    }

    fn series_instances(
        &self,
        series_instance_uid: &str,
    ) -> Result<Vec<InstanceRecord>, StorageError> {
        self.records_of(
            Kind::Instance.name(),
            "SELECT record FROM instances WHERE series_uid = $1 ORDER BY uid",
            series_instance_uid,
        )
    }

    fn study_instances(
        &self,
        study_instance_uid: &str,
    ) -> Result<Vec<InstanceRecord>, StorageError> {
        self.records_of(
            Kind::Instance.name(),
            "SELECT i.record FROM instances i JOIN series s ON i.series_uid = s.uid \
             WHERE s.study_uid = $1 ORDER BY s.uid, i.uid",
            study_instance_uid,
        )
    }

    fn find(
        &self,
        query: &Query,
        on_match: &mut dyn FnMut(QueryMatch) -> bool,
    ) -> Result<(), QueryError> {
        crate::query::execute(self, query, on_match)
    }
}

impl PgIndex {
    /// Fold the statistics deltas into one row once there are many (any node may; rows
    /// committed meanwhile are not visible to the DELETE and stay).
    fn fold_statistics(&self) -> Result<(), StorageError> {
        self.rows(
            "folding statistics",
            "WITH n AS (SELECT count(*) AS c FROM statistics_deltas), \
             gone AS (DELETE FROM statistics_deltas WHERE (SELECT c FROM n) > 256 RETURNING *) \
             INSERT INTO statistics_deltas (patients, studies, series, instances, bytes) \
             SELECT sum(patients), sum(studies), sum(series), sum(instances), sum(bytes) \
             FROM gone HAVING count(*) > 0",
            Vec::new(),
        )
        .map(drop)
    }
}
