//! DIMSE over the DICOM upper layer: the listener, associations, command sets and services.

pub mod access;
pub mod admission;
pub mod association;
pub mod audit;
pub mod command;
pub mod commitment_delivery;
pub mod identity;
pub mod listener;
pub mod local_blob;
pub mod negotiation;
pub mod pdu_io;
pub mod peer;
pub mod qr_scu;
pub mod scu;
pub mod services;
pub mod session;
pub mod status;
