use pacs_storage::orders::{OrderStatus, Priority};
use serde_json::{json, Value};

use super::{parse, parse_value, render, ServiceRequestError as E};

/// A ServiceRequest as an EHR sends one for a CT (after the FHIR R4 examples).
fn ct_order() -> Value {
    json!({
        "resourceType": "ServiceRequest",
        "contained": [{
            "resourceType": "Patient",
            "id": "p1",
            "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "MRN-12345"}],
            "name": [{"family": "Chalmers", "given": ["Peter", "James"], "prefix": ["Mr"]}],
            "birthDate": "1974-12-25",
            "gender": "male"
        }, {
            "resourceType": "Practitioner",
            "id": "dr",
            "name": [{"family": "Careful", "given": ["Adam"], "prefix": ["Dr"]}]
        }],
        "extension": [{
            "url": super::STATION_AE_EXTENSION,
            "valueString": "CT_ROOM1"
        }],
        "identifier": [
            {"type": {"coding": [{"system": super::V2_0203, "code": "PLAC"}]}, "value": "ORD-778"},
            {"type": {"coding": [{"system": super::V2_0203, "code": "ACSN"}]},
             "system": "http://hospital.example.org/accession", "value": "A20261205"}
        ],
        "status": "active",
        "intent": "original-order",
        "priority": "urgent",
        "code": {
            "coding": [{"system": "http://loinc.org", "code": "24627-2", "display": "CT Chest"}],
            "text": "CT chest without contrast"
        },
        "subject": {"reference": "#p1"},
        "occurrenceDateTime": "2026-12-05T09:30:00+01:00",
        "requester": {"reference": "#dr"},
        "performerType": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}]},
        "reasonCode": [{"coding": [{"system": "http://snomed.info/sct", "code": "49727002", "display": "Cough"}]}]
    })
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("json")
}

#[test]
fn a_ct_order_becomes_an_order() {
    let inc = parse(&bytes(&ct_order())).expect("parses");
    let o = inc.order;
    assert!(!inc.cancel);
    assert_eq!(o.accession_number, "A20261205");
    assert_eq!(o.placer_order_number.as_deref(), Some("ORD-778"));
    assert_eq!(o.patient.id, "MRN-12345");
    assert_eq!(o.patient.issuer, "urn:oid:1.2.36.146.595.217.0.1");
    assert_eq!(o.patient.name, "Chalmers^Peter^James^Mr");
    assert_eq!(o.patient.birth_date, "19741225");
    assert_eq!(o.patient.sex, "M");
    let code = o.procedure.clone().expect("code");
    assert_eq!(
        (code.value.as_str(), code.scheme.as_str()),
        ("24627-2", "LN")
    );
    assert_eq!(o.procedure_description, "CT chest without contrast");
    assert_eq!(o.step.description, "CT chest without contrast");
    assert_eq!(o.step.modality, "CT");
    assert_eq!(o.step.station_ae_title, "CT_ROOM1");
    assert_eq!(
        (o.step.start_date.as_str(), o.step.start_time.as_str()),
        ("20261205", "093000")
    );
    assert_eq!(o.priority, Priority::High);
    assert_eq!(o.reason, "Cough");
    assert_eq!(o.requesting_physician, "Careful^Adam^^Dr");
    assert_eq!(o.validate(), Ok(()));
}

