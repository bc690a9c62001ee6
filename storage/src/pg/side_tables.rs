//! Orders, performed procedure steps, storage commitment requests and pseudonyms on
//! PostgreSQL. Orders and steps are written with their outbox event in one transaction; the
//! "still as the caller read it" checks lock the rows first, so two nodes cannot both win.

use super::conn::{decode, encode};
use super::txn::{insert_events, Params, PgTxn};
use super::{sql_limit, PgIndex};
use crate::commitment::{CommitmentRequest, Commitments};
use crate::error::StorageError;
use crate::mpps::{PerformedStep, PerformedSteps};
use crate::orders::{order_event, Order, OrderChange, Orders};
use crate::pseudonyms::{PseudonymEntry, PseudonymTable};

/// Orders fetched per round trip while walking the worklist.
const PAGE: i64 = 256;

/// `updated_ms` of the order as stored now (locked to the end of the transaction).
fn order_version(txn: &mut PgTxn<'_>, accession: &str) -> Result<Option<u64>, StorageError> {
    let rows = txn.query(
        "reading an order",
        "SELECT updated_ms FROM orders WHERE accession = $1 FOR UPDATE",
        vec![Box::new(accession.to_string())],
    )?;
    Ok(rows.first().map(|r| r.get::<_, i64>(0) as u64))
}

fn write_order(txn: &mut PgTxn<'_>, order: &Order) -> Result<(), StorageError> {
    let params: Params = vec![
        Box::new(order.accession_number.clone()),
        Box::new(order.status.is_active()),
        Box::new(order.scheduled_start().replace('\0', "")),
        Box::new(order.updated_ms as i64),
        Box::new(encode("order", &order.accession_number, order)?),
    ];
    txn.execute(
        "recording an order",
        "INSERT INTO orders (accession, active, start_key, updated_ms, record) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (accession) DO UPDATE SET \
         active = EXCLUDED.active, start_key = EXCLUDED.start_key, \
         updated_ms = EXCLUDED.updated_ms, record = EXCLUDED.record",
        params,
    )
}

impl Orders for PgIndex {
    fn put_order(
        &self,
        order: &Order,
        change: OrderChange,
        expected: Option<u64>,
    ) -> Result<bool, StorageError> {
        self.write(|txn| {
            if order_version(txn, &order.accession_number)? != expected {
                return Ok(false);
            }
            write_order(txn, order)?;
            insert_events(txn, vec![order_event(order, change)])?;
            Ok(true)
        })
    }

    fn order(&self, accession_number: &str) -> Result<Option<Order>, StorageError> {
        Ok(self
            .records_of(
                "order",
                "SELECT record FROM orders WHERE accession = $1",
                accession_number,
            )?
            .pop())
    }

    fn list_orders(&self, after: Option<&str>, limit: usize) -> Result<Vec<Order>, StorageError> {
        self.rows(
            "listing orders",
            "SELECT accession, record FROM orders WHERE $1::text IS NULL OR accession > $1 \
             ORDER BY accession LIMIT $2",
            vec![
                Box::new(after.map(str::to_string)),
                Box::new(sql_limit(limit)),
            ],
        )?
        .iter()
        .map(|r| decode("order", r.get(0), r.get::<_, &[u8]>(1)))
        .collect()
    }

    fn active_orders(
        &self,
        from: Option<&str>,
        to: Option<&str>,
        on_order: &mut dyn FnMut(Order) -> bool,
    ) -> Result<(), StorageError> {
        let mut last: Option<(String, String)> = None;
        loop {
            let (last_start, last_acc) = last.clone().unzip();
            let rows = self.rows(
                "reading the worklist",
                "SELECT start_key, accession, record FROM orders WHERE active \
                 AND ($1::text IS NULL OR start_key >= $1) \
                 AND ($2::text IS NULL OR left(start_key, 8) <= $2) \
                 AND ($3::text IS NULL OR (start_key, accession) > ($3, $4)) \
                 ORDER BY start_key, accession LIMIT $5",
                vec![
                    Box::new(from.map(str::to_string)),
                    Box::new(to.map(str::to_string)),
                    Box::new(last_start),
                    Box::new(last_acc.unwrap_or_default()),
                    Box::new(PAGE),
                ],
            )?;
            for row in &rows {
                let order: Order = decode("order", row.get(1), row.get::<_, &[u8]>(2))?;
                if !on_order(order) {
                    return Ok(());
                }
            }
            match rows.last() {
                Some(row) if rows.len() as i64 == PAGE => last = Some((row.get(0), row.get(1))),
                _ => return Ok(()),
            }
        }
    }
}

impl PerformedSteps for PgIndex {
    fn performed_step(
        &self,
        sop_instance_uid: &str,
    ) -> Result<Option<PerformedStep>, StorageError> {
        Ok(self
            .records_of(
                "performed step",
                "SELECT record FROM performed_steps WHERE uid = $1",
                sop_instance_uid,
            )?
            .pop())
    }

