//! ADT^A40 / A08 messages (written from the v2.5.1 chapter 3 examples and IHE ITI-8) mapped
//! to patient changes, and the refusals the ACK reports.

use pacs_hl7::adt::{PatientChange, PatientRef};
use pacs_hl7::nak::{AckCode, ErrorCode};
use pacs_hl7::{process, Inbound};

const A40: &[u8] = include_bytes!("messages/adt_a40_v251.hl7");
const A08: &[u8] = include_bytes!("messages/adt_a08_v251.hl7");

fn changes(bytes: &[u8]) -> Vec<PatientChange> {
    process(bytes)
        .expect("maps")
        .into_iter()
        .map(|m| match m {
            Inbound::Patient(p) => p.change,
            other => panic!("not a patient change: {other:?}"),
        })
        .collect()
}

fn text(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

#[test]
fn a40_with_two_pid_mrg_pairs_maps_each() {
    let all = changes(A40);
    assert_eq!(all.len(), 2);
    match &all[0] {
        PatientChange::Merge { prior, surviving } => {
            assert_eq!(
                prior,
                &PatientRef {
                    id: "MRN-1001".into(),
                    issuer: "GENHOSP".into()
                }
            );
            assert_eq!(surviving.id, "MRN-2001");
            assert_eq!(surviving.issuer, "GENHOSP");
            assert_eq!(surviving.name, "Smith^John^Q");
            assert_eq!(surviving.birth_date, "19650304");
            assert_eq!(surviving.sex, "M");
        }
        other => panic!("{other:?}"),
    }
    match &all[1] {
        PatientChange::Merge { prior, surviving } => {
            assert_eq!(prior.id, "MRN-1002");
            assert_eq!(surviving.id, "MRN-2002");
            assert_eq!(surviving.name, "Doe^Jane");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a08_in_latin1_maps_to_an_update() {
    match changes(A08).as_slice() {
        [PatientChange::Update(p)] => {
            assert_eq!(p.id, "MRN-2001");
            assert_eq!(p.name, "Müller^Jürgen^^Dr");
            assert_eq!(p.sex, "M");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a34_and_mrg_4_of_v23_are_read() {
    let v23 = "MSH|^~\\&|ADT1|GH|PACS|RAD|20261206||ADT^A34|M1|P|2.3\rEVN|A34\r\
               PID|1||NEW-1^^^GH||Roe^Ann\rMRG|||| OLD-1^^^GH\r";
    match changes(v23.as_bytes()).as_slice() {
        [PatientChange::Merge { prior, surviving }] => {
            assert_eq!((prior.id.as_str(), prior.issuer.as_str()), ("OLD-1", "GH"));
            assert_eq!(surviving.id, "NEW-1");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn broken_merges_are_refused_with_the_field() {
    let refused = |m: String| process(m.as_bytes()).expect_err("refused").1;
    let a40 = text(A40);

    let no_mrg = a40.replace("MRG|MRN-1001^^^GENHOSP^MR\r", "");
    let r = refused(no_mrg);
    assert_eq!(r.code, ErrorCode::SegmentSequence);
    assert!(r.text.starts_with("patient 1 of 2: "), "{}", r.text);

    let r = refused(a40.replace("MRG|MRN-1001^^^GENHOSP^MR", "MRG|"));
    assert_eq!(r.code, ErrorCode::RequiredFieldMissing);
    assert_eq!(r.location.map(|l| (l.segment, l.field)), Some(("MRG", 1)));

    let r = refused(a40.replace("MRN-1001", "MRN-2001"));
    assert_eq!(r.ack, AckCode::Error);
    assert!(r.text.contains("is the surviving patient"), "{}", r.text);

    let r = refused(a40.replace("PID|1||MRN-2001^^^GENHOSP^MR", "PID|1||"));
    assert_eq!(r.code, ErrorCode::RequiredFieldMissing);
    assert_eq!(r.location.map(|l| (l.segment, l.field)), Some(("PID", 3)));

    let r = refused(a40.replace("ADT^A40^ADT_A39", "ADT^A01^ADT_A01"));
    assert_eq!(r.ack, AckCode::Reject);
    assert_eq!(r.code, ErrorCode::UnsupportedEventCode);

    let many: String = std::iter::once("MSH|^~\\&|A|B|C|D|2026||ADT^A40|1|P|2.5\r".to_string())
        .chain((0..40).map(|n| format!("PID|1||N{n}\rMRG|O{n}\r")))
        .collect();
    let r = refused(many);
    assert_eq!(r.code, ErrorCode::SegmentSequence);
    assert!(r.text.contains("more than 32"), "{}", r.text);
}
