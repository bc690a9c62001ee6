//! ORM^O01 / OMI^O23 messages (written from the standard and IHE RAD-2/RAD-4) mapped to
//! orders, and the refusals the ACK reports.

use pacs_hl7::mapping::OrderMessage;
use pacs_hl7::nak::{AckCode, ErrorCode, Location, Refusal};
use pacs_hl7::{process, Inbound, Rejected};
use pacs_storage::order_intake::Intent;
use pacs_storage::orders::{OrderSource, OrderStatus, Priority};

const ORM: &[u8] = include_bytes!("messages/orm_o01_v23.hl7");
const OMI: &[u8] = include_bytes!("messages/omi_o23_v251.hl7");

fn orders(bytes: &[u8]) -> Result<Vec<OrderMessage>, Rejected> {
    process(bytes).map(|all| {
        all.into_iter()
            .map(|m| match m {
                Inbound::Order(o) => *o,
                other => panic!("not an order: {other:?}"),
            })
            .collect()
    })
}

fn text(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

fn latin1(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect()
}

fn refused(bytes: &[u8]) -> Refusal {
    match orders(bytes) {
        Ok(m) => panic!("expected a refusal, got {:?}", m[0].order),
        Err(rejected) => rejected.1,
    }
}

#[test]
fn orm_o01_v23_with_latin1_escapes_and_repetitions() {
    let m = orders(ORM).expect("ORM maps").remove(0);
    assert_eq!(m.intent, Intent::Place);
    assert_eq!(m.header.control_id, "MSG00001");
    let o = &m.order;
    assert_eq!(o.accession_number, "ACC1001");
    assert_eq!(o.placer_order_number.as_deref(), Some("PLC1001"));
    assert_eq!(o.filler_order_number.as_deref(), Some("FIL2002"));
    assert_eq!(o.patient.id, "123456");
    assert_eq!(o.patient.issuer, "GENHOSP");
    assert_eq!(o.patient.name, "Müller^Jürgen^K^Dr^Jr");
    assert_eq!(o.patient.birth_date, "19700215");
    assert_eq!(o.patient.sex, "M");
    assert_eq!(o.charset, "ISO_IR 100");
    assert_eq!(o.admission_id, "V0042");
    assert_eq!(o.referring_physician, "Welby^Marcus^^Dr");
    assert_eq!(o.requesting_physician, "House^Gregory^^Dr");
    assert_eq!(o.requested_procedure_id, "RP1001");
    assert_eq!(o.step.id, "SPS1001");
    assert_eq!(o.step.modality, "CR");
    let code = o.procedure.as_ref().expect("procedure");
    assert_eq!((code.value.as_str(), code.scheme.as_str()), ("71020", "C4"));
    assert_eq!(o.procedure_description, "Chest X-ray 2 views&lateral");
    assert_eq!(o.step.description, o.procedure_description);
    assert_eq!(o.reason, "Cough");
    assert_eq!(
        (o.step.start_date.as_str(), o.step.start_time.as_str()),
        ("20261210", "093000")
    );
    assert_eq!(o.priority, Priority::Routine);
    assert_eq!(o.source, OrderSource::Hl7);
    assert!(o.study_instance_uid.is_empty());
    assert_eq!(o.validate(), Ok(()));
}

#[test]
fn omi_o23_v251_utf8_ipc_and_tq1() {
    let m = orders(OMI).expect("OMI maps").remove(0);
    let o = &m.order;
    assert_eq!(m.intent, Intent::Place);
    assert_eq!(o.accession_number, "ACC-OMI-1");
    assert_eq!(o.requested_procedure_id, "RP-OMI-1");
    assert_eq!(o.study_instance_uid, "1.2.840.99.1.2.3");
    assert_eq!(o.step.id, "SPS-OMI-1");
    assert_eq!(o.step.modality, "CT");
    assert_eq!(o.step.station_name, "CTSTATION1");
    assert_eq!(o.step.location, "ROOM3");
    assert_eq!(o.step.station_ae_title, "CT_AE_1");
    assert_eq!(o.patient.name, "Ødegård^Åse^^Ms");
    assert_eq!(o.patient.issuer, "HOSP");
    assert_eq!(o.charset, "ISO_IR 192");
    assert_eq!(
        (o.step.start_date.as_str(), o.step.start_time.as_str()),
        ("20261211", "143000")
    );
    assert_eq!(o.priority, Priority::Stat);
    // OBR-44 wins for the code; the description stays OBR-4's text.
    assert_eq!(
        o.procedure.as_ref().map(|c| c.value.as_str()),
        Some("RPID4")
    );
    assert_eq!(o.procedure_description, "CT Chest");
    assert_eq!(o.reason, "Dyspnea");
    assert_eq!(o.admission_id, "VN-555");
    assert_eq!(o.referring_physician, "Grey^Meredith");
    assert_eq!(o.requesting_physician, "Yang^Cristina");
}

fn with_control(orc1: &str, orc5: &str) -> Vec<u8> {
    let s = text(ORM).replace(
        "ORC|NW|PLC1001|FIL2002||SC|",
        &format!("ORC|{orc1}|PLC1001|FIL2002||{orc5}|"),
    );
    latin1(&s)
}

#[test]
fn every_order_control_code() {
    for (orc1, orc5, intent) in [
        ("NW", "SC", Intent::Place),
        ("XO", "SC", Intent::Change),
        ("XO", "CA", Intent::Cancel),
        ("SC", "IP", Intent::Change),
        ("SC", "CA", Intent::Cancel),
        ("CA", "", Intent::Cancel),
        ("OC", "", Intent::Cancel),
        ("DC", "", Intent::Cancel),
    ] {
        let m = orders(&with_control(orc1, orc5))
            .unwrap_or_else(|e| panic!("{orc1}: {e:?}"))
            .remove(0);
        assert_eq!(m.intent, intent, "{orc1}/{orc5}");
        assert_eq!(
            m.order.status == OrderStatus::Cancelled,
            intent == Intent::Cancel
        );
    }
    for unsupported in ["RP", "HD", "", "ZZ"] {
        let r = refused(&with_control(unsupported, ""));
        assert_eq!(
            (r.ack, r.code),
            (AckCode::Reject, ErrorCode::TableValueNotFound)
        );
        assert_eq!(
            r.location,
            Some(Location {
                segment: "ORC",
                field: 1
            })
        );
    }
}

#[test]
fn missing_msh_and_bad_separators_are_rejected() {
    let r = refused(b"PID|1||123\r");
    assert_eq!(
        (r.ack, r.code),
        (AckCode::Reject, ErrorCode::SegmentSequence)
    );
    assert!(orders(b"PID|1||123\r")
        .err()
        .and_then(|rejected| rejected.0)
        .is_none());
    let r = refused(b"MSHA^~\\&A\r");
    assert_eq!(r.ack, AckCode::Reject);
    assert!(refused(b"\x00\xff garbage").ack == AckCode::Reject);
    // MSH declares '#', the rest uses '|': the next segment is malformed, but the ACK can
    // still answer the MSH.
    let hash = text(ORM).replacen(
        "MSH|^~\\&|EPIC|GENHOSP|PACS|RAD|20261205083000||ORM^O01|MSG00001|P|2.3|||AL|NE||8859/1",
        "MSH#^~\\&#EPIC#GENHOSP#PACS#RAD#20261205083000##ORM^O01#MSG00001#P#2.3####8859/1",
        1,
    );
    let (header, r) = *orders(&latin1(&hash)).expect_err("refused");
    assert_eq!(header.map(|h| h.control_id), Some("MSG00001".to_string()));
    assert_eq!(
        (r.ack, r.code),
        (AckCode::Reject, ErrorCode::SegmentSequence)
    );
    let r = refused(b"MSH|^~\\&|A|B|C|D|2026||SIU^S12|1|P|2.5\rPID|1||X\r");
    assert_eq!(
        (r.ack, r.code),
        (AckCode::Reject, ErrorCode::UnsupportedMessageType)
    );
    // ADT is read for patient merges and updates; other triggers are refused by event.
    let r = refused(b"MSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P|2.5\rPID|1||X\r");
    assert_eq!(
        (r.ack, r.code),
        (AckCode::Reject, ErrorCode::UnsupportedEventCode)
    );
    let r = refused(b"MSH|^~\\&|A|B|C|D|2026||ORM^O02|1|P|2.5\r");
    assert_eq!(r.code, ErrorCode::UnsupportedEventCode);
    let r = refused(b"MSH|^~\\&|A|B|C|D|2026||ORM^O01|1|P|2.5||||||ISO IR87\r");
    assert_eq!(
        (r.code, r.location.map(|l| l.field)),
        (ErrorCode::TableValueNotFound, Some(18))
    );
}

#[test]
fn missing_fields_and_bad_dates_name_their_place() {
    let no_pid3 = latin1(&text(ORM).replace("123456^^^GENHOSP^MR~987654^^^STATE^SS", ""));
    let r = refused(&no_pid3);
    assert_eq!(
        (r.ack, r.code),
        (AckCode::Error, ErrorCode::RequiredFieldMissing)
    );
    assert_eq!(
        r.location,
        Some(Location {
            segment: "PID",
            field: 3
        })
    );
    let ack = String::from_utf8_lossy(&pacs_hl7::ack::build(&Default::default(), None, Some(&r)))
        .into_owned();
    assert!(
        ack.contains("ERR||PID^1^3|101^Required field missing^HL70357|E"),
        "{ack}"
    );

    let no_acc = text(ORM)
        .replace("ACC1001", "")
        .replace("FIL2002", "")
        .replace("PLC1001", "");
    let r = refused(&latin1(&no_acc));
    assert_eq!(
        r.location,
        Some(Location {
            segment: "OBR",
            field: 18
        })
    );
    // Without OBR-18 the filler order number is the accession number.
    let m = orders(&latin1(&text(ORM).replace("ACC1001", "")))
        .expect("fallback")
        .remove(0);
    assert_eq!(m.order.accession_number, "FIL2002");

    let no_modality = latin1(&text(ORM).replace("|CR|", "||"));
    let r = refused(&no_modality);
    assert_eq!(
        r.location,
        Some(Location {
            segment: "OBR",
            field: 24
        })
    );
    assert!(r.text.contains("no modality"));

    let bad_date = latin1(&text(ORM).replace("202612100930", "20261340"));
    let r = refused(&bad_date);
    assert_eq!((r.ack, r.code), (AckCode::Error, ErrorCode::DataType));
    assert_eq!(
        r.location,
        Some(Location {
            segment: "ORC",
            field: 7
        })
    );
}

#[test]
fn utf8_declared_but_latin1_sent_is_rejected() {
    let lie = text(ORM).replace("8859/1", "UNICODE UTF-8");
    let r = refused(&latin1(&lie));
    assert_eq!(
        (r.ack, r.code),
        (AckCode::Reject, ErrorCode::TableValueNotFound)
    );
}

#[test]
fn each_orc_group_is_an_order_with_the_message_patient() {
    let one = text(ORM);
    let orc = one.find("ORC|").expect("ORC");
    let group = &one[orc..];
    let second = group
        .replace("PLC1001", "PLC1002")
        .replace("FIL2002", "FIL2003")
        .replace("ACC1001", "ACC1002")
        .replace("71020^Chest X-ray", "71045^Chest X-ray 1 view");
    let two = format!("{}\r{second}", one.trim_end());
    let orders = orders(&latin1(&two)).expect("two orders");
    assert_eq!(orders.len(), 2);
    assert_eq!(orders[0].order.accession_number, "ACC1001");
    assert_eq!(orders[1].order.accession_number, "ACC1002");
    assert_eq!(
        orders[1].order.placer_order_number.as_deref(),
        Some("PLC1002")
    );
    assert_eq!(
        orders[1].order.procedure.as_ref().map(|c| c.value.as_str()),
        Some("71045")
    );
    for o in &orders {
        assert_eq!(o.order.patient.id, "123456");
        assert_eq!(o.order.patient.name, "Müller^Jürgen^K^Dr^Jr");
    }
    // A second group that does not map refuses the whole message, naming it.
    let broken = format!("{}\r{}", one.trim_end(), second.replace("|CR|", "||"));
    let r = refused(&latin1(&broken));
    assert!(r.text.starts_with("order 2 of 2: "), "{}", r.text);
    // Orders without end are refused before any is mapped.
    let many = format!("{}\r{}", one.trim_end(), "ORC|NW|X\r".repeat(40));
    let r = refused(&latin1(&many));
    assert_eq!(
        (r.ack, r.code),
        (AckCode::Reject, ErrorCode::SegmentSequence)
    );
    assert!(r.text.contains("more than 32 ORC groups"), "{}", r.text);
}
