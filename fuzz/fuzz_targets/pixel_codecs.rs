//! Pixel data paths written for real-world files: the JPEG frames decoded with
//! libjpeg-turbo-rs (12-bit, Adobe RGB; its header walk decides which, and the decoder gets
//! the limits the data set's size gives), the JPEG 2000 size check (codestream or JP2 boxes),
//! 1-bit frame unpacking, and standard attributes sent as UN re-read with their VR.
//!
//! Input: byte 0 picks the path (and the size the data set claims); the rest is the frame,
//! codestream or UN value.
#![no_main]

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use libfuzzer_sys::fuzz_target;
use pacs_viewer_api::render::bits;
use pacs_storage::jpeg;

/// Standard attributes of several VRs (text, numbers, sequence) to send as UN.
const UN_TAGS: [Tag; 8] = [
    tags::STUDY_INSTANCE_UID,
    tags::PATIENT_NAME,
    tags::ROWS,
    tags::WINDOW_CENTER,
    tags::REFERENCED_STUDY_SEQUENCE,
    tags::PIXEL_SPACING,
    tags::FRAME_INCREMENT_POINTER,
    tags::REAL_WORLD_VALUE_MAPPING_SEQUENCE,
];

fuzz_target!(|data: &[u8]| {
    let [sel, rest @ ..] = data else {
        return;
    };
    match sel % 4 {
        0 | 1 => {
            let ts = if sel % 4 == 0 {
                "1.2.840.10008.1.2.4.50"
            } else {
                "1.2.840.10008.1.2.4.51"
            };
            if jpeg::needs_own_decoder(ts, rest) {
                let side = u16::from(sel >> 2) * 4 + 1;
                if let Ok(d) = jpeg::decode(rest, side, side) {
                    let max = usize::from(side) * usize::from(side) * 3 * 2;
                    assert!(d.samples.len() <= max, "{} samples for {side}x{side}", d.samples.len());
                }
            }
        }
        2 => {
            let _ = pacs_storage::j2k::size(rest);
            let _ = bits::unpack_frame(rest, usize::from(sel >> 2) + 1, 2);
        }
        _ => {
            let tag = UN_TAGS[usize::from(sel >> 2) % UN_TAGS.len()];
            let mut obj = InMemDicomObject::new_empty();
            obj.put(DataElement::new(tag, VR::UN, PrimitiveValue::from(rest.to_vec())));
            pacs_storage::un_vr::resolve_un(&mut obj);
        }
    }
});
