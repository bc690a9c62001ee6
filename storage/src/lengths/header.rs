//! Element headers and VRs exactly as dicom-encoding decodes them.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;

use super::input::{Input, Source};
use super::{LengthError, PIXEL_DATA};

/// An Explicit VR header as dicom-encoding decodes it: tag, VR, length, header size.
pub(super) fn explicit_header<R: Input + ?Sized>(
    src: &mut Source<'_, R>,
) -> Result<Option<(Tag, VR, u32, u32)>, LengthError> {
    let Some(t) = src.bytes::<4>()? else {
        return Ok(None);
    };
    let tag = src.tag(t);
    if tag.group() == 0xFFFE {
        let Some(l) = src.bytes::<4>()? else {
            return Ok(None);
        };
        return Ok(Some((tag, VR::UN, src.u32(l), 8)));
    }
    let Some(v) = src.bytes::<2>()? else {
        return Ok(None);
    };
    let vr = VR::from_binary(v).unwrap_or(VR::UN);
    if short_length(vr) {
        let Some(l) = src.bytes::<2>()? else {
            return Ok(None);
        };
        Ok(Some((tag, vr, u32::from(src.u16(l)), 8)))
    } else {
        let Some(l) = src.bytes::<6>()? else {
            return Ok(None);
        };
        Ok(Some((tag, vr, src.u32([l[2], l[3], l[4], l[5]]), 12)))
    }
}

/// The VR dicom-encoding's Implicit VR Little Endian decoder gives a tag.
pub(super) fn implicit_vr(tag: Tag) -> VR {
    if tag == PIXEL_DATA || (tag.group() >> 8 == 0x60 && tag.element() == 0x3000) {
        VR::OW
    } else {
        StandardDataDictionary
            .by_tag(tag)
            .map_or(VR::UN, |e| e.vr().relaxed())
    }
}

pub(super) fn is_xs(tag: Tag) -> bool {
    StandardDataDictionary
        .by_tag(tag)
        .is_some_and(|e| e.vr() == VirtualVr::Xs)
}

/// VRs whose explicit header has a 16-bit length (PS3.5 7.1.2), as dicom-encoding decodes.
fn short_length(vr: VR) -> bool {
    use VR::*;
    matches!(
        vr,
        AE | AS
            | AT
            | CS
            | DA
            | DS
            | DT
            | FL
            | FD
            | IS
            | LO
            | LT
            | PN
            | SH
            | SL
            | SS
            | ST
            | TM
            | UI
            | UL
            | US
    )
}

/// Size of one binary number of a VR that dicom-parser reads as numbers (1: read as bytes).
pub(super) fn number_size(vr: VR) -> u32 {
    use VR::*;
    match vr {
        US | SS | OW => 2,
        AT | UL | SL | FL | OF | OL => 4,
        FD | OD | SV | UV | OV => 8,
        _ => 1,
    }
}
