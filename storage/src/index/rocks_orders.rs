//! Orders on RocksDB: `orders` (accession number → order) and `worklist` (scheduled start +
//! accession number → order, for the active ones only), written with their outbox event in
//! one synced batch under the index's write lock.
//!
//! The worklist copy holds the whole order so a worklist query reads one key range and
//! nothing else; orders leave it when they complete or are cancelled.

use rocksdb::WriteBatch;

use super::rocks::RocksIndex;
use super::rocks_db::{decode, encode, RocksDb, CF_ORDERS, CF_WORKLIST};
use super::rocks_events::append_events;
use crate::error::StorageError;
use crate::orders::{Order, OrderChange, Orders};

/// `YYYYMMDD` + `HHMMSS` (time padded) + NUL + accession number: start order, then order.
fn worklist_key(order: &Order) -> Vec<u8> {
    format!("{}\0{}", order.scheduled_start(), order.accession_number).into_bytes()
}

/// Put `order` (replacing `old`) and its worklist entry into `batch`.
pub(crate) fn stage_order(
    db: &RocksDb,
    batch: &mut WriteBatch,
    old: Option<&Order>,
    order: &Order,
) -> Result<(), StorageError> {
    let (orders, worklist) = (db.cf(CF_ORDERS)?, db.cf(CF_WORKLIST)?);
    if let Some(old) = old {
        batch.delete_cf(&worklist, worklist_key(old));
    }
    let value = encode(CF_ORDERS, &order.accession_number, order)?;
    if order.status.is_active() {
        batch.put_cf(&worklist, worklist_key(order), &value);
    }
    batch.put_cf(&orders, order.accession_number.as_bytes(), value);
    Ok(())
}

impl Orders for RocksIndex {
    fn put_order(
        &self,
        order: &Order,
        change: OrderChange,
        expected: Option<u64>,
    ) -> Result<bool, StorageError> {
        let _guard = self.lock_writes();
        let db = self.db();
        let mut batch = WriteBatch::default();
        let old = self.order(&order.accession_number)?;
        if old.as_ref().map(|o| o.updated_ms) != expected {
            return Ok(false);
        }
        stage_order(db, &mut batch, old.as_ref(), order)?;
        append_events(
            db,
            &mut batch,
            vec![crate::orders::order_event(order, change)],
        )?;
        db.write_synced(batch, "recording an order")?;
        Ok(true)
    }

    fn order(&self, accession_number: &str) -> Result<Option<Order>, StorageError> {
        self.db().get_record(CF_ORDERS, accession_number)
    }

    fn list_orders(&self, after: Option<&str>, limit: usize) -> Result<Vec<Order>, StorageError> {
        let db = self.db();
        let handle = db.cf(CF_ORDERS)?;
        let mode = match after {
            Some(a) => rocksdb::IteratorMode::From(a.as_bytes(), rocksdb::Direction::Forward),
            None => rocksdb::IteratorMode::Start,
        };
        let mut out = Vec::new();
        for item in db.raw().iterator_cf(&handle, mode) {
            let (k, v) = item.map_err(StorageError::db("listing orders"))?;
            if after.is_some_and(|a| a.as_bytes() == &k[..]) {
                continue;
            }
            if out.len() >= limit {
                break;
            }
            out.push(decode(CF_ORDERS, &String::from_utf8_lossy(&k), &v)?);
        }
        Ok(out)
    }

