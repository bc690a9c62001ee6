//! DIMSE over the DICOM upper layer: the listener, associations, command sets and services.

pub mod access;
pub mod admission;
pub mod association;
pub mod audit;
pub mod command;
pub mod find_scp;
pub mod listener;
pub mod local_blob;
pub mod negotiation;
pub mod pdu_io;
pub mod scu;
pub mod status;
pub mod store_scp;
