//! Standard attributes that arrive with VR UN (some anonymizers and old gateways write them so)
//! read with their dictionary VR, as PS3.5 6.2.2 asks: a UN value is the attribute encoded in
//! Implicit VR Little Endian, so it is decoded as that element would be in an Implicit VR
//! data set. Private and unknown attributes stay UN. The stored file is not changed; this is
//! applied to the in-memory object wherever one is read (ingest, WADO-RS, rendering).

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::header::Header;
use dicom_core::value::Value;
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use dicom_object::mem::InMemElement;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;

/// Re-read every standard UN element of `obj` (and of the items of its sequences) with its
/// dictionary VR. A value that does not decode as that VR stays UN. Returns how many elements
/// were re-read.
pub fn resolve_un(obj: &mut InMemDicomObject) -> usize {
    let mut resolved = 0;
    let tags: Vec<Tag> = obj
        .iter()
        .filter(|e| e.vr() == VR::UN && dictionary_vr(e.tag()).is_some())
        .map(|e| e.tag())
        .collect();
    for tag in tags {
        if let Some(element) = reread(obj, tag) {
            obj.put(element);
            resolved += 1;
        }
    }
    // Sequences (now with their proper VR) may hold UN elements of their own.
    let sequences: Vec<Tag> = obj
        .iter()
        .filter(|e| matches!(e.value(), Value::Sequence(_)))
        .map(|e| e.tag())
        .collect();
    for tag in sequences {
        let Ok(mut element) = obj.take_element(tag) else {
            continue;
        };
        if let Some(items) = element.items_mut() {
            for item in items.iter_mut() {
                resolved += resolve_un(item);
            }
        }
        obj.put(element);
    }
    resolved
}

/// The VR the standard dictionary gives a tag, when it gives one other than UN.
fn dictionary_vr(tag: Tag) -> Option<VR> {
    if tag.group() % 2 == 1 || tag.element() == 0 {
        return None; // private, or a group length
    }
    let vr = StandardDataDictionary.by_tag(tag)?.vr().relaxed();
    (vr != VR::UN).then_some(vr)
}

/// One UN element decoded as its dictionary VR, or `None` when it does not decode.
fn reread(obj: &InMemDicomObject, tag: Tag) -> Option<InMemElement> {
    let element = obj.get(tag)?;
    match element.value() {
        // An undefined-length UN is read as a sequence already (PS3.5 6.2.2): only its VR.
        Value::Sequence(seq) if dictionary_vr(tag) == Some(VR::SQ) => {
            Some(InMemElement::new(tag, VR::SQ, Value::Sequence(seq.clone())))
        }
        Value::Primitive(p) => {
            let bytes = p.to_bytes();
            let len = u32::try_from(bytes.len()).ok()?;
            // The element as it would stand in an Implicit VR Little Endian data set.
            let mut encoded = Vec::with_capacity(bytes.len() + 8);
            encoded.extend_from_slice(&tag.group().to_le_bytes());
            encoded.extend_from_slice(&tag.element().to_le_bytes());
            encoded.extend_from_slice(&len.to_le_bytes());
            encoded.extend_from_slice(&bytes);
            // The same checks as any data set from outside (lengths, nesting) first.
            crate::lengths::check_bytes(&encoded, crate::lengths::Encoding::ImplicitVrLittleEndian)
                .ok()?;
            let parsed = InMemDicomObject::read_dataset_with_ts(
                &encoded[..],
                &IMPLICIT_VR_LITTLE_ENDIAN.erased(),
            )
            .ok()?;
            let decoded = parsed.get(tag)?.clone();
            (decoded.vr() != VR::UN).then_some(decoded)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, PrimitiveValue};
    use dicom_dictionary_std::tags;

    fn un(tag: Tag, bytes: &[u8]) -> InMemElement {
        DataElement::new(tag, VR::UN, PrimitiveValue::from(bytes.to_vec()))
    }

    #[test]
    fn standard_attributes_in_un_get_their_dictionary_vr() {
        let mut obj = InMemDicomObject::new_empty();
        obj.put(un(tags::STUDY_INSTANCE_UID, b"1.2.840.99.1\0"));
        obj.put(un(tags::PATIENT_NAME, b"DOE^JANE"));
        obj.put(un(tags::ROWS, &512u16.to_le_bytes()));
        obj.put(un(tags::WINDOW_CENTER, b"40\\-600 "));
        obj.put(un(Tag(0x0009, 0x1010), b"private"));
        // Referenced Study Sequence with one item, in Implicit VR LE.
        let mut item = Vec::new();
        item.extend_from_slice(&[0x08, 0x00, 0x50, 0x11, 4, 0, 0, 0]);
        item.extend_from_slice(b"1.2\0");
        let mut seq = vec![0xFE, 0xFF, 0x00, 0xE0];
        seq.extend_from_slice(&(item.len() as u32).to_le_bytes());
        seq.extend_from_slice(&item);
        obj.put(un(tags::REFERENCED_STUDY_SEQUENCE, &seq));
        assert_eq!(resolve_un(&mut obj), 5);
        let text = |t: Tag| {
            obj.get(t)
                .and_then(|e| e.to_str().ok())
                .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
        };
        assert_eq!(
            text(tags::STUDY_INSTANCE_UID).as_deref(),
            Some("1.2.840.99.1")
        );
        assert_eq!(
            obj.get(tags::STUDY_INSTANCE_UID).map(|e| e.vr()),
            Some(VR::UI)
        );
        assert_eq!(text(tags::PATIENT_NAME).as_deref(), Some("DOE^JANE"));
        assert_eq!(
            obj.get(tags::ROWS).and_then(|e| e.to_int::<u16>().ok()),
            Some(512)
        );
        assert_eq!(
            obj.get(tags::WINDOW_CENTER)
                .and_then(|e| e.to_multi_float64().ok()),
            Some(vec![40.0, -600.0])
        );
        assert_eq!(obj.get(Tag(0x0009, 0x1010)).map(|e| e.vr()), Some(VR::UN));
        let items = obj
            .get(tags::REFERENCED_STUDY_SEQUENCE)
            .and_then(|e| e.items())
            .expect("a sequence now");
        assert_eq!(
            items[0]
                .get(tags::REFERENCED_SOP_CLASS_UID)
                .and_then(|e| e.to_str().ok())
                .as_deref(),
            Some("1.2")
        );
    }

    #[test]
    fn a_value_that_does_not_decode_stays_un() {
        let mut obj = InMemDicomObject::new_empty();
        // Rows is US: three bytes cannot be one.
        obj.put(un(tags::ROWS, &[1, 2, 3]));
        assert_eq!(resolve_un(&mut obj), 0);
        assert_eq!(obj.get(tags::ROWS).map(|e| e.vr()), Some(VR::UN));
    }
}
