//! Modality Performed Procedure Steps (PS3.4 F.7): what a modality reports it did, linked to
//! the orders it performed (by accession number), kept so the billing and EHR workers can
//! read the performed procedure codes and series.

use serde::{Deserialize, Serialize};

use crate::error::StorageError;
use crate::orders::{Code, Order, OrderStatus};

/// Performed Procedure Step Status (0040,0252).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MppsStatus {
    InProgress,
    Completed,
    Discontinued,
}

impl MppsStatus {
    /// From the DICOM defined term.
    pub fn parse(text: &str) -> Option<MppsStatus> {
        match text.trim() {
            "IN PROGRESS" => Some(MppsStatus::InProgress),
            "COMPLETED" => Some(MppsStatus::Completed),
            "DISCONTINUED" => Some(MppsStatus::Discontinued),
            _ => None,
        }
    }

    pub fn dicom(self) -> &'static str {
        match self {
            MppsStatus::InProgress => "IN PROGRESS",
            MppsStatus::Completed => "COMPLETED",
            MppsStatus::Discontinued => "DISCONTINUED",
        }
    }

    /// Once completed or discontinued, a step may no longer be updated (F.7.2.2.2).
    pub fn is_final(self) -> bool {
        self != MppsStatus::InProgress
    }

    /// The status the performed orders take.
    pub fn order_status(self) -> OrderStatus {
        match self {
            MppsStatus::InProgress => OrderStatus::InProgress,
            MppsStatus::Completed => OrderStatus::Completed,
            MppsStatus::Discontinued => OrderStatus::Discontinued,
        }
    }
}

/// One series the modality says it made (Performed Series Sequence item).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PerformedSeries {
    pub series_instance_uid: String,
    #[serde(default)]
    pub sop_instance_uids: Vec<String>,
}

/// One performed procedure step as last reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerformedStep {
    pub sop_instance_uid: String,
    pub status: MppsStatus,
    /// Accession numbers of the Scheduled Step Attributes Sequence (empty: unscheduled).
    #[serde(default)]
    pub accession_numbers: Vec<String>,
    #[serde(default)]
    pub study_instance_uids: Vec<String>,
    #[serde(default)]
    pub patient_id: String,
    #[serde(default)]
    pub patient_name: String,
    #[serde(default)]
    pub modality: String,
    #[serde(default)]
    pub station_ae_title: String,
    #[serde(default)]
    pub step_id: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub start: String,
    #[serde(default)]
    pub end: String,
    /// Procedure Code Sequence (0008,1032): what was performed (billing charges these).
    #[serde(default)]
    pub procedure_codes: Vec<Code>,
    #[serde(default)]
    pub series: Vec<PerformedSeries>,
    /// AE title of the modality that reported it.
    #[serde(default)]
    pub reported_by: String,
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// The performed steps kept by the index. A write stores the step, the orders it moves and
/// its outbox event (MppsInProgress / MppsCompleted / MppsDiscontinued) in one synced batch.
pub trait PerformedSteps: Send + Sync {
    fn performed_step(&self, sop_instance_uid: &str)
        -> Result<Option<PerformedStep>, StorageError>;
    /// Write `step` if the stored one is still the one the caller read (absent for
    /// `expected: None`, else `updated_ms == expected`), with `orders` (each checked the same
    /// way against its own `expected` updated_ms) and an event when `announce` is set.
    /// Returns false and writes nothing when anything changed meanwhile.
    fn put_performed_step(
        &self,
        step: &PerformedStep,
        expected: Option<u64>,
        orders: &[(Order, u64)],
        announce: bool,
    ) -> Result<bool, StorageError>;
}

/// The outbox event of a performed-step write: on the first order's study and patient, else
/// the step's own.
pub(crate) fn step_event(step: &PerformedStep, orders: &[(Order, u64)]) -> crate::events::NewEvent {
    use crate::events::EventKind;
    let kind = match step.status {
        MppsStatus::InProgress => EventKind::MppsInProgress,
        MppsStatus::Completed => EventKind::MppsCompleted,
        MppsStatus::Discontinued => EventKind::MppsDiscontinued,
    };
    let first_order = orders.first().map(|(o, _)| o);
    let study = first_order
        .map(|o| o.study_instance_uid.clone())
        .or_else(|| step.study_instance_uids.first().cloned())
        .unwrap_or_default();
    let patient_key = first_order
        .map(|o| o.patient_key())
        .unwrap_or_else(|| crate::records::patient_key(&step.patient_id, ""));
    crate::events::NewEvent {
        kind,
        study_instance_uid: study,
        series_instance_uid: None,
        sop_instance_uid: Some(step.sop_instance_uid.clone()),
        patient_key,
        accession_number: step.accession_numbers.first().cloned(),
        previous_study_instance_uid: None,
        previous_patient_key: None,
    }
}

