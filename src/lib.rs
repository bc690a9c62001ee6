//! `pacs`: the archive's composition root and its DICOM and worker parts, as a library so
//! that the binary, the tests, the benches and the fuzz targets use the same code.
//!
//! Map of the parts:
//! - [`dimse`]: the DICOM upper-layer listener, associations and the DIMSE services
//!   (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET) over `pacs_storage`.
//! - [`workers`]: the outbox consumers that feed the EHR, pharmacy, billing, portal and AI
//!   systems, and the study stability task.
//! - [`server`]: `pacs serve`, which wires storage, DIMSE, HTTP (`pacs_viewer_api`), TLS
//!   ([`tls`]) and the workers together; [`http_listener`] and [`address_slots`] bound HTTP
//!   connections. Authentication comes from `pacs_auth`, FHIR resources from `pacs_fhir`.
//! - [`hl7_intake`]: HL7 v2 over MLLP (`pacs_hl7`): orders applied to the store's orders,
//!   patient merges and updates handed to [`hl7_patients`].
//! - [`hl7_patients`]: ADT A40/A08 applied as corrections.
//! - [`remote`]: query/retrieve against other archives (C-FIND, C-MOVE to us) for the API
//!   and the priors worker.
//! - [`config`]: the file, environment and flags, turned into each part's settings.
//! - The other commands: [`import`], [`verify`], [`users_cli`], [`audit_cli`].
//! - [`error`]: the commands' error type.
//!
//! Without the `embedded` feature (the fuzz build) the commands that open the RocksDB
//! store are left out; the protocol parts stay.

pub mod address_slots;
#[cfg(feature = "embedded")]
pub mod audit_cli;
pub mod config;
pub mod config_blobs;
pub mod config_index;
pub mod dimse;
pub mod error;
pub mod hl7_intake;
pub mod hl7_patients;
pub mod http_listener;
#[cfg(feature = "embedded")]
pub mod import;
pub mod orphans;
pub mod remote;
#[cfg(feature = "embedded")]
pub mod server;
pub mod tls;
pub mod users_cli;
#[cfg(feature = "embedded")]
pub mod verify;
pub mod workers;
