//! Sequence numbers for the outbox. Writers insert their events unnumbered as part of their
//! own transaction (no lock shared across nodes on the ingest path). Before the outbox is
//! read, the committed unnumbered events get the next numbers, in insertion order, in a
//! transaction holding the events lock to its end; writers that number at once (the lock
//! path: stability, orders) hold the same lock. So numbers are given in the order they
//! become visible, and a reader past number N has seen every event numbered up to N.

use super::txn::PgTxn;
use super::{PgIndex, EVENTS_LOCK};
use crate::error::StorageError;

/// Number the committed unnumbered events (inside a transaction holding the events lock).
const NUMBER_PENDING: &str = "WITH todo AS (SELECT id FROM events WHERE seq IS NULL \
     ORDER BY id FOR UPDATE), \
     numbered AS (SELECT id, nextval('event_seq') AS seq FROM (SELECT id FROM todo ORDER BY id) t) \
     UPDATE events e SET seq = numbered.seq FROM numbered WHERE e.id = numbered.id";

/// Take the events lock and number what is pending, in `txn`.
pub(crate) fn lock_and_number(txn: &mut PgTxn<'_>) -> Result<(), StorageError> {
    txn.execute(
        "waiting for the outbox",
        "SELECT pg_advisory_xact_lock($1)",
        vec![Box::new(EVENTS_LOCK)],
    )?;
    txn.execute("numbering events", NUMBER_PENDING, Vec::new())
}

impl PgIndex {
    /// Give committed events their numbers, when any wait for one.
    pub(crate) fn number_events(&self) -> Result<(), StorageError> {
        let waiting = self.rows(
            "looking for unnumbered events",
            "SELECT 1 FROM events WHERE seq IS NULL LIMIT 1",
            Vec::new(),
        )?;
        if waiting.is_empty() {
            return Ok(());
        }
        self.write(lock_and_number)
    }
}