    fn put_performed_step(
        &self,
        step: &PerformedStep,
        expected: Option<u64>,
        orders: &[(Order, u64)],
        announce: bool,
    ) -> Result<bool, StorageError> {
        self.write(|txn| {
            let rows = txn.query(
                "reading a performed step",
                "SELECT updated_ms FROM performed_steps WHERE uid = $1 FOR UPDATE",
                vec![Box::new(step.sop_instance_uid.clone())],
            )?;
            if rows.first().map(|r| r.get::<_, i64>(0) as u64) != expected {
                return Ok(false);
            }
            for (order, was) in orders {
                if order_version(txn, &order.accession_number)? != Some(*was) {
                    return Ok(false);
                }
            }
            for (order, _) in orders {
                write_order(txn, order)?;
            }
            txn.execute(
                "recording a performed step",
                "INSERT INTO performed_steps (uid, updated_ms, record) VALUES ($1, $2, $3) \
                 ON CONFLICT (uid) DO UPDATE SET updated_ms = EXCLUDED.updated_ms, \
                 record = EXCLUDED.record",
                vec![
                    Box::new(step.sop_instance_uid.clone()),
                    Box::new(step.updated_ms as i64),
                    Box::new(encode("performed step", &step.sop_instance_uid, step)?),
                ],
            )?;
            if announce {
                insert_events(txn, vec![crate::mpps::step_event(step, orders)])?;
            }
            Ok(true)
        })
    }
}

impl Commitments for PgIndex {
    fn put_commitment(&self, request: &CommitmentRequest) -> Result<(), StorageError> {
        self.rows(
            "recording a storage commitment request",
            "INSERT INTO commitments (transaction_uid, received_ms, record) VALUES ($1, $2, $3) \
             ON CONFLICT (transaction_uid) DO UPDATE SET received_ms = EXCLUDED.received_ms, \
             record = EXCLUDED.record",
            vec![
                Box::new(request.transaction_uid.clone()),
                Box::new(request.received_ms as i64),
                Box::new(encode("commitment", &request.transaction_uid, request)?),
            ],
        )
        .map(drop)
    }

    fn pending_commitments(&self, limit: usize) -> Result<Vec<CommitmentRequest>, StorageError> {
        self.rows(
            "reading commitment requests",
            "SELECT transaction_uid, record FROM commitments ORDER BY received_ms LIMIT $1",
            vec![Box::new(sql_limit(limit))],
        )?
        .iter()
        .map(|r| decode("commitment", r.get(0), r.get::<_, &[u8]>(1)))
        .collect()
    }

    fn remove_commitment(&self, transaction_uid: &str) -> Result<(), StorageError> {
        self.rows(
            "removing a storage commitment request",
            "DELETE FROM commitments WHERE transaction_uid = $1",
            vec![Box::new(transaction_uid.to_string())],
        )
        .map(drop)
    }
}

impl PseudonymTable for PgIndex {
    fn put_pseudonyms(&self, entries: &[PseudonymEntry]) -> Result<(), StorageError> {
        if entries.is_empty() {
            return Ok(());
        }
        // One row per key: an upsert may not touch the same row twice (the last entry wins).
        let unique: std::collections::BTreeMap<_, _> = entries
            .iter()
            .map(|e| ((&e.project, &e.replacement, &e.kind), e))
            .collect();
        let mut projects = Vec::with_capacity(unique.len());
        let mut replacements = Vec::with_capacity(unique.len());
        let mut kinds = Vec::with_capacity(unique.len());
        let mut records = Vec::with_capacity(unique.len());
        for e in unique.into_values() {
            projects.push(e.project.clone());
            replacements.push(e.replacement.clone());
            kinds.push(e.kind.clone());
            records.push(encode("pseudonym", &e.replacement, e)?);
        }
        self.rows(
            "recording pseudonyms",
            "INSERT INTO pseudonyms (project, replacement, kind, record) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) \
             ON CONFLICT (project, replacement, kind) DO UPDATE SET record = EXCLUDED.record",
            vec![
                Box::new(projects),
                Box::new(replacements),
                Box::new(kinds),
                Box::new(records),
            ],
        )
        .map(drop)
    }

    fn reidentify(
        &self,
        project: &str,
        replacement: &str,
    ) -> Result<Vec<PseudonymEntry>, StorageError> {
        self.rows(
            "reading pseudonyms",
            "SELECT record FROM pseudonyms WHERE project = $1 AND replacement = $2 \
             ORDER BY kind LIMIT 16",
            vec![
                Box::new(project.to_string()),
                Box::new(replacement.to_string()),
            ],
        )?
        .iter()
        .map(|r| decode("pseudonym", replacement, r.get::<_, &[u8]>(0)))
        .collect()
    }
}
