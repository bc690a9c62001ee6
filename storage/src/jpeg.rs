//! JPEG frames that dicom-pixeldata's codec (jpeg-decoder) cannot read or reads wrong, decoded
//! with libjpeg-turbo-rs, which follows libjpeg (the decoder behind pydicom, dcmtk and most
//! viewers):
//! - 12-bit extended process (1.2.840.10008.1.2.4.51, SamplePrecision 12): jpeg-decoder refuses
//!   it;
//! - three-component frames whose colour space libjpeg takes from an Adobe APP14 marker saying
//!   "no transform" (RGB as stored) while jpeg-decoder takes YCbCr from component identifiers
//!   1, 2, 3 and converts colours that were never YCbCr.
//!
//! Every other JPEG frame keeps the usual path.

/// Baseline and extended lossy JPEG (PS3.5 A.4.1).
const JPEG_LOSSY: [&str; 2] = ["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"];

/// What a frame's headers say, up to its first scan.
#[derive(Debug, Default, PartialEq, Eq)]
struct Header {
    precision: u8,
    /// Component identifiers (at most 4 kept).
    ids: Vec<u8>,
    jfif: bool,
    adobe_transform: Option<u8>,
}

/// Walk the marker segments from SOI to the first SOS. None for anything that is not a JPEG
/// stream we can read that far (then the usual decoder gives its own error).
fn header(data: &[u8]) -> Option<Header> {
    if data.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut h = Header::default();
    let mut pos = 2;
    loop {
        // Markers may be preceded by fill bytes 0xFF.
        while *data.get(pos)? == 0xFF && *data.get(pos + 1)? == 0xFF {
            pos += 1;
        }
        if *data.get(pos)? != 0xFF {
            return None;
        }
        let marker = *data.get(pos + 1)?;
        if matches!(marker, 0x01 | 0xD0..=0xD7) {
            pos += 2;
            continue;
        }
        let len = usize::from(u16::from_be_bytes([
            *data.get(pos + 2)?,
            *data.get(pos + 3)?,
        ]));
        let segment = data.get(pos + 4..pos + 2 + len.max(2))?;
        match marker {
            0xDA => return (h.precision != 0).then_some(h),
            0xE0 if segment.starts_with(b"JFIF\0") => h.jfif = true,
            0xEE if segment.starts_with(b"Adobe") && segment.len() >= 12 => {
                h.adobe_transform = Some(segment[11]);
            }
            // Start of frame, any process (not DHT C4, JPG C8, DAC CC).
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                h.precision = *segment.first()?;
                let n = usize::from(*segment.get(5)?);
                h.ids = (0..n.min(4))
                    .map(|k| segment.get(6 + 3 * k).copied())
                    .collect::<Option<_>>()?;
            }
            _ => {}
        }
        pos += 2 + len;
    }
}

/// Whether this frame must be decoded here rather than by dicom-pixeldata.
pub fn needs_own_decoder(transfer_syntax: &str, frame: &[u8]) -> bool {
    if !JPEG_LOSSY.contains(&transfer_syntax) {
        return false;
    }
    let Some(h) = header(frame) else {
        return false;
    };
    // libjpeg (jdapimin.c) reads JFIF first, then the Adobe transform, then the identifiers;
    // jpeg-decoder reads the identifiers first.
    let rgb_by_adobe =
        h.ids.len() == 3 && !h.jfif && h.adobe_transform == Some(0) && h.ids != [82, 71, 66];
    h.precision == 12 || rgb_by_adobe
}

/// A decoded frame as native little-endian samples.
#[derive(Debug)]
pub struct Decoded {
    pub samples: Vec<u8>,
    pub rows: u16,
    pub cols: u16,
    pub samples_per_pixel: u16,
    pub bits_allocated: u16,
    /// RGB for colour; None keeps the instance's (MONOCHROME1 or MONOCHROME2).
    pub photometric: Option<&'static str>,
}

