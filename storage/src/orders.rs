//! Imaging orders from the EHR (FHIR ServiceRequest, HL7 v2 ORM/OMI) and the scheduled
//! procedure step each one becomes in the modality worklist (PS3.4 K.6).
//!
//! One record per order, keyed by its accession number (the identifier that FHIR, HL7 and the
//! images all carry). FHIR and HL7 build the same [`Order`]; the index stores it with an
//! outbox event in one write, and the worklist SCP answers from the active ones.

use serde::{Deserialize, Serialize};

use crate::error::StorageError;

/// Where an order stands. Scheduled and in-progress orders are on the worklist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Scheduled,
    /// An MPPS said the exam started.
    InProgress,
    /// An MPPS said the exam ended.
    Completed,
    /// An MPPS said the exam was stopped before it ended.
    Discontinued,
    /// Cancelled by the EHR (FHIR revoked / entered-in-error, HL7 CA / XO-cancel).
    Cancelled,
}

impl OrderStatus {
    /// On the worklist: a modality may still perform it.
    pub fn is_active(self) -> bool {
        matches!(self, OrderStatus::Scheduled | OrderStatus::InProgress)
    }

    /// Scheduled Procedure Step Status (0040,0020) as the worklist reports it.
    pub fn step_status(self) -> &'static str {
        match self {
            OrderStatus::Scheduled => "SCHEDULED",
            OrderStatus::InProgress => "STARTED",
            OrderStatus::Completed => "COMPLETED",
            OrderStatus::Discontinued => "DISCONTINUED",
            OrderStatus::Cancelled => "CANCELLED",
        }
    }
}

/// Requested Procedure Priority (0040,1003).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Stat,
    High,
    #[default]
    Routine,
    Medium,
    Low,
}

impl Priority {
    pub fn dicom(self) -> &'static str {
        match self {
            Priority::Stat => "STAT",
            Priority::High => "HIGH",
            Priority::Routine => "ROUTINE",
            Priority::Medium => "MEDIUM",
            Priority::Low => "LOW",
        }
    }
}

/// A coded concept (DICOM code sequence item, FHIR Coding, HL7 CE/CWE).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Code {
    pub value: String,
    /// Coding Scheme Designator, e.g. "LN", "SCT", or a local designator.
    pub scheme: String,
    pub meaning: String,
}

/// The patient as the order names them (reconciled to the images by ID + issuer).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OrderPatient {
    pub id: String,
    #[serde(default)]
    pub issuer: String,
    /// DICOM PN form: `Family^Given^Middle^Prefix^Suffix`.
    #[serde(default)]
    pub name: String,
    /// YYYYMMDD, or empty.
    #[serde(default)]
    pub birth_date: String,
    /// M, F, O or empty.
    #[serde(default)]
    pub sex: String,
}

/// Where an order came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderSource {
    Fhir,
    Hl7,
}

/// One imaging order and its scheduled procedure step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Accession Number (0008,0050): the order's identity. At most 16 characters (SH).
    pub accession_number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placer_order_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filler_order_number: Option<String>,
    pub status: OrderStatus,
    pub patient: OrderPatient,
    /// Study Instance UID the modality is to use (assigned when the order is placed).
    pub study_instance_uid: String,
    /// Requested Procedure ID (0040,1001).
    pub requested_procedure_id: String,
    /// Requested Procedure Code Sequence (0032,1064).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub procedure: Option<Code>,
    /// Requested Procedure Description (0032,1060).
    #[serde(default)]
    pub procedure_description: String,
    #[serde(default)]
    pub priority: Priority,
    /// Reason for the Requested Procedure (0040,1002).
    #[serde(default)]
    pub reason: String,
    /// Requesting Physician (0032,1032), PN.
    #[serde(default)]
    pub requesting_physician: String,
    /// Referring Physician's Name (0008,0090), PN.
    #[serde(default)]
    pub referring_physician: String,
    /// Admission ID (0038,0010) of the visit, if the order names one.
    #[serde(default)]
    pub admission_id: String,
    pub step: ScheduledStep,
    /// Specific Character Set of the order's text, as DICOM names it ("ISO_IR 192" for
    /// UTF-8, "ISO_IR 100" for Latin-1); worklist answers use it where the text fits.
    pub charset: String,
    pub source: OrderSource,
    /// Times in milliseconds since the Unix epoch.
    pub created_ms: u64,
    pub updated_ms: u64,
    /// Performed Procedure Step SOP Instance UIDs reported for this order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub performed_steps: Vec<String>,
}

/// The Scheduled Procedure Step (0040,0100) item of an order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ScheduledStep {
    /// Scheduled Procedure Step ID (0040,0009).
    pub id: String,
    /// Modality (0008,0060), e.g. CT.
    pub modality: String,
    /// Scheduled Station AE Title (0040,0001); empty when any station may perform it.
    #[serde(default)]
    pub station_ae_title: String,
    /// Scheduled Station Name (0040,0010).
    #[serde(default)]
    pub station_name: String,
    /// Scheduled Procedure Step Location (0040,0011).
    #[serde(default)]
    pub location: String,
    /// Start date YYYYMMDD (0040,0002) and time HHMMSS (0040,0003).
    pub start_date: String,
    #[serde(default)]
    pub start_time: String,
    /// Scheduled Procedure Step Description (0040,0007).
    #[serde(default)]
    pub description: String,
    /// Scheduled Performing Physician's Name (0040,0006), PN.
    #[serde(default)]
    pub performing_physician: String,
}