/// Why a performed-step report is refused; each maps to a DIMSE status.
#[derive(Debug, thiserror::Error)]
pub enum MppsError {
    #[error("performed procedure step {0} already exists")]
    Duplicate(String),
    #[error("no performed procedure step {0}")]
    Unknown(String),
    #[error("performed procedure step {0} is {1:?} and may no longer be updated")]
    Final(String, MppsStatus),
    #[error("performed procedure step {0} kept changing under concurrent writers")]
    Contended(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

const ATTEMPTS: usize = 8;

/// The orders `step` performs, moved to its status; with the updated_ms each was read at.
fn moved_orders(
    orders: &dyn crate::orders::Orders,
    step: &PerformedStep,
    now_ms: u64,
) -> Result<Vec<(Order, u64)>, StorageError> {
    let mut out = Vec::new();
    for acc in &step.accession_numbers {
        let Some(stored) = orders.order(acc)? else {
            continue;
        };
        // A cancelled or already closed order keeps its status; a second step of a
        // completed order does not reopen it.
        if !stored.status.is_active() {
            continue;
        }
        let mut order = stored.clone();
        order.status = step.status.order_status();
        if !order.performed_steps.contains(&step.sop_instance_uid) {
            order.performed_steps.push(step.sop_instance_uid.clone());
        }
        order.updated_ms = now_ms.max(stored.updated_ms + 1);
        out.push((order, stored.updated_ms));
    }
    Ok(out)
}

/// N-CREATE: a new step (status IN PROGRESS, checked by the caller) and the orders it starts.
pub fn create(
    steps: &dyn PerformedSteps,
    orders: &dyn crate::orders::Orders,
    mut step: PerformedStep,
    now_ms: u64,
) -> Result<PerformedStep, MppsError> {
    step.created_ms = now_ms;
    step.updated_ms = now_ms;
    for _ in 0..ATTEMPTS {
        if steps.performed_step(&step.sop_instance_uid)?.is_some() {
            return Err(MppsError::Duplicate(step.sop_instance_uid));
        }
        let moved = moved_orders(orders, &step, now_ms)?;
        if steps.put_performed_step(&step, None, &moved, true)? {
            return Ok(step);
        }
    }
    Err(MppsError::Contended(step.sop_instance_uid))
}

/// N-SET: change a step that is still in progress; a new status moves its orders and is
/// announced in the outbox.
pub fn update(
    steps: &dyn PerformedSteps,
    orders: &dyn crate::orders::Orders,
    sop_instance_uid: &str,
    change: &dyn Fn(&mut PerformedStep),
    now_ms: u64,
) -> Result<PerformedStep, MppsError> {
    for _ in 0..ATTEMPTS {
        let Some(stored) = steps.performed_step(sop_instance_uid)? else {
            return Err(MppsError::Unknown(sop_instance_uid.to_string()));
        };
        if stored.status.is_final() {
            return Err(MppsError::Final(
                sop_instance_uid.to_string(),
                stored.status,
            ));
        }
        let mut step = stored.clone();
        change(&mut step);
        step.sop_instance_uid = stored.sop_instance_uid.clone();
        step.created_ms = stored.created_ms;
        step.updated_ms = now_ms.max(stored.updated_ms + 1);
        let announce = step.status != stored.status;
        let moved = if announce {
            moved_orders(orders, &step, now_ms)?
        } else {
            Vec::new()
        };
        if steps.put_performed_step(&step, Some(stored.updated_ms), &moved, announce)? {
            return Ok(step);
        }
    }
    Err(MppsError::Contended(sop_instance_uid.to_string()))
}

#[cfg(all(test, feature = "rocksdb"))]
mod tests {
    use super::*;
    use crate::events::{EventKind, Outbox};
    use crate::index::RocksIndex;
    use crate::order_intake::{receive, Intent};
    use crate::orders::Orders;

    fn step(uid: &str, acc: &str) -> PerformedStep {
        PerformedStep {
            sop_instance_uid: uid.into(),
            status: MppsStatus::InProgress,
            accession_numbers: vec![acc.into()],
            study_instance_uids: Vec::new(),
            patient_id: "P1".into(),
            patient_name: String::new(),
            modality: "CT".into(),
            station_ae_title: "CT1".into(),
            step_id: String::new(),
            description: String::new(),
            start: "20261205093000".into(),
            end: String::new(),
            procedure_codes: Vec::new(),
            series: Vec::new(),
            reported_by: "CT1".into(),
            created_ms: 0,
            updated_ms: 0,
        }
    }

    #[test]
    fn a_step_moves_its_order_through_started_and_completed() {
        let dir = tempfile::tempdir().expect("tmp");
        let index = RocksIndex::open(dir.path()).expect("open");
        let mut order = crate::orders::tests::sample();
        order.accession_number = "A1".into();
        receive(&index, order, Intent::Place, 10).expect("place");
        create(&index, &index, step("1.2.9", "A1"), 11).expect("create");
        assert!(matches!(
            create(&index, &index, step("1.2.9", "A1"), 12),
            Err(MppsError::Duplicate(_))
        ));
        let o = index.order("A1").expect("read").expect("order");
        assert_eq!(o.status, OrderStatus::InProgress);
        assert_eq!(o.performed_steps, ["1.2.9"]);
        let done = update(
            &index,
            &index,
            "1.2.9",
            &|s| {
                s.status = MppsStatus::Completed;
                s.end = "20261205100000".into();
            },
            13,
        )
        .expect("set");
        assert_eq!(done.status, MppsStatus::Completed);
        let o = index.order("A1").expect("read").expect("order");
        assert_eq!(o.status, OrderStatus::Completed);
        let mut listed = 0;
        index
            .active_orders(None, None, &mut |_| {
                listed += 1;
                true
            })
            .expect("worklist");
        assert_eq!(listed, 0, "completed orders leave the worklist");
        assert!(matches!(
            update(&index, &index, "1.2.9", &|_| {}, 14),
            Err(MppsError::Final(..))
        ));
        assert!(matches!(
            update(&index, &index, "9.9", &|_| {}, 14),
            Err(MppsError::Unknown(_))
        ));
        let kinds: Vec<_> = index
            .events_after(0, 10)
            .expect("events")
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                EventKind::OrderPlaced,
                EventKind::MppsInProgress,
                EventKind::MppsCompleted
            ]
        );
    }
}