    fn active_orders(
        &self,
        from: Option<&str>,
        to: Option<&str>,
        on_order: &mut dyn FnMut(Order) -> bool,
    ) -> Result<(), StorageError> {
        let db = self.db();
        let handle = db.cf(CF_WORKLIST)?;
        let mode = match from {
            Some(f) => rocksdb::IteratorMode::From(f.as_bytes(), rocksdb::Direction::Forward),
            None => rocksdb::IteratorMode::Start,
        };
        for item in db.raw().iterator_cf(&handle, mode) {
            let (k, v) = item.map_err(StorageError::db("reading the worklist"))?;
            // Keys start with the 8-digit date: past `to`, nothing later can match.
            if let Some(to) = to {
                if k.get(..8).is_some_and(|date| date > to.as_bytes()) {
                    break;
                }
            }
            let order: Order = decode(CF_WORKLIST, &String::from_utf8_lossy(&k), &v)?;
            if !on_order(order) {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{EventKind, Outbox};
    use crate::orders::{OrderPatient, OrderSource, OrderStatus, Priority, ScheduledStep};

    fn order(acc: &str, date: &str, time: &str) -> Order {
        Order {
            accession_number: acc.into(),
            placer_order_number: None,
            filler_order_number: None,
            status: OrderStatus::Scheduled,
            patient: OrderPatient {
                id: "P1".into(),
                name: "Doe^Jane".into(),
                ..Default::default()
            },
            study_instance_uid: format!("1.2.826.0.1.{acc}"),
            requested_procedure_id: "RP1".into(),
            procedure: None,
            procedure_description: String::new(),
            priority: Priority::Routine,
            reason: String::new(),
            requesting_physician: String::new(),
            referring_physician: String::new(),
            admission_id: String::new(),
            step: ScheduledStep {
                id: "SPS1".into(),
                modality: "CT".into(),
                start_date: date.into(),
                start_time: time.into(),
                ..Default::default()
            },
            charset: "ISO_IR 192".into(),
            source: OrderSource::Hl7,
            created_ms: 0,
            updated_ms: 0,
            performed_steps: Vec::new(),
        }
    }

    fn active(index: &RocksIndex, from: Option<&str>, to: Option<&str>) -> Vec<String> {
        let mut out = Vec::new();
        index
            .active_orders(from, to, &mut |o| {
                out.push(o.accession_number);
                true
            })
            .expect("active");
        out
    }

    #[test]
    fn orders_move_through_the_worklist_with_their_events() {
        let dir = tempfile::tempdir().expect("tmp");
        let index = RocksIndex::open(dir.path()).expect("open");
        for o in [
            order("A2", "20261206", "0800"),
            order("A1", "20261205", "1400"),
            order("A3", "20261207", ""),
        ] {
            assert!(index.put_order(&o, OrderChange::Placed, None).expect("put"));
        }
        // Placed again: refused, the caller read a stale state.
        let again = order("A3", "20261207", "");
        assert!(!index
            .put_order(&again, OrderChange::Placed, None)
            .expect("put"));
        assert_eq!(active(&index, None, None), ["A1", "A2", "A3"]);
        assert_eq!(active(&index, Some("20261206"), Some("20261206")), ["A2"]);
        // Rescheduled: the old worklist entry goes.
        let mut moved = order("A1", "20261208", "0700");
        moved.updated_ms = 5;
        assert!(index
            .put_order(&moved, OrderChange::Changed, Some(0))
            .expect("put"));
        assert_eq!(active(&index, None, None), ["A2", "A3", "A1"]);
        // Cancelled: off the worklist, still readable, and reported as a cancellation.
        moved.status = OrderStatus::Cancelled;
        assert!(!index
            .put_order(&moved, OrderChange::Changed, Some(0))
            .expect("put"));
        assert!(index
            .put_order(&moved, OrderChange::Changed, Some(5))
            .expect("put"));
        assert_eq!(active(&index, None, None), ["A2", "A3"]);
        assert_eq!(
            index.order("A1").expect("read").map(|o| o.status),
            Some(OrderStatus::Cancelled)
        );
        let kinds: Vec<_> = index
            .events_after(0, 10)
            .expect("events")
            .into_iter()
            .map(|e| (e.kind, e.accession_number))
            .collect();
        assert_eq!(kinds.len(), 5);
        assert_eq!(kinds[3], (EventKind::OrderChanged, Some("A1".into())));
        assert_eq!(kinds[4], (EventKind::OrderCancelled, Some("A1".into())));
        let all = index.list_orders(None, 10).expect("list");
        assert_eq!(all.len(), 3);
        assert_eq!(index.list_orders(Some("A2"), 10).expect("list").len(), 1);
    }
}
