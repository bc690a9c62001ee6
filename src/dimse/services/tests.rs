//! The identifier translation, the sub-operation counting and the data set sinks.

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use pacs_storage::query::{Level, MatchOptions, Matcher};

use super::identifier::{failed_list, parse_request, IdentifierError, MAX_IDENTIFIER};
use super::retrieve::{SubOperationError, Tally};
use super::{DataSink, MAX_ACTION_INFORMATION};
use crate::dimse::status::Status;

const TS: &str = uids::EXPLICIT_VR_LITTLE_ENDIAN;

fn encode(elements: Vec<DataElement<InMemDicomObject>>) -> Vec<u8> {
    let obj = InMemDicomObject::from_element_iter(elements);
    let mut bytes = Vec::new();
    let ts = TransferSyntaxRegistry.get(TS).expect("registered");
    obj.write_dataset_with_ts(&mut bytes, ts).expect("encode");
    bytes
}

fn level(value: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(
        tags::QUERY_RETRIEVE_LEVEL,
        VR::CS,
        PrimitiveValue::from(value),
    )
}

#[test]
fn an_identifier_becomes_a_query() {
    let bytes = encode(vec![
        level("STUDY"),
        DataElement::new(tags::PATIENT_NAME, VR::PN, PrimitiveValue::from("DOE*")),
        DataElement::new(tags::STUDY_DATE, VR::DA, PrimitiveValue::from("20240101-")),
        DataElement::new(tags::STUDY_INSTANCE_UID, VR::UI, PrimitiveValue::Empty),
    ]);
    let request = parse_request(&bytes, TS, MatchOptions::default()).expect("a query");
    assert_eq!(request.query.level, Level::Study);
    let key = |tag: &str| {
        request
            .query
            .keys
            .iter()
            .find(|k| k.tag == tag)
            .map(|k| k.matcher.clone())
    };
    assert_eq!(key("00100010"), Some(Matcher::Wildcard("DOE*".into())));
    assert_eq!(
        key("00080020"),
        Some(Matcher::Range {
            lower: Some("20240101".into()),
            upper: None
        })
    );
    assert_eq!(key("0020000D"), Some(Matcher::Universal));
    // The level is no key.
    assert_eq!(key("00080052"), None);
}

#[test]
fn identifier_errors_carry_their_statuses() {
    let no_level = encode(vec![DataElement::new(
        tags::PATIENT_ID,
        VR::LO,
        PrimitiveValue::from("1"),
    )]);
    let e = parse_request(&no_level, TS, MatchOptions::default()).err();
    assert!(matches!(e, Some(IdentifierError::Level(_))), "{e:?}");
    assert_eq!(
        e.map(|e| e.status()),
        Some(Status::IDENTIFIER_DOES_NOT_MATCH)
    );

    let wrong_vr = encode(vec![
        level("PATIENT"),
        DataElement::new(tags::PATIENT_ID, VR::US, PrimitiveValue::from(7u16)),
    ]);
    let e = parse_request(&wrong_vr, TS, MatchOptions::default()).err();
    assert_eq!(
        e.as_ref().map(ToString::to_string).as_deref(),
        Some("00100020 has VR US, the standard says LO")
    );

    // An element declaring more bytes than there are.
    let truncated = [0x10, 0x00, 0x20, 0x00, b'L', b'O', 0xFF, 0x00, b'1'];
    let e = parse_request(&truncated, TS, MatchOptions::default()).err();
    assert_eq!(e.map(|e| e.status()), Some(Status::CANNOT_UNDERSTAND));

    let e = parse_request(&[], "1.2.3.4", MatchOptions::default()).err();
    assert!(
        matches!(e, Some(IdentifierError::UnknownTransferSyntax(_))),
        "{e:?}"
    );
}

#[test]
fn sub_operations_are_counted() {
    let mut tally = Tally::new(4);
    tally.record("1.1", Ok(0x0000), "C-GET");
    tally.record("1.2", Ok(0xB007), "C-GET");
    tally.record("1.3", Ok(0xA700), "C-GET");
    assert_eq!(tally.counts.remaining, Some(1));
    tally.record("1.4", Err(SubOperationError::NoStatus), "C-GET");
    let c = tally.counts;
    assert_eq!((c.completed, c.warning, c.failed), (1, 1, 2));
    assert_eq!(tally.failed_uids, ["1.3", "1.4"]);
    // Remaining is left out of a final response unless it was cancelled.
    assert_eq!(tally.finish(false), Status::SUBOPERATIONS_WITH_FAILURES);
    assert_eq!(tally.counts.remaining, None);

    let mut tally = Tally::new(3);
    tally.record("2.1", Ok(0x0000), "C-MOVE");
    assert_eq!(tally.finish(true), Status::CANCEL);
    assert_eq!(tally.counts.remaining, Some(2));

    assert_eq!(Tally::new(0).finish(false), Status::SUCCESS);
}

#[test]
fn the_failed_list_is_an_identifier() {
    let bytes = failed_list(&["1.2.3".into(), "1.2.4".into()], TS).expect("encoded");
    let ts = TransferSyntaxRegistry.get(TS).expect("registered");
    let obj = InMemDicomObject::read_dataset_with_ts(&bytes[..], ts).expect("parsed");
    let list = obj
        .get(tags::FAILED_SOP_INSTANCE_UID_LIST)
        .and_then(|e| e.value().to_multi_str().ok())
        .map(|v| v.to_vec());
    assert_eq!(list, Some(vec!["1.2.3".to_string(), "1.2.4".to_string()]));
}

#[test]
fn identifiers_are_bounded() {
    let mut sink = DataSink::Identifier(Vec::new());
    assert!(sink.accept(&vec![0; MAX_IDENTIFIER]).is_ok());
    let e = sink.accept(&[0]).err().map(|e| e.to_string());
    assert_eq!(
        e.as_deref(),
        Some("request data set larger than its limit (1 MiB, 4 MiB for storage commitment)")
    );
    let mut action = DataSink::ActionInformation(Vec::new());
    assert!(action.accept(&vec![0; MAX_ACTION_INFORMATION]).is_ok());
    assert!(action.accept(&[0]).is_err());
    let mut discard = DataSink::Discard;
    assert!(discard.accept(&vec![0; 2 * MAX_IDENTIFIER]).is_ok());
}
