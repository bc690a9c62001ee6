//! A JPEG 2000 frame's own size (its SIZ marker segment, ISO/IEC 15444-1 A.5.1), checked
//! against the data set before any decoder sees the frame: dicom-pixeldata's JPEG 2000 adapter
//! sizes its output from Rows and Columns and writes the decoder's samples into it, so a
//! codestream of another size (an image offset, a mislabelled frame) made it index out of
//! bounds and panic. Used by rendering, WADO-RS frames and transcoding.

/// Width, height and component count of a codestream (or a JP2 file's codestream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub width: u32,
    pub height: u32,
    pub components: u16,
}

/// The size the codestream declares; None when there is no readable SIZ at its start.
pub fn size(frame: &[u8]) -> Option<Size> {
    let cs = codestream(frame)?;
    // SOC, then SIZ: marker, Lsiz, Rsiz, Xsiz, Ysiz, XOsiz, YOsiz, XTsiz, YTsiz, XTOsiz,
    // YTOsiz, Csiz.
    if cs.get(..4)? != [0xFF, 0x4F, 0xFF, 0x51] {
        return None;
    }
    let u32_at =
        |i: usize| -> Option<u32> { Some(u32::from_be_bytes(cs.get(i..i + 4)?.try_into().ok()?)) };
    let (x, y, x0, y0) = (u32_at(8)?, u32_at(12)?, u32_at(16)?, u32_at(20)?);
    let components = u16::from_be_bytes(cs.get(40..42)?.try_into().ok()?);
    Some(Size {
        width: x.checked_sub(x0)?,
        height: y.checked_sub(y0)?,
        components,
    })
}

/// The codestream: the frame itself, or the contents of a JP2 file's `jp2c` box.
fn codestream(frame: &[u8]) -> Option<&[u8]> {
    if frame.starts_with(&[0xFF, 0x4F]) {
        return Some(frame);
    }
    // JP2 boxes: length (4, big endian; 1 = 8-byte length follows; 0 = to the end), type (4).
    let mut pos = 0usize;
    while frame.len().saturating_sub(pos) >= 8 {
        let len = u32::from_be_bytes(frame.get(pos..pos + 4)?.try_into().ok()?) as usize;
        let kind = frame.get(pos + 4..pos + 8)?;
        let (header, len) = match len {
            0 => (8, frame.len() - pos),
            1 => {
                let l = u64::from_be_bytes(frame.get(pos + 8..pos + 16)?.try_into().ok()?);
                (16, usize::try_from(l).ok()?)
            }
            l => (8, l),
        };
        if len < header {
            return None;
        }
        if kind == b"jp2c" {
            // A box length may claim more than there is (found by fuzzing: it overflowed).
            return frame.get(pos + header..pos.saturating_add(len).min(frame.len()));
        }
        pos = pos.checked_add(len)?;
    }
    None
}

/// Whether any JPEG 2000 codestream among an encapsulated object's fragments (those that
/// start one: SOC, or a JP2 signature box) has another size than the data set says.
pub fn mismatch(obj: &dicom_object::DefaultDicomObject) -> Option<String> {
    use dicom_core::value::Value;
    use dicom_dictionary_std::tags;
    let int = |tag| {
        obj.get(tag)
            .and_then(|e| e.value().to_int::<u32>().ok())
            .unwrap_or(0)
    };
    let Value::PixelSequence(seq) = obj.get(tags::PIXEL_DATA)?.value() else {
        return None;
    };
    let expected = (
        int(tags::COLUMNS),
        int(tags::ROWS),
        int(tags::SAMPLES_PER_PIXEL).max(1),
    );
    seq.fragments().iter().find_map(|f| {
        let s = size(f)?;
        let found = (s.width, s.height, u32::from(s.components));
        (found != expected).then(|| {
            format!(
                "a JPEG 2000 codestream is {}x{} with {} component(s), but the data set says {}x{} with {} sample(s) per pixel",
                found.0, found.1, found.2, expected.0, expected.1, expected.2
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn siz(x: u32, y: u32, x0: u32, y0: u32, c: u16) -> Vec<u8> {
        let mut v = vec![0xFF, 0x4F, 0xFF, 0x51, 0, 41, 0, 0];
        for n in [x, y, x0, y0, x, y, 0, 0] {
            v.extend_from_slice(&n.to_be_bytes());
        }
        v.extend_from_slice(&c.to_be_bytes());
        v
    }

    #[test]
    fn the_size_is_read_from_a_codestream_or_a_jp2_file() {
        let cs = siz(266, 276, 10, 20, 1);
        assert_eq!(
            size(&cs),
            Some(Size {
                width: 256,
                height: 256,
                components: 1
            })
        );
        let mut jp2 = vec![0, 0, 0, 12, b'j', b'P', b' ', b' ', 0x0D, 0x0A, 0x87, 0x0A];
        jp2.extend_from_slice(&(8 + cs.len() as u32).to_be_bytes());
        jp2.extend_from_slice(b"jp2c");
        jp2.extend_from_slice(&cs);
        assert_eq!(size(&jp2).map(|s| s.width), Some(256));
        assert_eq!(size(&cs[..20]), None);
        assert_eq!(size(b"garbage"), None);
        assert_eq!(size(&siz(5, 5, 10, 0, 1)), None, "offset past the image");
        // An 8-byte box length near u64::MAX (found by fuzzing).
        let mut huge = vec![0, 0, 0, 1, b'j', b'p', b'2', b'c'];
        huge.extend_from_slice(&[0xFF; 8]);
        huge.extend_from_slice(&cs);
        assert_eq!(size(&huge).map(|s| s.width), Some(256));
    }
}
