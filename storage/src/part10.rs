//! DICOM Part 10 file framing (PS3.10 7.1): preamble, "DICM", File Meta Information.

use std::io::Read;

use dicom_object::meta::FileMetaTableBuilder;

/// Implementation Class UID of this software (a UUID-derived UID under 2.25).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.152397361049273061512840537384512093517";
/// Implementation Version Name (at most 16 characters).
pub const IMPLEMENTATION_VERSION_NAME: &str = concat!("PACS_RS_", env!("CARGO_PKG_VERSION"));

/// What the File Meta Information of a received instance records.
#[derive(Debug, Clone)]
pub struct FileMetaFields<'a> {
    pub sop_class_uid: &'a str,
    pub sop_instance_uid: &'a str,
    pub transfer_syntax_uid: &'a str,
    pub source_ae_title: Option<&'a str>,
}

/// The File Meta Information could not be built or written (a UID or AE title it refuses).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the File Meta Information: {0}")]
pub struct FileMetaError(#[from] dicom_object::meta::Error);

/// The bytes that go in front of a received data set to make it a Part 10 file.
pub fn file_header(fields: &FileMetaFields<'_>) -> Result<Vec<u8>, FileMetaError> {
    let mut builder = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(fields.sop_class_uid)
        .media_storage_sop_instance_uid(fields.sop_instance_uid)
        .transfer_syntax(fields.transfer_syntax_uid)
        .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(IMPLEMENTATION_VERSION_NAME);
    if let Some(ae) = fields.source_ae_title.filter(|ae| !ae.is_empty()) {
        builder = builder.source_application_entity_title(ae);
    }
    let meta = builder.build()?;
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    meta.write(&mut out)?;
    Ok(out)
}

/// Offset of the data set in a Part 10 file: preamble, magic, then the group 2 elements whose
/// total length the first element (File Meta Information Group Length) states.
pub fn dataset_offset(mut file: impl Read) -> std::io::Result<Option<u64>> {
    let mut head = [0u8; 144];
    if file.read_exact(&mut head).is_err() {
        return Ok(None);
    }
    if &head[128..132] != b"DICM" || head[132..134] != [2, 0] || head[134..136] != [0, 0] {
        return Ok(None);
    }
    let group_len = u32::from_le_bytes([head[140], head[141], head[142], head[143]]);
    Ok(Some(144 + u64::from(group_len)))
}

/// Read a stored instance from the blob store: the whole object, or (`header_only`) everything
/// before Pixel Data, so metadata requests do not load pixels.
pub fn read_instance(
    blobs: &dyn crate::BlobStore,
    key: &crate::BlobKey,
    header_only: bool,
) -> Result<dicom_object::DefaultDicomObject, crate::StorageError> {
    read_instance_from(blobs.open(key)?, key, header_only)
}

/// Read a stored instance (as [`read_instance`]) from a reader of its blob.
pub fn read_instance_from(
    blob: impl Read,
    key: &crate::BlobKey,
    header_only: bool,
) -> Result<dicom_object::DefaultDicomObject, crate::StorageError> {
    let mut reader = std::io::BufReader::with_capacity(256 * 1024, blob);
    let mut preamble = [0u8; 128];
    reader
        .read_exact(&mut preamble)
        .map_err(|e| crate::StorageError::io("reading the preamble of", &key.0, e))?;
    let mut options = dicom_object::OpenFileOptions::new();
    if header_only {
        options = options.read_until(dicom_dictionary_std::tags::PIXEL_DATA);
    }
    let mut obj = options
        .from_reader(reader)
        .map_err(|e| crate::StorageError::CorruptBlob {
            what: format!("stored instance {key}"),
            detail: crate::error_chain(&e),
        })?;
    crate::un_vr::resolve_un(&mut obj);
    Ok(obj)
}

/// MediaStorageSOPClassUID and MediaStorageSOPInstanceUID as the File Meta Information holds
/// them, read without validating them (to name an invalid one in a refusal).
pub fn meta_uids(path: &std::path::Path) -> Option<Vec<(&'static str, String)>> {
    let mut head = vec![0u8; 4096];
    let n = std::fs::File::open(path).ok()?.read(&mut head).ok()?;
    let head = &head[..n];
    if !has_part10_magic(head) {
        return None;
    }
    let mut pos = 132;
    let mut out = Vec::new();
    // Explicit VR Little Endian elements of group 2 (UI and UL have 2-byte lengths).
    while pos + 8 <= head.len() && head[pos..pos + 2] == [2, 0] {
        let element = u16::from_le_bytes([head[pos + 2], head[pos + 3]]);
        let (len, value_at) = if matches!(&head[pos + 4..pos + 6], b"OB" | b"UN") {
            let l = head.get(pos + 8..pos + 12)?;
            (u32::from_le_bytes(l.try_into().ok()?) as usize, pos + 12)
        } else {
            (
                usize::from(u16::from_le_bytes([head[pos + 6], head[pos + 7]])),
                pos + 8,
            )
        };
        let value = head.get(value_at..value_at + len)?;
        let text = || {
            String::from_utf8_lossy(value)
                .trim_end_matches(['\0', ' '])
                .to_string()
        };
        match element {
            2 => out.push(("MediaStorageSOPClassUID (0002,0002)", text())),
            3 => out.push(("MediaStorageSOPInstanceUID (0002,0003)", text())),
            _ => {}
        }
        pos = value_at + len;
    }
    Some(out)
}

/// Whether the bytes start like a Part 10 file (preamble + "DICM").
pub fn has_part10_magic(head: &[u8]) -> bool {
    head.len() >= 132 && &head[128..132] == b"DICM"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_through_dataset_offset() {
        let fields = FileMetaFields {
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2",
            sop_instance_uid: "1.2.3.4.5",
            transfer_syntax_uid: "1.2.840.10008.1.2",
            source_ae_title: Some("MODALITY"),
        };
        let header = file_header(&fields).expect("header");
        assert!(has_part10_magic(&header));
        let off = dataset_offset(&header[..]).expect("io").expect("offset");
        assert_eq!(off as usize, header.len());
    }
}
