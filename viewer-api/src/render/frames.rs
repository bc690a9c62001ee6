//! Frames of a stored instance: native frames sliced from Pixel Data, compressed frames as
//! stored (one frame's fragments) or decoded to native with dicom-pixeldata.

use dicom_core::value::Value;
use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;
use dicom_pixeldata::PixelDecoder;

/// Why frames could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("the instance has no pixel data")]
    NoPixelData,
    #[error("frame {asked} is out of range: the instance has {count} frame(s)")]
    OutOfRange { asked: u32, count: u32 },
    #[error("pixel data is shorter than {count} frame(s) of {frame_len} bytes")]
    Truncated { count: u32, frame_len: usize },
    #[error("cannot tell where frame {0} starts in the encapsulated pixel data")]
    Unsplittable(u32),
    #[error("cannot decode {transfer_syntax}: {detail}")]
    Decode {
        transfer_syntax: String,
        detail: String,
    },
    #[error("{0} is missing or invalid")]
    Attribute(&'static str),
}

fn int_attr(
    obj: &DefaultDicomObject,
    tag: dicom_core::Tag,
    name: &'static str,
) -> Result<u32, FrameError> {
    obj.get(tag)
        .and_then(|e| e.value().to_int::<u32>().ok())
        .ok_or(FrameError::Attribute(name))
}

