//! Re-encoding a stored instance between the native (uncompressed) transfer syntaxes, for
//! retrieve destinations that accept, say, only Implicit VR Little Endian. Compressed pixel
//! data is not decoded here.

use std::path::Path;

use dicom_encoding::TransferSyntaxIndex;
use dicom_object::OpenFileOptions;
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
    #[error("cannot transcode from {from} to {to}: only between native transfer syntaxes")]
    NotNative { from: String, to: String },
    #[error("unknown transfer syntax {0}")]
    Unknown(String),
    #[error("cannot read the stored instance: {0}")]
    Read(String),
    #[error("cannot encode the instance: {0}")]
    Write(String),
}

/// The data set of the Part 10 file at `path`, encoded in `target` (read whole into memory).
pub fn native_dataset(path: &Path, stored: &str, target: &str) -> Result<Vec<u8>, TranscodeError> {
    if !is_native(stored) || !is_native(target) {
        return Err(TranscodeError::NotNative {
            from: stored.into(),
            to: target.into(),
        });
    }
    let ts = TransferSyntaxRegistry
        .get(target)
        .ok_or_else(|| TranscodeError::Unknown(target.into()))?;
    let obj = OpenFileOptions::new()
        .open_file(path)
        .map_err(|e| TranscodeError::Read(crate::error_chain(&e)))?;
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, ts)
        .map_err(|e| TranscodeError::Write(crate::error_chain(&e)))?;
    Ok(out)
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
            native_dataset(&sample, "1.2.840.10008.1.2", "1.2.840.10008.1.2.1").expect("transcode");
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
        assert!(native_dataset(&sample, "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2").is_err());
    }
}
