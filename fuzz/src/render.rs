//! viewer-api/src/render/ of `pacs-viewer-api`: the JPEG path for frames jpeg-decoder cannot
//! read, and 1-bit frames.

#[path = "../../viewer-api/src/render/bits.rs"]
pub mod bits;
#[path = "../../viewer-api/src/render/jpeg.rs"]
pub mod jpeg;