/// Number of frames (NumberOfFrames, 1 when absent).
pub fn frame_count(obj: &DefaultDicomObject) -> u32 {
    obj.get(tags::NUMBER_OF_FRAMES)
        .and_then(|e| e.value().to_int::<u32>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

/// Check 1-based frame numbers against the instance.
pub fn check_frames(obj: &DefaultDicomObject, frames: &[u32]) -> Result<(), FrameError> {
    let count = frame_count(obj);
    match frames.iter().find(|f| **f == 0 || **f > count) {
        Some(f) => Err(FrameError::OutOfRange { asked: *f, count }),
        None => Ok(()),
    }
}

/// Bytes of one native frame.
fn native_frame_len(obj: &DefaultDicomObject) -> Result<usize, FrameError> {
    let rows = int_attr(obj, tags::ROWS, "Rows")? as usize;
    let cols = int_attr(obj, tags::COLUMNS, "Columns")? as usize;
    let samples = int_attr(obj, tags::SAMPLES_PER_PIXEL, "SamplesPerPixel").unwrap_or(1) as usize;
    let bits = int_attr(obj, tags::BITS_ALLOCATED, "BitsAllocated")? as usize;
    if bits == 0 || bits % 8 != 0 {
        return Err(FrameError::Attribute("BitsAllocated"));
    }
    let packed_422 = obj
        .get(tags::PHOTOMETRIC_INTERPRETATION)
        .and_then(|e| e.value().to_str().ok())
        .is_some_and(|p| p.trim_end_matches([' ', '\0']) == "YBR_FULL_422");
    if packed_422 && samples == 3 {
        // Y1 Y2 Cb Cr per pair of pixels (PS3.3 C.7.6.3.1.2).
        return Ok(rows * cols * 2 * bits / 8);
    }
    Ok(rows * cols * samples * bits / 8)
}

/// The frame (1-based) as stored: native bytes (little endian), or the frame's compressed
/// bitstream for encapsulated pixel data.
pub fn stored_frame(obj: &DefaultDicomObject, frame: u32) -> Result<Vec<u8>, FrameError> {
    let count = frame_count(obj);
    let elem = obj.get(tags::PIXEL_DATA).ok_or(FrameError::NoPixelData)?;
    match elem.value() {
        Value::Primitive(p) if int_attr(obj, tags::BITS_ALLOCATED, "BitsAllocated")? == 1 => {
            // Bit-packed frames follow each other bit by bit; each is sent from bit 0.
            let rows = int_attr(obj, tags::ROWS, "Rows")? as usize;
            let cols = int_attr(obj, tags::COLUMNS, "Columns")? as usize;
            let pixels = rows * cols;
            let bits = crate::render::bits::unpack_frame(&p.to_bytes(), pixels, frame).ok_or(
                FrameError::Truncated {
                    count,
                    frame_len: pixels.div_ceil(8),
                },
            )?;
            Ok(crate::render::bits::pack(&bits))
        }
        Value::Primitive(p) => {
            let len = native_frame_len(obj)?;
            let bytes = p.to_bytes();
            let start = (frame as usize - 1) * len;
            bytes
                .get(start..start + len)
                .map(<[u8]>::to_vec)
                .ok_or(FrameError::Truncated {
                    count,
                    frame_len: len,
                })
        }
        Value::PixelSequence(seq) => {
            let fragments = seq.fragments();
            let index = frame as usize - 1;
            if count == 1 {
                return Ok(fragments.iter().flat_map(|f| f.iter().copied()).collect());
            }
            if fragments.len() == count as usize {
                return Ok(fragments[index].to_vec());
            }
            // Several fragments per frame: the Basic Offset Table says where each frame starts
            // (offsets count the 8-byte item header of every fragment). Without one, a frame
            // starts at each fragment that opens a bitstream (SOI, SOC or a JP2 signature), as
            // pydicom also splits them.
            let table = seq.offset_table();
            if table.len() != count as usize {
                let starts: Vec<usize> = fragments
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| opens_bitstream(f))
                    .map(|(i, _)| i)
                    .collect();
                if starts.len() != count as usize {
                    return Err(FrameError::Unsplittable(frame));
                }
                let end = starts.get(index + 1).copied().unwrap_or(fragments.len());
                return Ok(fragments[starts[index]..end].concat());
            }
            let start = u64::from(table[index]);
            let end = table.get(index + 1).map_or(u64::MAX, |e| u64::from(*e));
            let mut pos = 0u64;
            let mut out = Vec::new();
            for f in fragments {
                if pos >= start && pos < end {
                    out.extend_from_slice(f);
                }
                pos += 8 + f.len() as u64;
            }
            if out.is_empty() {
                return Err(FrameError::Unsplittable(frame));
            }
            Ok(out)
        }
        Value::Sequence(_) => Err(FrameError::NoPixelData),
    }
}

/// Whether a fragment starts a JPEG / JPEG-LS (SOI) or JPEG 2000 (SOC, JP2) bitstream.
fn opens_bitstream(fragment: &[u8]) -> bool {
    fragment.starts_with(&[0xFF, 0xD8])
        || fragment.starts_with(&[0xFF, 0x4F, 0xFF, 0x51])
        || fragment.starts_with(&[0, 0, 0, 12, b'j', b'P', b' ', b' '])
}

/// The frame (1-based) decoded to native little-endian samples.
pub fn decoded_frame(
    obj: &DefaultDicomObject,
    frame: u32,
    transfer_syntax: &str,
) -> Result<Vec<u8>, FrameError> {
    // JPEG frames dicom-pixeldata cannot read or reads wrong (12-bit, Adobe RGB).
    if let Ok(bitstream) = stored_frame(obj, frame) {
        if pacs_storage::jpeg::needs_own_decoder(transfer_syntax, &bitstream) {
            let rows = int_attr(obj, tags::ROWS, "Rows")?;
            let cols = int_attr(obj, tags::COLUMNS, "Columns")?;
            let size = |v: u32| u16::try_from(v).unwrap_or(0);
            return pacs_storage::jpeg::decode(&bitstream, size(rows), size(cols))
                .map(|d| d.samples)
                .map_err(|e| FrameError::Decode {
                    transfer_syntax: transfer_syntax.to_string(),
                    detail: e.to_string(),
                });
        }
    }
    if let Some(single) = crate::render::single_frame_object(obj, frame) {
        return decoded_frame(&single, 1, transfer_syntax);
    }
    crate::render::check_codestream_size(obj, frame, transfer_syntax).map_err(|e| {
        FrameError::Decode {
            transfer_syntax: transfer_syntax.to_string(),
            detail: e.to_string(),
        }
    })?;
    let decoded = obj
        .decode_pixel_data_frame(frame - 1)
        .map_err(|e| FrameError::Decode {
            transfer_syntax: transfer_syntax.to_string(),
            detail: pacs_storage::error_chain(&e),
        })?;
    Ok(decoded.data().to_vec())
}
