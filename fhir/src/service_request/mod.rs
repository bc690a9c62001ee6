//! FHIR R4 ServiceRequest, the imaging order an EHR sends, as the archive's [`Order`] and
//! back. Parsing is hand-written over `serde_json::Value`: we read a dozen fields, and a
//! typed FHIR model would pull a large crate for that.
//!
//! Mapping choices worth knowing:
//! - The accession number is the identifier typed `ACSN` (v2-0203), else the first
//!   identifier with a value; `PLAC` and `FILL` identifiers are the placer and filler order
//!   numbers. The Study Instance UID goes back as an identifier `urn:dicom:uid`.
//! - `occurrenceDateTime` / `occurrencePeriod.start` keeps the wall-clock date and time as
//!   written and drops any zone: the worklist is in the modality's local time, which is what
//!   an EHR in the same site writes. A time is rendered back without a zone only as a date.
//! - The scheduled station AE title travels in the extension [`STATION_AE_EXTENSION`].
//! - The resource id is the accession number.

mod parse;
mod render;
#[cfg(test)]
mod tests;

pub use parse::{parse, parse_value, Incoming};
pub use render::{render, status};

/// Extension (valueString) naming the Scheduled Station AE Title of the order.
pub const STATION_AE_EXTENSION: &str =
    "http://pacs.example.org/fhir/StructureDefinition/scheduled-station-ae";
/// HL7 v2 table 0203 (identifier types: ACSN, PLAC, FILL).
pub const V2_0203: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";
/// Identifier system of DICOM UIDs (`urn:oid:` values).
pub const DICOM_UID_SYSTEM: &str = "urn:dicom:uid";
/// The longest string we accept anywhere in a resource (no order field is near this).
pub const MAX_STRING: usize = 4096;

/// Why a ServiceRequest cannot become an order. Each names the field, for OperationOutcome.
#[derive(Debug, thiserror::Error)]
pub enum ServiceRequestError {
    #[error("the body is not JSON")]
    Json(#[source] serde_json::Error),
    #[error("the body is not a JSON object")]
    NotAnObject,
    #[error("resourceType is {0:?}, expected \"ServiceRequest\"")]
    WrongType(String),
    #[error("{0} is required")]
    Missing(&'static str),
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("a string value is longer than {MAX_STRING} characters")]
    TooLong,
}
