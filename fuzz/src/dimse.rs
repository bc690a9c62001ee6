//! src/dimse/ of the `pacs` crate: PDU framing, command sets, negotiation, C-FIND identifiers.

#[path = "../../src/dimse/access.rs"]
pub mod access;
#[path = "../../src/dimse/command.rs"]
pub mod command;
#[path = "../../src/dimse/services/identifier.rs"]
pub mod identifier;
#[path = "../../src/dimse/negotiation.rs"]
pub mod negotiation;
#[path = "../../src/dimse/pdu_io.rs"]
pub mod pdu_io;
#[path = "../../src/dimse/status.rs"]
pub mod status;
