//! The event outbox: what happened to the archive, in commit order. Events are written in the
//! same RocksDB batch as the index change they describe, so none is lost on a crash and none
//! is emitted for data that was not committed. Workers and the change feed read them by
//! sequence number; delivery state per worker is kept beside them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    InstanceStored,
    InstanceDeleted,
    /// No new instance in the series for the quiet period.
    SeriesStable,
    /// No new instance in the study for the quiet period.
    StudyStable,
    StudyDeleted,
    /// An order was placed (FHIR ServiceRequest or HL7 ORM/OMI).
    OrderPlaced,
    OrderChanged,
    OrderCancelled,
    /// A modality reported the performed procedure step (MPPS).
    MppsInProgress,
    MppsCompleted,
    MppsDiscontinued,
    /// A correction changed the patient attributes of this study (one event per study).
    PatientUpdated,
    /// The study's patient was merged into another (`previous_patient_key` is the old one).
    PatientsMerged,
    /// A correction changed this study's attributes, or took series from it or gave it some;
    /// a study no longer in the index was corrected away (e.g. its last series moved).
    StudyUpdated,
    /// A series moved into this study from `previous_study_instance_uid`.
    SeriesMoved,
}

impl EventKind {
    /// Change-feed action of the event (create / delete), as Microsoft's DICOM change feed.
    pub fn action(self) -> &'static str {
        match self {
            EventKind::InstanceStored => "create",
            EventKind::InstanceDeleted | EventKind::StudyDeleted => "delete",
            EventKind::SeriesStable | EventKind::StudyStable => "stable",
            EventKind::OrderPlaced => "order",
            EventKind::OrderChanged => "order-change",
            EventKind::OrderCancelled => "order-cancel",
            EventKind::MppsInProgress | EventKind::MppsCompleted | EventKind::MppsDiscontinued => {
                "performed"
            }
            EventKind::PatientUpdated
            | EventKind::PatientsMerged
            | EventKind::StudyUpdated
            | EventKind::SeriesMoved => "update",
        }
    }
}

/// One committed change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Position in commit order, from 1, never reused.
    pub seq: u64,
    pub time_ms: u64,
    pub kind: EventKind,
    pub study_instance_uid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series_instance_uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sop_instance_uid: Option<String>,
    /// Patient key (PatientID + issuer) of the study.
    pub patient_key: String,
    /// The order the event is about (order and MPPS events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accession_number: Option<String>,
    /// Corrections: the study a moved series came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_study_instance_uid: Option<String>,
    /// Corrections: the patient key the study had before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_patient_key: Option<String>,
}

impl EventKind {
    /// A correction of stored data (the systems fed from the archive fix their copy).
    pub fn is_correction(self) -> bool {
        matches!(
            self,
            EventKind::PatientUpdated
                | EventKind::PatientsMerged
                | EventKind::StudyUpdated
                | EventKind::SeriesMoved
        )
    }
}

/// An event before it has its sequence number.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: EventKind,
    pub study_instance_uid: String,
    pub series_instance_uid: Option<String>,
    pub sop_instance_uid: Option<String>,
    pub patient_key: String,
    pub accession_number: Option<String>,
    pub previous_study_instance_uid: Option<String>,
    pub previous_patient_key: Option<String>,
}

impl NewEvent {
    /// The committed event, numbered `seq`.
    pub fn into_event(self, seq: u64, time_ms: u64) -> Event {
        Event {
            seq,
            time_ms,
            kind: self.kind,
            study_instance_uid: self.study_instance_uid,
            series_instance_uid: self.series_instance_uid,
            sop_instance_uid: self.sop_instance_uid,
            patient_key: self.patient_key,
            accession_number: self.accession_number,
            previous_study_instance_uid: self.previous_study_instance_uid,
            previous_patient_key: self.previous_patient_key,
        }
    }
}

/// Where one event stands with one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Delivered,
    /// Tried the configured number of times; waits for a manual retry.
    Dead,
    /// The worker had nothing to send for this event.
    Skipped,
    /// Not sent on purpose until someone acts (e.g. a billing hold); the reason is in
    /// `last_error`. A retry sends it again.
    Held,
}