/// Decode one JPEG frame (see [`needs_own_decoder`]) that the data set says is `rows` x
/// `cols`: a frame declaring more is refused before anything is sized from its header.
pub fn decode(frame: &[u8], rows: u16, cols: u16) -> Result<Decoded, libjpeg_turbo_rs::JpegError> {
    let limits = libjpeg_turbo_rs::DecodeLimits {
        max_width: usize::from(cols),
        max_height: usize::from(rows),
        max_pixels: u64::from(rows) * u64::from(cols),
        max_scans: 256,
        // Four samples of four bytes a pixel covers any component planes and upsampling.
        max_memory: Some(u64::from(rows) * u64::from(cols) * 16 + (1 << 20)),
    };
    if header(frame).is_some_and(|h| h.precision == 12) {
        let img = libjpeg_turbo_rs::decompress_12bit_with_limits(frame, &limits)?;
        return Ok(Decoded {
            samples: img
                .data
                .iter()
                .flat_map(|s| (*s as u16).to_le_bytes())
                .collect(),
            rows,
            cols,
            samples_per_pixel: img.num_components as u16,
            bits_allocated: 16,
            photometric: (img.num_components == 3).then_some("RGB"),
        });
    }
    let mut decoder = libjpeg_turbo_rs::Decoder::new_with_limits(frame, limits)?;
    let colour = header(frame).is_some_and(|h| h.ids.len() >= 3);
    if colour {
        decoder.set_output_format(libjpeg_turbo_rs::PixelFormat::Rgb);
    }
    let img = decoder.decode_image()?;
    Ok(Decoded {
        samples: img.data,
        rows,
        cols,
        samples_per_pixel: if colour { 3 } else { 1 },
        bits_allocated: 8,
        photometric: colour.then_some("RGB"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SOI, APP14 Adobe (transform `t`), SOF0 with the given ids, SOS.
    fn stream(ids: [u8; 3], adobe: Option<u8>, jfif: bool, precision: u8) -> Vec<u8> {
        let mut v = vec![0xFF, 0xD8];
        if jfif {
            v.extend_from_slice(&[0xFF, 0xE0, 0, 16]);
            v.extend_from_slice(b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
        }
        if let Some(t) = adobe {
            v.extend_from_slice(&[0xFF, 0xEE, 0, 14]);
            v.extend_from_slice(b"Adobe\0\x64\0\0\0\0");
            v.push(t);
        }
        v.extend_from_slice(&[0xFF, 0xC0, 0, 17, precision, 0, 8, 0, 8, 3]);
        for id in ids {
            v.extend_from_slice(&[id, 0x11, 0]);
        }
        v.extend_from_slice(&[0xFF, 0xDA, 0, 12, 3, 1, 0, 2, 0x11, 3, 0x11, 0, 63, 0]);
        v
    }

    #[test]
    fn only_the_frames_jpeg_decoder_gets_wrong_take_this_path() {
        let baseline = "1.2.840.10008.1.2.4.50";
        assert!(needs_own_decoder(
            baseline,
            &stream([1, 2, 3], Some(0), false, 8)
        ));
        assert!(!needs_own_decoder(
            baseline,
            &stream([1, 2, 3], Some(1), false, 8)
        ));
        assert!(!needs_own_decoder(
            baseline,
            &stream([1, 2, 3], Some(0), true, 8)
        ));
        assert!(!needs_own_decoder(
            baseline,
            &stream([82, 71, 66], Some(0), false, 8)
        ));
        assert!(!needs_own_decoder(
            baseline,
            &stream([1, 2, 3], None, false, 8)
        ));
        assert!(needs_own_decoder(
            "1.2.840.10008.1.2.4.51",
            &stream([1, 2, 3], None, false, 12)
        ));
        assert!(!needs_own_decoder(
            "1.2.840.10008.1.2.4.70",
            &stream([1, 2, 3], None, false, 12)
        ));
        // Truncated or foreign data: not ours to judge.
        let s = stream([1, 2, 3], Some(0), false, 8);
        for n in 0..s.len() - 1 {
            let _ = needs_own_decoder(baseline, &s[..n]);
        }
        assert!(!needs_own_decoder(baseline, b"\0\0\0\0"));
    }
}
