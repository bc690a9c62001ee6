//! Performed procedure steps on RocksDB: `mpps` (SOP Instance UID → step), written with the
//! orders the step moves and its outbox event in one synced batch under the write lock.

use rocksdb::WriteBatch;

use super::rocks::RocksIndex;
use super::rocks_db::{encode, CF_MPPS};
use super::rocks_events::append_events;
use super::rocks_orders::stage_order;
use crate::error::StorageError;
use crate::mpps::{PerformedStep, PerformedSteps};
use crate::orders::{Order, Orders};

impl PerformedSteps for RocksIndex {
    fn performed_step(
        &self,
        sop_instance_uid: &str,
    ) -> Result<Option<PerformedStep>, StorageError> {
        self.db().get_record(CF_MPPS, sop_instance_uid)
    }

    fn put_performed_step(
        &self,
        step: &PerformedStep,
        expected: Option<u64>,
        orders: &[(Order, u64)],
        announce: bool,
    ) -> Result<bool, StorageError> {
        let _guard = self.lock_writes();
        let db = self.db();
        let stored = self.performed_step(&step.sop_instance_uid)?;
        if stored.as_ref().map(|s| s.updated_ms) != expected {
            return Ok(false);
        }
        let mut batch = WriteBatch::default();
        for (order, was) in orders {
            let old = self.order(&order.accession_number)?;
            if old.as_ref().map(|o| o.updated_ms) != Some(*was) {
                return Ok(false);
            }
            stage_order(db, &mut batch, old.as_ref(), order)?;
        }
        batch.put_cf(
            &db.cf(CF_MPPS)?,
            step.sop_instance_uid.as_bytes(),
            encode(CF_MPPS, &step.sop_instance_uid, step)?,
        );
        if announce {
            let event = crate::mpps::step_event(step, orders);
            append_events(db, &mut batch, vec![event])?;
        }
        db.write_synced(batch, "recording a performed procedure step")?;
        Ok(true)
    }
}