/// What a write did to an order, as the outbox reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderChange {
    Placed,
    Changed,
    Cancelled,
}

/// Why an order is refused before it is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("the order has no accession number")]
    NoAccessionNumber,
    #[error("accession number {0:?} is longer than 16 characters or holds a backslash or control character")]
    BadAccessionNumber(String),
    #[error("the order has no patient ID")]
    NoPatientId,
    #[error("the order has no modality (performer type)")]
    NoModality,
    #[error("the scheduled start {0:?} is not a date YYYYMMDD with an optional time HHMMSS")]
    BadStart(String),
    #[error("order {0} is {1:?} and can no longer change")]
    Closed(String, OrderStatus),
}

impl Order {
    /// Check the fields every worklist answer needs.
    pub fn validate(&self) -> Result<(), OrderError> {
        let acc = &self.accession_number;
        if acc.trim().is_empty() {
            return Err(OrderError::NoAccessionNumber);
        }
        if acc.chars().count() > 16 || acc.chars().any(|c| c == '\\' || c.is_control()) {
            return Err(OrderError::BadAccessionNumber(acc.clone()));
        }
        if self.patient.id.trim().is_empty() {
            return Err(OrderError::NoPatientId);
        }
        if self.step.modality.trim().is_empty() {
            return Err(OrderError::NoModality);
        }
        let date_ok = self.step.start_date.len() == 8
            && self.step.start_date.bytes().all(|b| b.is_ascii_digit());
        let time_ok = self.step.start_time.is_empty()
            || (self.step.start_time.len() >= 4
                && self.step.start_time.len() <= 6
                && self.step.start_time.bytes().all(|b| b.is_ascii_digit()));
        if !date_ok || !time_ok {
            return Err(OrderError::BadStart(format!(
                "{}{}",
                self.step.start_date, self.step.start_time
            )));
        }
        Ok(())
    }

    /// `YYYYMMDD` + `HHMMSS` (time padded): the worklist's order.
    pub fn scheduled_start(&self) -> String {
        let mut time = self.step.start_time.clone();
        while time.len() < 6 {
            time.push('0');
        }
        format!("{}{}", self.step.start_date, time)
    }

    /// Key of the patient in the image index (PatientID + issuer).
    pub fn patient_key(&self) -> String {
        crate::records::patient_key(&self.patient.id, &self.patient.issuer)
    }
}

/// The outbox event of an order write; a change that cancels is reported as a cancellation.
pub(crate) fn order_event(order: &Order, change: OrderChange) -> crate::events::NewEvent {
    use crate::events::EventKind;
    let kind = match change {
        OrderChange::Placed => EventKind::OrderPlaced,
        _ if order.status == OrderStatus::Cancelled => EventKind::OrderCancelled,
        OrderChange::Changed => EventKind::OrderChanged,
        OrderChange::Cancelled => EventKind::OrderCancelled,
    };
    crate::events::NewEvent {
        kind,
        study_instance_uid: order.study_instance_uid.clone(),
        series_instance_uid: None,
        sop_instance_uid: None,
        patient_key: order.patient_key(),
        accession_number: Some(order.accession_number.clone()),
        previous_study_instance_uid: None,
        previous_patient_key: None,
    }
}

/// The orders kept by the index: each write is atomic with its outbox event and synced.
pub trait Orders: Send + Sync {
    /// Create or replace the order with this accession number, with an event saying `change`,
    /// if the stored one is still the one the caller read: absent for `expected: None`, else
    /// with `updated_ms == expected`. Returns false (and writes nothing) when it is not.
    fn put_order(
        &self,
        order: &Order,
        change: OrderChange,
        expected: Option<u64>,
    ) -> Result<bool, StorageError>;
    fn order(&self, accession_number: &str) -> Result<Option<Order>, StorageError>;
    /// All orders in accession-number order after `after` (paging), any status.
    fn list_orders(&self, after: Option<&str>, limit: usize) -> Result<Vec<Order>, StorageError>;
    /// Orders still on the worklist whose scheduled start date lies in `from..=to` (YYYYMMDD,
    /// either end open), in start order, handed to `on_order` until it returns false.
    fn active_orders(
        &self,
        from: Option<&str>,
        to: Option<&str>,
        on_order: &mut dyn FnMut(Order) -> bool,
    ) -> Result<(), StorageError>;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> Order {
        Order {
            accession_number: "ACC1".into(),
            placer_order_number: None,
            filler_order_number: None,
            status: OrderStatus::Scheduled,
            patient: OrderPatient {
                id: "P1".into(),
                name: "Doe^Jane".into(),
                ..Default::default()
            },
            study_instance_uid: "1.2.3".into(),
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
                start_date: "20261205".into(),
                start_time: "0930".into(),
                ..Default::default()
            },
            charset: "ISO_IR 192".into(),
            source: OrderSource::Fhir,
            created_ms: 0,
            updated_ms: 0,
            performed_steps: Vec::new(),
        }
    }

    #[test]
    fn validation_names_the_missing_field() {
        assert_eq!(sample().validate(), Ok(()));
        let mut o = sample();
        o.accession_number = "12345678901234567".into();
        assert!(matches!(
            o.validate(),
            Err(OrderError::BadAccessionNumber(_))
        ));
        let mut o = sample();
        o.step.modality.clear();
        assert_eq!(o.validate(), Err(OrderError::NoModality));
        let mut o = sample();
        o.step.start_date = "2026-12-05".into();
        assert!(matches!(o.validate(), Err(OrderError::BadStart(_))));
    }
}
