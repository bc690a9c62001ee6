//! ORM^O01 (v2.3–2.5) and OMI^O23 (v2.5+) to an [`Order`] and what the sender asked for,
//! following IHE Radiology RAD-2/RAD-4. Each ORC group of a message is mapped on its own
//! ([`crate::message::Message::order_groups`]).

use pacs_storage::order_intake::Intent;
use pacs_storage::orders::{
    Code, Order, OrderPatient, OrderSource, OrderStatus, Priority, ScheduledStep,
};

use crate::dtm;
use crate::message::{Header, Message};
use crate::nak::{AckCode, ErrorCode, Refusal};

/// A message the archive can apply.
#[derive(Debug, Clone)]
pub struct OrderMessage {
    pub header: Header,
    pub intent: Intent,
    /// ORC-1 as sent (NW, XO, CA, …).
    pub order_control: String,
    pub order: Order,
}

/// Which of the two structures the message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Orm,
    Omi,
}

pub fn map(msg: &Message) -> Result<OrderMessage, Refusal> {
    let header = msg.header();
    let kind = match (header.message_type.as_str(), header.trigger.as_str()) {
        ("ORM", "O01") => Kind::Orm,
        ("OMI", "O23") => Kind::Omi,
        ("ORM" | "OMI", t) => {
            return Err(Refusal::new(
                AckCode::Reject,
                ErrorCode::UnsupportedEventCode,
                format!("trigger event {t:?} is not supported (ORM^O01, OMI^O23)"),
            )
            .at("MSH", 9))
        }
        (t, _) => {
            return Err(Refusal::new(
                AckCode::Reject,
                ErrorCode::UnsupportedMessageType,
                format!("message type {t:?} is not supported (ORM^O01, OMI^O23, ADT^A40)"),
            )
            .at("MSH", 9))
        }
    };
    if !msg.has("ORC") {
        return Err(Refusal::new(
            AckCode::Reject,
            ErrorCode::SegmentSequence,
            "the message has no ORC segment",
        )
        .at("ORC", 1));
    }
    let order_control = msg.get("ORC-1").trim().to_ascii_uppercase();
    let status_is_cancel = msg.get("ORC-5").trim().eq_ignore_ascii_case("CA");
    let intent = match order_control.as_str() {
        "NW" => Intent::Place,
        "XO" | "SC" if status_is_cancel => Intent::Cancel,
        "XO" | "SC" => Intent::Change,
        "CA" | "OC" | "DC" => Intent::Cancel,
        other => {
            return Err(Refusal::new(
                AckCode::Reject,
                ErrorCode::TableValueNotFound,
                format!("order control {other:?} is not supported (NW, XO, SC, CA, OC, DC)"),
            )
            .at("ORC", 1))
        }
    };
    let cancelling = intent == Intent::Cancel;
    let first = |paths: &[&str]| {
        paths
            .iter()
            .map(|p| msg.get(p).trim().to_string())
            .find(|v| !v.is_empty())
            .unwrap_or_default()
    };

    let placer = first(&["ORC-2.1", "OBR-2.1"]);
    let filler = first(&["ORC-3.1", "OBR-3.1"]);
    let accession = match kind {
        Kind::Omi => first(&["IPC-1.1", "ORC-3.1", "ORC-2.1"]),
        Kind::Orm => first(&["OBR-18", "ORC-3.1", "ORC-2.1"]),
    };
    if accession.is_empty() {
        let (seg, field) = match kind {
            Kind::Omi => ("IPC", 1),
            Kind::Orm => ("OBR", 18),
        };
        return Err(Refusal::missing(seg, field, "the accession number"));
    }

    let patient = patient(msg);
    if patient.id.is_empty() && !cancelling {
        return Err(Refusal::missing("PID", 3, "the patient ID"));
    }

    let modality = match kind {
        Kind::Omi => first(&["IPC-5.1", "OBR-24"]),
        Kind::Orm => first(&["OBR-24"]),
    };
    if modality.is_empty() && !cancelling {
        let (seg, field) = match kind {
            Kind::Omi => ("IPC", 5),
            Kind::Orm => ("OBR", 24),
        };
        return Err(Refusal::missing(seg, field, "no modality: the modality"));
    }

    let (start_date, start_time) = start(msg, cancelling)?;
    let service = code(msg, "OBR", 4);
    let procedure = code(msg, "OBR", 44).or_else(|| service.clone());
    let description = service
        .as_ref()
        .map(|c| c.meaning.clone())
        .filter(|m| !m.is_empty())
        .or_else(|| procedure.as_ref().map(|c| c.meaning.clone()))
        .unwrap_or_default();
    let priority = match first(&["TQ1-9.1", "ORC-7.6", "OBR-27.6"]).as_str() {
        "S" => Priority::Stat,
        "A" => Priority::High,
        "T" => Priority::Medium,
        _ => Priority::Routine,
    };
    let (study_uid, rp_id, sps_id) = match kind {
        Kind::Omi => (
            first(&["IPC-3.1", "ZDS-1.1"]),
            first(&["IPC-2.1", "OBR-19"]),
            first(&["IPC-4.1", "OBR-20"]),
        ),
        Kind::Orm => (first(&["ZDS-1.1"]), first(&["OBR-19"]), first(&["OBR-20"])),
    };

    let order = Order {
        accession_number: accession,
        placer_order_number: Some(placer).filter(|s| !s.is_empty()),
        filler_order_number: Some(filler).filter(|s| !s.is_empty()),
        status: if cancelling {
            OrderStatus::Cancelled
        } else {
            OrderStatus::Scheduled
        },
        patient,
        study_instance_uid: study_uid,
        requested_procedure_id: rp_id,
        procedure,
        procedure_description: description.clone(),
        priority,
        reason: first(&["OBR-31.2", "OBR-31.1"]),
        requesting_physician: xcn_to_pn(msg, "ORC", 12)
            .or_else(|| xcn_to_pn(msg, "OBR", 16))
            .unwrap_or_default(),
        referring_physician: xcn_to_pn(msg, "PV1", 8).unwrap_or_default(),
        admission_id: first(&["PV1-19.1"]),
        step: ScheduledStep {
            id: sps_id,
            modality,
            station_ae_title: first(&["IPC-9.1"]),
            station_name: first(&["IPC-7.1"]),
            location: first(&["IPC-8.1", "IPC-8.2"]),
            start_date,
            start_time,
            description,
            performing_physician: String::new(),
        },
        charset: msg.charset().dicom().to_string(),
        source: OrderSource::Hl7,
        created_ms: 0,
        updated_ms: 0,
        performed_steps: Vec::new(),
    };
    Ok(OrderMessage {
        header,
        intent,
        order_control,
        order,
    })
}

