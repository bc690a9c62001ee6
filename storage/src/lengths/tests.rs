//! The walk against dicom-parser's own reading of the same bytes.

use std::path::Path;

use super::*;
use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::{
    EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
};

fn identifier() -> InMemDicomObject {
    let mut item = InMemDicomObject::new_empty();
    item.put(DataElement::new(
        tags::REFERENCED_SOP_CLASS_UID,
        VR::UI,
        PrimitiveValue::from("1.2.840.10008.5.1.4.1.1.2"),
    ));
    let mut obj = InMemDicomObject::new_empty();
    obj.put(DataElement::new(
        tags::QUERY_RETRIEVE_LEVEL,
        VR::CS,
        PrimitiveValue::from("SERIES"),
    ));
    obj.put(DataElement::new(
        tags::PATIENT_NAME,
        VR::PN,
        PrimitiveValue::from("DOE*"),
    ));
    obj.put(DataElement::new(
        tags::REFERENCED_IMAGE_SEQUENCE,
        VR::SQ,
        DataSetSequence::from(vec![item]),
    ));
    obj.put(DataElement::new(
        tags::ROWS,
        VR::US,
        PrimitiveValue::from(512_u16),
    ));
    obj
}

#[test]
fn well_formed_data_sets_pass_in_every_encoding() {
    for (ts, encoding) in [
        (
            IMPLICIT_VR_LITTLE_ENDIAN.erased(),
            Encoding::ImplicitVrLittleEndian,
        ),
        (
            EXPLICIT_VR_LITTLE_ENDIAN.erased(),
            Encoding::ExplicitVrLittleEndian,
        ),
        (
            EXPLICIT_VR_BIG_ENDIAN.erased(),
            Encoding::ExplicitVrBigEndian,
        ),
    ] {
        assert_eq!(Encoding::of(&ts), Some(encoding));
        let mut bytes = Vec::new();
        identifier()
            .write_dataset_with_ts(&mut bytes, &ts)
            .expect("encode");
        check_bytes(&bytes, encoding).unwrap_or_else(|e| panic!("{}: {e}", ts.uid()));
    }
}

#[test]
fn a_value_past_the_end_is_refused() {
    // (0010,0020) UT declaring 3.5 GiB, then one byte.
    let bytes = [
        0x10, 0x00, 0x20, 0x00, b'U', b'T', 0, 0, 0, 0, 0, 0xE0, b'1',
    ];
    assert!(matches!(
        check_bytes(&bytes, Encoding::ExplicitVrLittleEndian),
        Err(LengthError::PastEnd {
            len: 0xE000_0000,
            remaining: 1,
            ..
        })
    ));
}

#[test]
fn a_value_past_the_end_inside_a_sequence_item_is_refused() {
    // (0008,1140) SQ undefined, item undefined, (0008,1150) UI declaring 64 KiB.
    let mut bytes = vec![
        0x08, 0x00, 0x40, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
    ];
    bytes.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
    bytes.extend_from_slice(&[0x08, 0x00, 0x50, 0x11, b'U', b'N', 0, 0, 0, 0, 1, 0, b'1']);
    assert!(matches!(
        check_bytes(&bytes, Encoding::ExplicitVrLittleEndian),
        Err(LengthError::PastEnd { len: 0x1_0000, .. })
    ));
}

#[test]
fn a_partial_binary_number_is_refused() {
    // (0028,0010) Rows, US of 3 bytes.
    let bytes = [0x28, 0x00, 0x10, 0x00, 3, 0, 0, 0, 1, 2, 3];
    assert!(matches!(
        check_bytes(&bytes, Encoding::ImplicitVrLittleEndian),
        Err(LengthError::PartialNumber { unit: 2, .. })
    ));
}

#[test]
fn pixel_data_and_what_follows_it_are_checked() {
    // (0010,0010) PN "A", Pixel Data OW of 2 bytes, then (FFFC,FFFC) OB declaring 4 GiB.
    let mut bytes = vec![0x10, 0x00, 0x10, 0x00, b'P', b'N', 2, 0, b'A', b' '];
    bytes.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0, 2, 0, 0, 0, 0, 0]);
    let encoding = Encoding::ExplicitVrLittleEndian;
    assert!(check_bytes(&bytes, encoding).is_ok());
    bytes.extend_from_slice(&[0xFC, 0xFF, 0xFC, 0xFF, b'O', b'B', 0, 0, 0, 0, 0, 0xF0]);
    assert!(matches!(
        check_bytes(&bytes, encoding),
        Err(LengthError::PastEnd {
            tag: Tag(0xFFFC, 0xFFFC),
            ..
        })
    ));
    // Pixel Data itself declaring more than there is.
    bytes.truncate(10);
    bytes.extend_from_slice(&[
        0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0, 0, 0, 0, 0xF0, 0, 0,
    ]);
    assert!(matches!(
        check_bytes(&bytes, encoding),
        Err(LengthError::PastEnd {
            tag: PIXEL_DATA,
            ..
        })
    ));
}

