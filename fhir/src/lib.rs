//! FHIR R4 views of the archive, shared by the read-only FHIR API (`pacs-viewer-api`) and the
//! workers that send resources to hospital systems (`pacs`): DICOM codes as Codings, DICOM
//! dates and times as FHIR dateTimes, and the one ImagingStudy builder.

pub mod coding;
pub mod datetime;
pub mod imaging_study;
pub mod service_request;

pub use imaging_study::imaging_study;
