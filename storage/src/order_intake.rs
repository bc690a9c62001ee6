//! What an incoming order message does to the stored orders: the one set of rules behind
//! FHIR ServiceRequest and HL7 ORM/OMI (place, change, cancel, create-or-update), and the
//! status changes MPPS reports. Each runs as read, decide, compare-and-set write, retried when
//! another writer got there first, so two messages for one order never lose each other.

use crate::error::StorageError;
use crate::orders::{Order, OrderChange, OrderError, OrderStatus, Orders};

/// What the sender asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// A new order (HL7 NW, FHIR create): refused if the accession number is taken.
    Place,
    /// Change an existing active order (HL7 XO/SC).
    Change,
    /// Cancel an existing order (HL7 CA/OC/DC, FHIR revoked / entered-in-error).
    Cancel,
    /// Create, or change the order with this accession number (FHIR conditional update).
    Upsert,
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error(transparent)]
    Invalid(#[from] OrderError),
    #[error("no order with accession number {0}")]
    Unknown(String),
    #[error("accession number {0} is already used by another order")]
    Taken(String),
    #[error("order {0} kept changing under concurrent writers; try again")]
    Contended(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The order as stored after the message, and what the message did to it.
#[derive(Debug, Clone)]
pub struct Received {
    pub order: Order,
    pub change: OrderChange,
    /// True when the stored order was already exactly this (a repeated message).
    pub unchanged: bool,
}

const ATTEMPTS: usize = 8;

/// A Study Instance UID for an order that did not bring one (UUID-derived, PS3.5 B.2).
pub fn new_study_uid() -> String {
    format!("2.25.{}", uuid::Uuid::new_v4().as_u128())
}

/// Apply `incoming` as `intent` asks, at time `now_ms`.
pub fn receive(
    orders: &dyn Orders,
    incoming: Order,
    intent: Intent,
    now_ms: u64,
) -> Result<Received, IntakeError> {
    let acc = incoming.accession_number.clone();
    if intent != Intent::Cancel {
        incoming.validate()?;
    } else if acc.trim().is_empty() {
        return Err(OrderError::NoAccessionNumber.into());
    }
    for _ in 0..ATTEMPTS {
        let stored = orders.order(&acc)?;
        let expected = stored.as_ref().map(|o| o.updated_ms);
        let (order, change) = decide(stored.as_ref(), incoming.clone(), intent, now_ms)?;
        if let Some(s) = &stored {
            if same_content(s, &order) {
                return Ok(Received {
                    order: s.clone(),
                    change,
                    unchanged: true,
                });
            }
        }
        if orders.put_order(&order, change, expected)? {
            return Ok(Received {
                order,
                change,
                unchanged: false,
            });
        }
    }
    Err(IntakeError::Contended(acc))
}

fn decide(
    stored: Option<&Order>,
    mut incoming: Order,
    intent: Intent,
    now_ms: u64,
) -> Result<(Order, OrderChange), IntakeError> {
    let acc = incoming.accession_number.clone();
    let cancelling = intent == Intent::Cancel || incoming.status == OrderStatus::Cancelled;
    match stored {
        None if intent == Intent::Place || (intent == Intent::Upsert && !cancelling) => {
            if incoming.study_instance_uid.is_empty() {
                incoming.study_instance_uid = new_study_uid();
            }
            if incoming.requested_procedure_id.is_empty() {
                incoming.requested_procedure_id = acc.clone();
            }
            if incoming.step.id.is_empty() {
                incoming.step.id = acc;
            }
            incoming.status = OrderStatus::Scheduled;
            incoming.created_ms = now_ms;
            incoming.updated_ms = now_ms;
            incoming.performed_steps.clear();
            Ok((incoming, OrderChange::Placed))
        }
        None => Err(IntakeError::Unknown(acc)),
        Some(_) if intent == Intent::Place => Err(IntakeError::Taken(acc)),
        Some(s) if cancelling => {
            if matches!(s.status, OrderStatus::Completed | OrderStatus::Discontinued) {
                return Err(OrderError::Closed(acc, s.status).into());
            }
            let mut order = s.clone();
            order.status = OrderStatus::Cancelled;
            order.updated_ms = now_ms.max(s.updated_ms + 1);
            Ok((order, OrderChange::Cancelled))
        }
        Some(s) => {
            if !s.status.is_active() {
                return Err(OrderError::Closed(acc, s.status).into());
            }
            // The EHR changes what was ordered; what the archive assigned or learned stays.
            if incoming.study_instance_uid.is_empty() {
                incoming.study_instance_uid = s.study_instance_uid.clone();
            }
            if incoming.requested_procedure_id.is_empty() {
                incoming.requested_procedure_id = s.requested_procedure_id.clone();
            }
            if incoming.step.id.is_empty() {
                incoming.step.id = s.step.id.clone();
            }
            incoming.status = s.status;
            incoming.created_ms = s.created_ms;
            incoming.performed_steps = s.performed_steps.clone();
            incoming.updated_ms = now_ms.max(s.updated_ms + 1);
            Ok((incoming, OrderChange::Changed))
        }
    }
}

/// Equal apart from the write time: a repeated message changes nothing and emits nothing.
fn same_content(a: &Order, b: &Order) -> bool {
    let mut b = b.clone();
    b.updated_ms = a.updated_ms;
    b.created_ms = a.created_ms;
    *a == b
}

/// Move an order's status as a performed procedure step reports it, recording the MPPS
/// instance. Returns the order as stored, or None when no order has this accession number.
pub fn perform(
    orders: &dyn Orders,
    accession_number: &str,
    status: OrderStatus,
    mpps_uid: &str,
    now_ms: u64,
) -> Result<Option<Order>, IntakeError> {
    for _ in 0..ATTEMPTS {
        let Some(stored) = orders.order(accession_number)? else {
            return Ok(None);
        };
        let mut order = stored.clone();
        order.status = status;
        if !order.performed_steps.iter().any(|u| u == mpps_uid) {
            order.performed_steps.push(mpps_uid.to_string());
        }
        if order == stored {
            return Ok(Some(stored));
        }
        order.updated_ms = now_ms.max(stored.updated_ms + 1);
        if orders.put_order(&order, OrderChange::Changed, Some(stored.updated_ms))? {
            return Ok(Some(order));
        }
    }
    Err(IntakeError::Contended(accession_number.to_string()))
}

#[cfg(all(test, feature = "rocksdb"))]
mod tests {
    use super::*;
    use crate::index::RocksIndex;

    fn order(acc: &str) -> Order {
        let mut o = crate::orders::tests::sample();
        o.accession_number = acc.into();
        o.study_instance_uid.clear();
        o.requested_procedure_id.clear();
        o.step.id.clear();
        o
    }

    #[test]
    fn place_change_cancel_and_repeat() {
        let dir = tempfile::tempdir().expect("tmp");
        let index = RocksIndex::open(dir.path()).expect("open");
        let placed = receive(&index, order("A1"), Intent::Place, 10).expect("place");
        assert_eq!(placed.change, OrderChange::Placed);
        assert!(placed.order.study_instance_uid.starts_with("2.25."));
        assert_eq!(placed.order.step.id, "A1");
        assert!(matches!(
            receive(&index, order("A1"), Intent::Place, 11),
            Err(IntakeError::Taken(_))
        ));
        // The same content again: nothing written.
        let again = receive(&index, order("A1"), Intent::Upsert, 12).expect("upsert");
        assert!(again.unchanged);
        let mut changed = order("A1");
        changed.step.modality = "MR".into();
        let c = receive(&index, changed, Intent::Upsert, 13).expect("change");
        assert_eq!(c.change, OrderChange::Changed);
        assert_eq!(c.order.study_instance_uid, placed.order.study_instance_uid);
        assert_eq!(c.order.step.modality, "MR");
        assert!(matches!(
            receive(&index, order("A9"), Intent::Change, 14),
            Err(IntakeError::Unknown(_))
        ));
        let x = receive(&index, order("A1"), Intent::Cancel, 15).expect("cancel");
        assert_eq!(x.order.status, OrderStatus::Cancelled);
        assert!(matches!(
            receive(&index, order("A1"), Intent::Change, 16),
            Err(IntakeError::Invalid(OrderError::Closed(..)))
        ));
        let mut bad = order("A2");
        bad.patient.id.clear();
        assert!(matches!(
            receive(&index, bad, Intent::Place, 17),
            Err(IntakeError::Invalid(OrderError::NoPatientId))
        ));
        assert_eq!(crate::events::Outbox::last_seq(&index).expect("seq"), 3);
    }

    #[test]
    fn performed_steps_move_the_status() {
        let dir = tempfile::tempdir().expect("tmp");
        let index = RocksIndex::open(dir.path()).expect("open");
        receive(&index, order("A1"), Intent::Place, 10).expect("place");
        let o = perform(&index, "A1", OrderStatus::InProgress, "1.2.3", 11)
            .expect("perform")
            .expect("known");
        assert_eq!(o.status, OrderStatus::InProgress);
        assert_eq!(o.performed_steps, ["1.2.3"]);
        assert!(perform(&index, "A9", OrderStatus::Completed, "1.2.4", 12)
            .expect("perform")
            .is_none());
    }
}
