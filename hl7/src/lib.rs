//! HL7 v2 order intake over MLLP: the EHR's ORM^O01 / OMI^O23 messages become the archive's
//! [`pacs_storage::orders::Order`] records, and every message gets an ACK.
//!
//! - [`charset`]: MSH-18 → how to decode the bytes, and the DICOM Specific Character Set.
//! - [`message`]: the ER7 parser behind a small [`message::Message`] API.
//! - [`dtm`]: HL7 date/times to DICOM DA/TM.
//! - [`mapping`]: ORM/OMI → [`mapping::OrderMessage`] (intent + order), or a [`nak::Refusal`].
//! - [`nak`]: why a message is refused (table 0357 codes, error locations).
//! - [`ack`]: the ACK message (MSA, ERR).
//! - [`mllp`]: bounded MLLP frame reader.
//! - [`server`]: the async listener loop with connection, size and time limits.

pub mod ack;
pub mod charset;
pub mod dtm;
pub mod mapping;
pub mod message;
pub mod mllp;
pub mod nak;
pub mod server;

/// A refused message: its header when one could be read, and why.
pub type Rejected = Box<(Option<message::Header>, nak::Refusal)>;

/// Parse, map and answer one message without I/O: what the server does for each frame
/// (before the handler), and what the fuzz target exercises.
pub fn process(bytes: &[u8]) -> Result<mapping::OrderMessage, Rejected> {
    let msg = message::Message::parse_bytes(bytes)
        .map_err(|e| Box::new((message::Header::from_prefix(bytes), nak::Refusal::from(&e))))?;
    let header = msg.header();
    mapping::map(&msg).map_err(|r| Box::new((Some(header), r)))
}
