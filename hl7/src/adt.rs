//! ADT messages about patient identity (IHE ITI-8 / RAD-12 Patient Update):
//! - ADT^A40 (merge patient, patient identifier list; A34 from v2.3 read the same way): MRG-1
//!   names the prior patient, PID the surviving one. One message may carry several PID/MRG
//!   pairs, each mapped on its own.
//! - ADT^A08 / A31 (update patient information): the demographics in PID.

use pacs_storage::orders::OrderPatient;

use crate::mapping::patient;
use crate::message::{Header, Message};
use crate::nak::{AckCode, ErrorCode, Refusal};

/// A patient as the EHR identifies it: CX id and assigning authority (namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientRef {
    pub id: String,
    pub issuer: String,
}

/// What an ADT message asks of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatientChange {
    /// Everything stored for `prior` now belongs to `surviving` (whose PID demographics are
    /// given, for when the archive holds nothing of the surviving patient yet).
    Merge {
        prior: PatientRef,
        surviving: OrderPatient,
    },
    /// The patient's demographics as the EHR now has them (empty fields: unknown, left as
    /// they are).
    Update(OrderPatient),
}

#[derive(Debug, Clone)]
pub struct PatientMessage {
    pub header: Header,
    pub change: PatientChange,
}

/// Whether a message type/trigger is an ADT this module maps.
pub fn handles(header: &Header) -> bool {
    header.message_type == "ADT"
}

/// Map one PID group of an ADT message.
pub fn map(msg: &Message) -> Result<PatientMessage, Refusal> {
    let header = msg.header();
    let merge = match header.trigger.as_str() {
        "A40" | "A34" => true,
        "A08" | "A31" => false,
        t => {
            return Err(Refusal::new(
                AckCode::Reject,
                ErrorCode::UnsupportedEventCode,
                format!("ADT trigger event {t:?} is not supported (A40, A34, A08, A31)"),
            )
            .at("MSH", 9))
        }
    };
    if !msg.has("PID") {
        return Err(Refusal::new(
            AckCode::Reject,
            ErrorCode::SegmentSequence,
            "the message has no PID segment",
        )
        .at("PID", 1));
    }
    let current = patient(msg);
    if current.id.is_empty() {
        return Err(Refusal::missing("PID", 3, "the patient ID"));
    }
    if !merge {
        return Ok(PatientMessage {
            header,
            change: PatientChange::Update(current),
        });
    }
    if !msg.has("MRG") {
        return Err(Refusal::new(
            AckCode::Reject,
            ErrorCode::SegmentSequence,
            "a merge message needs an MRG segment after each PID",
        )
        .at("MRG", 1));
    }
    // MRG-1 (prior patient identifier list); MRG-4 (prior patient ID, v2.3) when empty.
    let (id, issuer) = match msg.get("MRG-1.1").trim() {
        "" => (msg.get("MRG-4.1"), msg.get("MRG-4.4.1")),
        id => (id.to_string(), msg.get("MRG-1.4.1")),
    };
    let prior = PatientRef {
        id: id.trim().to_string(),
        issuer: issuer.trim().to_string(),
    };
    if prior.id.is_empty() {
        return Err(Refusal::missing("MRG", 1, "the prior patient ID"));
    }
    if prior.id == current.id && prior.issuer == current.issuer {
        return Err(Refusal::new(
            AckCode::Error,
            ErrorCode::DataType,
            "the prior patient (MRG-1) is the surviving patient (PID-3)",
        )
        .at("MRG", 1));
    }
    Ok(PatientMessage {
        header,
        change: PatientChange::Merge {
            prior,
            surviving: current,
        },
    })
}