/// Delivery of one event to one worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub worker: String,
    pub seq: u64,
    pub state: DeliveryState,
    pub attempts: u32,
    /// When the next attempt may run (ms since the epoch).
    pub next_attempt_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Sent with every attempt so the receiver can drop repeats.
    pub idempotency_key: String,
    pub study_instance_uid: String,
}

impl Delivery {
    pub fn new(worker: &str, event: &Event) -> Delivery {
        Delivery {
            worker: worker.to_string(),
            seq: event.seq,
            state: DeliveryState::Pending,
            attempts: 0,
            next_attempt_ms: 0,
            last_error: None,
            idempotency_key: format!("{worker}-{}", event.seq),
            study_instance_uid: event.study_instance_uid.clone(),
        }
    }
}

/// A study whose instances are still arriving: stable once `last_update_ms` is older than the
/// quiet period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unstable {
    pub study_instance_uid: String,
    pub patient_key: String,
    pub last_update_ms: u64,
    /// Series that received instances since the study was last stable.
    pub series: Vec<String>,
}

/// Reading the outbox and keeping delivery state. Implemented by the index (events are
/// written by its batches), kept apart so consumers see only this.
pub trait Outbox: Send + Sync {
    /// Events after sequence number `after`, in order.
    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, crate::StorageError>;
    /// The last sequence number given out (0 when none).
    fn last_seq(&self) -> Result<u64, crate::StorageError>;
    /// Emit SeriesStable/StudyStable for studies quiet since `now_ms - quiet_ms`; returns them.
    fn mark_stable(&self, now_ms: u64, quiet_ms: u64) -> Result<Vec<Event>, crate::StorageError>;
    /// Where a worker has read the outbox up to.
    fn cursor(&self, worker: &str) -> Result<u64, crate::StorageError>;
    /// Move a worker's cursor and record the deliveries it created, atomically.
    fn advance(
        &self,
        worker: &str,
        cursor: u64,
        created: &[Delivery],
    ) -> Result<(), crate::StorageError>;
    /// Record a delivery's new state (synced). A delivered one also becomes its worker's last
    /// delivery for its study (see `delivered_for_study`), in the same write.
    fn put_delivery(&self, delivery: &Delivery) -> Result<(), crate::StorageError>;
    /// The sequence number of the last delivery of `worker` that was delivered for `study`,
    /// if any (e.g. so a notice is sent once per study, not again when it grows).
    fn delivered_for_study(
        &self,
        worker: &str,
        study: &str,
    ) -> Result<Option<u64>, crate::StorageError>;
    fn delivery(&self, worker: &str, seq: u64) -> Result<Option<Delivery>, crate::StorageError>;
    /// Put a delivery back to pending and tell its worker (which holds its queue in memory).
    fn retry(&self, worker: &str, seq: u64) -> Result<Option<Delivery>, crate::StorageError>;
    /// Deliveries put back by `retry` since the worker last asked.
    fn take_retries(&self, worker: &str) -> Result<Vec<Delivery>, crate::StorageError>;
    /// Deliveries in (worker, seq) order, optionally of one worker, after a (worker, seq).
    fn deliveries(
        &self,
        worker: Option<&str>,
        after: Option<(&str, u64)>,
        limit: usize,
    ) -> Result<Vec<Delivery>, crate::StorageError>;
}

/// A finding about a study: from the built-in quality analyzers or an external AI service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flag {
    pub id: String,
    pub study_instance_uid: String,
    pub label: String,
    /// 0.0 ..= 1.0
    pub score: f64,
    pub severity: Severity,
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series_instance_uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sop_instance_uid: Option<String>,
    pub created_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

/// Flags per study and the read marks of the worklist.
pub trait Flags: Send + Sync {
    fn add_flag(&self, flag: &Flag) -> Result<(), crate::StorageError>;
    fn flags(&self, study: &str) -> Result<Vec<Flag>, crate::StorageError>;
    fn mark_read(&self, study: &str, read: bool) -> Result<(), crate::StorageError>;
    fn is_read(&self, study: &str) -> Result<bool, crate::StorageError>;
}
