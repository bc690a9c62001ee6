//! Re-encoding a stored instance for retrieve destinations that do not accept its stored
//! transfer syntax: between the native (uncompressed) syntaxes, and from the compressed ones
//! to native by decoding the pixel data with dicom-pixeldata (pure-Rust JPEG, JPEG lossless,
//! RLE and JPEG 2000 decoders; JPEG-LS and HTJ2K have none here and fail clearly), or with
//! libjpeg-turbo-rs for the JPEG frames jpeg-decoder gets wrong (see [`crate::jpeg`]).

use std::path::Path;

use dicom_encoding::TransferSyntaxIndex;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::Transcode;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

/// Native transfer syntaxes: implicit/explicit little endian, explicit big endian, deflated.
pub const NATIVE: &[&str] = &[
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.1.99",
];

pub fn is_native(ts: &str) -> bool {
    NATIVE.contains(&ts)
}

#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    #[error("cannot transcode from {from} to {to}: the target must be a native transfer syntax")]
    NotNative { from: String, to: String },
    #[error("cannot decode {from}: {detail}")]
    Decode { from: String, detail: String },
    #[error("unknown transfer syntax {0}")]
    Unknown(String),
    #[error("cannot read the stored instance: {0}")]
    Read(String),
    #[error("cannot encode the instance: {0}")]
    Write(String),
}

/// The data set of the Part 10 file at `path`, encoded in the native syntax `target`
/// (read whole into memory; compressed pixel data is decoded).
pub fn dataset_for(path: &Path, stored: &str, target: &str) -> Result<Vec<u8>, TranscodeError> {
    let obj = OpenFileOptions::new()
        .open_file(path)
        .map_err(|e| TranscodeError::Read(crate::error_chain(&e)))?;
    encode_as(obj, stored, target)
}

/// Whether an instance stored in `stored` can be sent in `target`.
pub fn can_transcode(stored: &str, target: &str) -> bool {
    stored == target
        || (is_native(target)
            && (is_native(stored)
                || TransferSyntaxRegistry
                    .get(stored)
                    .is_some_and(|ts| ts.can_decode_all())))
}

/// The data set of a whole instance, encoded in the native syntax `target` (compressed pixel
/// data is decoded).
pub fn encode_as(
    mut obj: DefaultDicomObject,
    stored: &str,
    target: &str,
) -> Result<Vec<u8>, TranscodeError> {
    if !is_native(target) {
        return Err(TranscodeError::NotNative {
            from: stored.into(),
            to: target.into(),
        });
    }
    let ts = TransferSyntaxRegistry
        .get(target)
        .ok_or_else(|| TranscodeError::Unknown(target.into()))?;
    if !is_native(stored) {
        // A JPEG 2000 frame of another size than the data set says made the decoder panic.
        if let Some(reason) = crate::j2k::mismatch(&obj) {
            return Err(TranscodeError::Decode {
                from: stored.into(),
                detail: reason,
            });
        }
        if !decode_own_jpeg(&mut obj, stored)? {
            obj.transcode(ts).map_err(|e| TranscodeError::Decode {
                from: stored.into(),
                detail: crate::error_chain(&e),
            })?;
        }
    }
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, ts)
        .map_err(|e| TranscodeError::Write(crate::error_chain(&e)))?;
    Ok(out)
}