/// PID-3 (first repetition), PID-5, PID-7, PID-8.
pub(crate) fn patient(msg: &Message) -> OrderPatient {
    let sex = match msg.get("PID-8").trim() {
        s @ ("M" | "F" | "O") => s.to_string(),
        _ => String::new(),
    };
    let birth: String = msg.get("PID-7").trim().chars().take(8).collect();
    OrderPatient {
        id: msg.get("PID-3.1").trim().to_string(),
        issuer: msg.get("PID-3.4.1").trim().to_string(),
        name: xpn_to_pn(msg),
        birth_date: if birth.len() == 8 && birth.bytes().all(|b| b.is_ascii_digit()) {
            birth
        } else {
            String::new()
        },
        sex,
    }
}

/// DICOM PN from components, empty trailing ones trimmed.
fn pn(parts: [String; 5]) -> String {
    let mut s = parts.join("^");
    while s.ends_with('^') {
        s.pop();
    }
    s
}

/// XPN family^given^middle^suffix^prefix → PN family^given^middle^prefix^suffix.
fn xpn_to_pn(msg: &Message) -> String {
    let c = |n| msg.component("PID", 5, 0, n);
    // The family name may carry subcomponents (surname&own surname…): the first is it.
    let family = msg.subcomponent("PID", 5, 1, 1);
    pn([family, c(2), c(3), c(5), c(4)])
}

/// XCN id^family^given^middle^suffix^prefix → PN, first repetition.
fn xcn_to_pn(msg: &Message, segment: &str, field: usize) -> Option<String> {
    let c = |n| msg.component(segment, field, 0, n);
    let name = pn([
        msg.subcomponent(segment, field, 2, 1),
        c(3),
        c(4),
        c(6),
        c(5),
    ]);
    Some(name).filter(|n| !n.is_empty())
}

/// CE/CWE code^text^system.
fn code(msg: &Message, segment: &str, field: usize) -> Option<Code> {
    let c = |n| msg.component(segment, field, 0, n).trim().to_string();
    let value = c(1);
    if value.is_empty() {
        return None;
    }
    Some(Code {
        value,
        scheme: c(3),
        meaning: c(2),
    })
}

/// The scheduled start: TQ1-7, ORC-7.4, OBR-27.4, OBR-36, OBR-7 (the first present).
fn start(msg: &Message, cancelling: bool) -> Result<(String, String), Refusal> {
    let candidates = [
        ("TQ1-7.1", "TQ1", 7),
        ("ORC-7.4", "ORC", 7),
        ("OBR-27.4", "OBR", 27),
        ("OBR-36.1", "OBR", 36),
        ("OBR-7.1", "OBR", 7),
    ];
    for (path, segment, field) in candidates {
        let v = msg.get(path);
        if v.trim().is_empty() {
            continue;
        }
        return dtm::start(&v).map_err(|e| {
            Refusal::new(AckCode::Error, ErrorCode::DataType, e.to_string()).at(segment, field)
        });
    }
    if cancelling {
        return Ok((String::new(), String::new()));
    }
    Err(Refusal::missing("OBR", 36, "the scheduled start"))
}