/// `depth` sequences of undefined length, each in the one item of the one above.
fn nested(depth: usize, encoding: Encoding) -> Vec<u8> {
    let mut bytes = Vec::new();
    for _ in 0..depth {
        // (0040,A730) Content Sequence, undefined length; an item of undefined length.
        match encoding {
            Encoding::ImplicitVrLittleEndian => {
                bytes.extend_from_slice(&[0x40, 0x00, 0x30, 0xA7, 0xFF, 0xFF, 0xFF, 0xFF])
            }
            _ => bytes.extend_from_slice(&[
                0x40, 0x00, 0x30, 0xA7, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
            ]),
        }
        bytes.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
    }
    for _ in 0..depth {
        bytes.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        bytes.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
    }
    bytes
}

#[test]
fn nesting_is_refused_beyond_the_limit_before_any_parser_sees_it() {
    for encoding in [
        Encoding::ImplicitVrLittleEndian,
        Encoding::ExplicitVrLittleEndian,
    ] {
        check_bytes(&nested(MAX_SEQUENCE_DEPTH, encoding), encoding)
            .unwrap_or_else(|e| panic!("{encoding:?} at the limit: {e}"));
        for depth in [MAX_SEQUENCE_DEPTH + 1, 30_000] {
            assert!(
                matches!(
                    check_bytes(&nested(depth, encoding), encoding),
                    Err(LengthError::TooDeep { .. })
                ),
                "{encoding:?} {depth} deep"
            );
        }
    }
    // Elements of undefined length that are not SQ are read as sequences too (UN).
    let mut un = Vec::new();
    for _ in 0..=MAX_SEQUENCE_DEPTH {
        un.extend_from_slice(&[
            0x09, 0x00, 0x10, 0x10, b'U', b'N', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ]);
        un.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
    }
    assert!(matches!(
        check_bytes(&un, Encoding::ExplicitVrLittleEndian),
        Err(LengthError::TooDeep { .. })
    ));
}

/// The repository's sample-dicom/ (found upward, as this file is also built in fuzz/).
fn samples() -> Vec<std::path::PathBuf> {
    let mut dir = Some(Path::new(env!("CARGO_MANIFEST_DIR")));
    while let Some(d) = dir {
        let samples = d.join("sample-dicom");
        if let Ok(entries) = std::fs::read_dir(&samples) {
            return entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "dcm"))
                .collect();
        }
        dir = d.parent();
    }
    Vec::new()
}

#[test]
fn sample_files_pass_whole_and_up_to_pixel_data() {
    let files = samples();
    assert!(files.len() >= 5, "sample-dicom not found");
    for path in files {
        check_part10_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let bytes = std::fs::read(&path).expect("read sample");
        check_part10(&mut &bytes[..]).unwrap_or_else(|e| panic!("{} whole: {e}", path.display()));
    }
}

#[test]
fn a_part10_file_declaring_a_huge_value_is_refused() {
    let meta = dicom_object::meta::FileMetaTableBuilder::new()
        .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.2")
        .media_storage_sop_instance_uid("1.2.3")
        .transfer_syntax("1.2.840.10008.1.2.1")
        .build()
        .expect("meta");
    let mut file = vec![0u8; 128];
    file.extend_from_slice(b"DICM");
    meta.write(&mut file).expect("write meta");
    // (0010,1010) UN declaring 4 GiB - 16, then one byte.
    file.extend_from_slice(&[
        0x10, 0x00, 0x10, 0x10, b'U', b'N', 0, 0, 0xF0, 0xFF, 0xFF, 0xFF,
    ]);
    file.push(b'1');
    assert!(matches!(
        check_part10(&mut &file[..]),
        Err(LengthError::PastEnd { remaining: 1, .. })
    ));
    // The same in the File Meta Information: Media Storage SOP Class UID as UN.
    let mut file = vec![0u8; 128];
    file.extend_from_slice(b"DICM");
    file.extend_from_slice(&[2, 0, 0, 0, b'U', b'L', 4, 0, 24, 0, 0, 0]);
    file.extend_from_slice(&[2, 0, 2, 0, b'U', b'N', 0, 0, 0xF0, 0xFF, 0xFF, 0xFF, b'1']);
    assert!(matches!(
        check_part10(&mut &file[..]),
        Err(LengthError::PastEnd { remaining: 1, .. })
    ));
}