/// JPEG frames dicom-pixeldata cannot read or reads with the wrong colours (12-bit, Adobe
/// RGB; see [`crate::jpeg`]) decoded by libjpeg-turbo-rs into native Pixel Data, with the
/// attributes that describe it. False (nothing changed) for every other instance.
fn decode_own_jpeg(obj: &mut DefaultDicomObject, stored: &str) -> Result<bool, TranscodeError> {
    use dicom_core::value::Value;
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;

    let int = |tag| {
        obj.get(tag)
            .and_then(|e| e.value().to_int::<u16>().ok())
            .unwrap_or(0)
    };
    let (rows, cols) = (int(tags::ROWS), int(tags::COLUMNS));
    let count = obj
        .get(tags::NUMBER_OF_FRAMES)
        .and_then(|e| e.value().to_int::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let Some(Value::PixelSequence(seq)) = obj.get(tags::PIXEL_DATA).map(|e| e.value()) else {
        return Ok(false);
    };
    // One fragment per frame, or one frame in any number of fragments; other layouts keep
    // dicom-pixeldata, which reads the offset table.
    let frames: Vec<Vec<u8>> = if count == 1 {
        vec![seq.fragments().concat()]
    } else if seq.fragments().len() == count {
        seq.fragments().iter().map(|f| f.to_vec()).collect()
    } else {
        return Ok(false);
    };
    if !frames
        .first()
        .is_some_and(|f| crate::jpeg::needs_own_decoder(stored, f))
    {
        return Ok(false);
    }
    let mut samples = Vec::new();
    let mut layout = None;
    for frame in &frames {
        let d = crate::jpeg::decode(frame, rows, cols).map_err(|e| TranscodeError::Decode {
            from: stored.into(),
            detail: e.to_string(),
        })?;
        samples.extend_from_slice(&d.samples);
        layout = Some((d.samples_per_pixel, d.bits_allocated, d.photometric));
    }
    let Some((samples_per_pixel, bits_allocated, photometric)) = layout else {
        return Ok(false);
    };
    let us = |tag, v: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(v));
    obj.put(us(tags::SAMPLES_PER_PIXEL, samples_per_pixel));
    obj.put(us(tags::BITS_ALLOCATED, bits_allocated));
    if samples_per_pixel > 1 {
        obj.put(us(tags::PLANAR_CONFIGURATION, 0));
    }
    if let Some(p) = photometric {
        obj.put(DataElement::new(
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            PrimitiveValue::from(p),
        ));
    }
    if samples.len() % 2 == 1 {
        samples.push(0); // values are even in length (PS3.5 7.1.1)
    }
    let vr = if bits_allocated > 8 { VR::OW } else { VR::OB };
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        vr,
        PrimitiveValue::from(samples),
    ));
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_dictionary_std::tags;
    use dicom_object::InMemDicomObject;

    #[test]
    fn implicit_to_explicit_keeps_every_value() {
        let sample = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../sample-dicom/ct_16bit_signed_implicit.dcm");
        let bytes =
            dataset_for(&sample, "1.2.840.10008.1.2", "1.2.840.10008.1.2.1").expect("transcode");
        let ts = TransferSyntaxRegistry
            .get("1.2.840.10008.1.2.1")
            .expect("ts");
        let back = InMemDicomObject::read_dataset_with_ts(&bytes[..], ts).expect("read back");
        let original = OpenFileOptions::new().open_file(&sample).expect("open");
        for tag in [
            tags::SOP_INSTANCE_UID,
            tags::PATIENT_NAME,
            tags::ROWS,
            tags::PIXEL_DATA,
        ] {
            assert_eq!(
                back.get(tag)
                    .map(|e| e.value().to_bytes().map(|b| b.to_vec()).ok()),
                original
                    .get(tag)
                    .map(|e| e.value().to_bytes().map(|b| b.to_vec()).ok()),
                "{tag}"
            );
        }
        assert!(dataset_for(&sample, "1.2.840.10008.1.2", "1.2.840.10008.1.2.4.50").is_err());
    }

    #[test]
    fn compressed_pixel_data_is_decoded_to_native() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-dicom");
        let ts = TransferSyntaxRegistry
            .get("1.2.840.10008.1.2.1")
            .expect("ts");
        // RLE, JPEG lossless, JPEG-LS (CharLS) and JPEG 2000 lossless decode to full native
        // frames (the values are checked against independent decoders in the integration tests).
        for (file, stored) in [
            ("ct_jpegls_lossless.dcm", "1.2.840.10008.1.2.4.80"),
            ("mr_rle.dcm", "1.2.840.10008.1.2.5"),
            ("cr_jpeg_lossless_monochrome1.dcm", "1.2.840.10008.1.2.4.70"),
            ("ct_jpeg2000_lossless.dcm", "1.2.840.10008.1.2.4.90"),
        ] {
            let bytes = dataset_for(&dir.join(file), stored, "1.2.840.10008.1.2.1").expect(file);
            let back = InMemDicomObject::read_dataset_with_ts(&bytes[..], ts).expect("read back");
            let pixels = back
                .get(tags::PIXEL_DATA)
                .expect("pixel data")
                .value()
                .to_bytes()
                .expect("bytes");
            let rows = back
                .get(tags::ROWS)
                .and_then(|e| e.value().to_int::<usize>().ok())
                .expect("rows");
            let cols = back
                .get(tags::COLUMNS)
                .and_then(|e| e.value().to_int::<usize>().ok())
                .expect("cols");
            assert!(
                pixels.len() >= rows * cols * 2,
                "{file}: {} bytes",
                pixels.len()
            );
        }
    }
}
