//! HL7 v2 intake over MLLP: the EHR's ORM^O01 / OMI^O23 messages become the archive's
//! [`pacs_storage::orders::Order`] records, ADT^A40 / A08 patient merges and updates become
//! corrections, and every message gets an ACK.
//!
//! - [`charset`]: MSH-18 → how to decode the bytes, and the DICOM Specific Character Set.
//! - [`message`]: the ER7 parser behind a small [`message::Message`] API.
//! - [`dtm`]: HL7 date/times to DICOM DA/TM.
//! - [`mapping`]: ORM/OMI → [`mapping::OrderMessage`] (intent + order), or a [`nak::Refusal`].
//! - [`adt`]: ADT^A40/A34 (merge) and A08/A31 (update) → [`adt::PatientMessage`].
//! - [`nak`]: why a message is refused (table 0357 codes, error locations).
//! - [`ack`]: the ACK message (MSA, ERR).
//! - [`mllp`]: bounded MLLP frame reader.
//! - [`server`]: the async listener loop with connection, size and time limits.

pub mod ack;
pub mod adt;
pub mod charset;
pub mod dtm;
pub mod mapping;
pub mod message;
pub mod mllp;
pub mod nak;
pub mod server;

/// A refused message: its header when one could be read, and why.
pub type Rejected = Box<(Option<message::Header>, nak::Refusal)>;

/// Most orders in one message: each ORC group repeats the patient segments for the mapping,
/// so this bounds the memory a message can cost to this many times its size.
pub const MAX_ORDERS_PER_MESSAGE: usize = 32;

/// Most PID/MRG pairs in one ADT^A40.
pub const MAX_MERGES_PER_MESSAGE: usize = 32;

/// One thing a message asks for.
#[derive(Debug, Clone)]
pub enum Inbound {
    Order(Box<mapping::OrderMessage>),
    Patient(Box<adt::PatientMessage>),
}

impl Inbound {
    pub fn header(&self) -> &message::Header {
        match self {
            Inbound::Order(m) => &m.header,
            Inbound::Patient(m) => &m.header,
        }
    }
}

/// Parse and map one message without I/O: what the server does for each frame (before the
/// handler), and what the fuzz target exercises. One order per ORC group (one merge per PID
/// group of an ADT), in message order; a group that does not map refuses the whole message,
/// before anything is applied.
pub fn process(bytes: &[u8]) -> Result<Vec<Inbound>, Rejected> {
    let msg = message::Message::parse_bytes(bytes)
        .map_err(|e| Box::new((message::Header::from_prefix(bytes), nak::Refusal::from(&e))))?;
    let header = msg.header();
    let adt = adt::handles(&header);
    let (start, limit, what) = if adt {
        ("PID", MAX_MERGES_PER_MESSAGE, "patient")
    } else {
        ("ORC", MAX_ORDERS_PER_MESSAGE, "order")
    };
    let Some(groups) = msg.groups(start, limit) else {
        let refusal = nak::Refusal::new(
            nak::AckCode::Reject,
            nak::ErrorCode::SegmentSequence,
            format!("more than {limit} {start} groups in one message"),
        )
        .at(if adt { "PID" } else { "ORC" }, 1);
        return Err(Box::new((Some(header), refusal)));
    };
    let count = groups.len();
    groups
        .iter()
        .enumerate()
        .map(|(n, group)| {
            let mapped = if adt {
                adt::map(group).map(|m| Inbound::Patient(Box::new(m)))
            } else {
                mapping::map(group).map(|m| Inbound::Order(Box::new(m)))
            };
            mapped.map_err(|mut r| {
                if count > 1 {
                    r.text = format!("{what} {} of {count}: {}", n + 1, r.text);
                }
                Box::new((Some(header.clone()), r))
            })
        })
        .collect()
}
