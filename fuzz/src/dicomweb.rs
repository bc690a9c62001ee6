//! viewer-api/src/dicomweb/ of `pacs-viewer-api`: media types, QIDO-RS query parsing.
//! (STOW-RS's `boundary_of` lives in the stow.rs handler with the storage calls; the
//! stow_multipart target restates its few lines.)

#[path = "../../viewer-api/src/dicomweb/json.rs"]
pub mod json;
#[path = "../../viewer-api/src/dicomweb/media.rs"]
pub mod media;
#[path = "../../viewer-api/src/dicomweb/qido.rs"]
pub mod qido;
