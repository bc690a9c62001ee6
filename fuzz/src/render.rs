//! viewer-api/src/render/ of `pacs-viewer-api`: 1-bit frames.

#[path = "../../viewer-api/src/render/bits.rs"]
pub mod bits;