#[test]
fn a_rendered_order_parses_back_to_the_same_order() {
    let mut o = parse(&bytes(&ct_order())).expect("parses").order;
    o.study_instance_uid = "1.2.840.99.1".into();
    o.updated_ms = 1_764_930_600_000;
    let r = render(&o);
    assert_eq!(r["id"], "A20261205");
    assert_eq!(r["status"], "active");
    assert_eq!(r["meta"]["lastUpdated"], "2025-12-05T10:30:00.000Z");
    assert_eq!(r["occurrenceDateTime"], "2026-12-05T09:30:00");
    assert!(r["identifier"]
        .as_array()
        .expect("ids")
        .iter()
        .any(|i| i["system"] == "urn:dicom:uid" && i["value"] == "urn:oid:1.2.840.99.1"));
    let back = parse_value(&r).expect("parses back").order;
    assert_eq!(back.accession_number, o.accession_number);
    assert_eq!(back.placer_order_number, o.placer_order_number);
    assert_eq!(back.patient, o.patient);
    assert_eq!(back.procedure, o.procedure);
    assert_eq!(back.step.start_time, o.step.start_time);
    assert_eq!(back.step.station_ae_title, "CT_ROOM1");
    assert_eq!(back.study_instance_uid, "1.2.840.99.1");
    assert_eq!(back.priority, o.priority);
    let mut cancelled = o.clone();
    cancelled.status = OrderStatus::Cancelled;
    assert_eq!(render(&cancelled)["status"], "revoked");
    cancelled.status = OrderStatus::Completed;
    assert_eq!(render(&cancelled)["status"], "completed");
}

#[test]
fn a_logical_subject_and_a_period_are_accepted() {
    let mut r = ct_order();
    r["subject"] = json!({"identifier": {"system": "HOSP", "value": "P9"}, "display": "Doe^Jane"});
    r.as_object_mut()
        .expect("object")
        .remove("occurrenceDateTime");
    r["occurrencePeriod"] = json!({"start": "2026-12-06"});
    r["identifier"] = json!([{"value": "ACC-9"}]);
    r["status"] = json!("revoked");
    let inc = parse_value(&r).expect("parses");
    assert!(inc.cancel);
    assert_eq!(inc.order.accession_number, "ACC-9");
    assert_eq!(
        (
            inc.order.patient.id.as_str(),
            inc.order.patient.issuer.as_str()
        ),
        ("P9", "HOSP")
    );
    assert_eq!(inc.order.step.start_date, "20261206");
    assert_eq!(inc.order.step.start_time, "");
}

fn without(key: &str) -> Value {
    let mut r = ct_order();
    r.as_object_mut().expect("object").remove(key);
    r
}

#[test]
fn bad_resources_name_what_is_wrong() {
    let missing = |v: Value| match parse_value(&v) {
        Err(E::Missing(f)) => f,
        other => panic!("expected a missing field, got {other:?}"),
    };
    assert_eq!(missing(without("subject")), "subject");
    assert!(missing(without("identifier")).starts_with("identifier"));
    assert!(missing(without("performerType")).starts_with("performerType"));
    assert_eq!(missing(without("intent")), "intent");
    assert_eq!(missing(without("status")), "status");
    let mut no_pid = ct_order();
    no_pid["contained"][0]
        .as_object_mut()
        .expect("patient")
        .remove("identifier");
    assert!(missing(no_pid).contains("patient ID"));

    let mut patient = ct_order();
    patient["resourceType"] = json!("Patient");
    assert!(matches!(parse_value(&patient), Err(E::WrongType(t)) if t == "Patient"));
    assert!(matches!(parse(b"[1,2,3]"), Err(E::NotAnObject)));
    assert!(matches!(parse(b"{not json"), Err(E::Json(_))));
    let mut huge = ct_order();
    huge["code"]["text"] = json!("x".repeat(1_000_000));
    assert!(matches!(parse_value(&huge), Err(E::TooLong)));
    let mut when = ct_order();
    when["occurrenceDateTime"] = json!("tomorrow");
    assert!(matches!(
        parse_value(&when),
        Err(E::Invalid {
            field: "occurrenceDateTime",
            ..
        })
    ));
    let mut prio = ct_order();
    prio["priority"] = json!("whenever");
    assert!(matches!(
        parse_value(&prio),
        Err(E::Invalid {
            field: "priority",
            ..
        })
    ));
    let mut status = ct_order();
    status["status"] = json!("completed");
    assert!(matches!(
        parse_value(&status),
        Err(E::Invalid {
            field: "status",
            ..
        })
    ));
}
