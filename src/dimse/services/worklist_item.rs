//! A modality worklist request and its answers (PS3.4 K.6.1.2.2): the identifier's keys
//! become a [`WorklistQuery`]; each matching order becomes the full worklist item (patient,
//! visit, imaging service request, requested procedure, scheduled procedure step), cut down
//! to the keys the request named — sequences item by item — in the order's character set.

use dicom_core::header::Header;
use dicom_core::value::{DataSetSequence, Value};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use pacs_storage::attrs::tag_key;
use pacs_storage::orders::{Code, Order};
use pacs_storage::query::MatchOptions;
use pacs_storage::worklist::{matcher, WorklistQuery};

use super::identifier::{read_dataset, EncodeError, IdentifierError};

/// A parsed worklist C-FIND: the query and the identifier (to cut answers to its keys).
pub struct WorklistRequest {
    pub query: WorklistQuery,
    pub identifier: InMemDicomObject,
    pub transfer_syntax: String,
}

fn text_of(obj: &InMemDicomObject, tag: Tag) -> String {
    obj.get(tag)
        .and_then(|e| match e.value() {
            Value::Primitive(p) => Some(p.to_str().trim_matches(['\0', ' ']).to_string()),
            _ => None,
        })
        .unwrap_or_default()
}

/// The first item of a sequence key, if the request sent one.
fn first_item(obj: &InMemDicomObject, tag: Tag) -> Option<&InMemDicomObject> {
    obj.get(tag).and_then(|e| e.items()).and_then(|i| i.first())
}

/// Parse a worklist identifier received in `transfer_syntax`.
pub fn parse_worklist_request(
    bytes: &[u8],
    transfer_syntax: &str,
    options: MatchOptions,
) -> Result<WorklistRequest, IdentifierError> {
    let identifier = read_dataset(bytes, transfer_syntax)?;
    let key = |obj: &InMemDicomObject, tag: Tag, vr: &str| {
        matcher(vr, &text_of(obj, tag)).map_err(|source| IdentifierError::Matcher {
            key: tag_key(tag),
            source,
        })
    };
    let mut query = WorklistQuery {
        options,
        patient_name: key(&identifier, tags::PATIENT_NAME, "PN")?,
        patient_id: key(&identifier, tags::PATIENT_ID, "LO")?,
        issuer_of_patient_id: key(&identifier, tags::ISSUER_OF_PATIENT_ID, "LO")?,
        accession_number: key(&identifier, tags::ACCESSION_NUMBER, "SH")?,
        requested_procedure_id: key(&identifier, tags::REQUESTED_PROCEDURE_ID, "SH")?,
        study_instance_uid: key(&identifier, tags::STUDY_INSTANCE_UID, "UI")?,
        ..Default::default()
    };
    if let Some(step) = first_item(&identifier, tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE) {
        query.modality = key(step, tags::MODALITY, "CS")?;
        query.station_ae_title = key(step, tags::SCHEDULED_STATION_AE_TITLE, "AE")?;
        query.station_name = key(step, tags::SCHEDULED_STATION_NAME, "SH")?;
        query.start_date = key(step, tags::SCHEDULED_PROCEDURE_STEP_START_DATE, "DA")?;
        query.start_time = key(step, tags::SCHEDULED_PROCEDURE_STEP_START_TIME, "TM")?;
        query.performing_physician = key(step, tags::SCHEDULED_PERFORMING_PHYSICIAN_NAME, "PN")?;
        query.step_id = key(step, tags::SCHEDULED_PROCEDURE_STEP_ID, "SH")?;
    }
    Ok(WorklistRequest {
        query,
        identifier,
        transfer_syntax: transfer_syntax.to_string(),
    })
}

fn put(obj: &mut InMemDicomObject, tag: Tag, vr: VR, value: &str) {
    let v = if value.is_empty() {
        PrimitiveValue::Empty
    } else {
        PrimitiveValue::from(value)
    };
    obj.put(DataElement::new(tag, vr, v));
}

fn put_seq(obj: &mut InMemDicomObject, tag: Tag, items: Vec<InMemDicomObject>) {
    obj.put(DataElement::new(tag, VR::SQ, DataSetSequence::from(items)));
}

fn code_item(code: &Code) -> InMemDicomObject {
    let mut item = InMemDicomObject::new_empty();
    put(&mut item, tags::CODE_VALUE, VR::SH, &code.value);
    put(
        &mut item,
        tags::CODING_SCHEME_DESIGNATOR,
        VR::SH,
        &code.scheme,
    );
    put(&mut item, tags::CODE_MEANING, VR::LO, &code.meaning);
    item
}

/// Every worklist attribute of an order (PS3.4 Table K.6-1).
pub fn full_item(order: &Order) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    // Patient.
    put(&mut o, tags::PATIENT_NAME, VR::PN, &order.patient.name);
    put(&mut o, tags::PATIENT_ID, VR::LO, &order.patient.id);
    put(
        &mut o,
        tags::ISSUER_OF_PATIENT_ID,
        VR::LO,
        &order.patient.issuer,
    );
    put(
        &mut o,
        tags::PATIENT_BIRTH_DATE,
        VR::DA,
        &order.patient.birth_date,
    );
    put(&mut o, tags::PATIENT_SEX, VR::CS, &order.patient.sex);
    // Visit.
    put(&mut o, tags::ADMISSION_ID, VR::LO, &order.admission_id);
    // Imaging service request.
    put(
        &mut o,
        tags::ACCESSION_NUMBER,
        VR::SH,
        &order.accession_number,
    );
    put(
        &mut o,
        tags::REQUESTING_PHYSICIAN,
        VR::PN,
        &order.requesting_physician,
    );
    put(
        &mut o,
        tags::REFERRING_PHYSICIAN_NAME,
        VR::PN,
        &order.referring_physician,
    );
    let placer = order.placer_order_number.as_deref().unwrap_or_default();
    let filler = order.filler_order_number.as_deref().unwrap_or_default();
    put(
        &mut o,
        tags::PLACER_ORDER_NUMBER_IMAGING_SERVICE_REQUEST,
        VR::LO,
        placer,
    );
    put(
        &mut o,
        tags::FILLER_ORDER_NUMBER_IMAGING_SERVICE_REQUEST,
        VR::LO,
        filler,
    );
    // Requested procedure.
    put(
        &mut o,
        tags::REQUESTED_PROCEDURE_ID,
        VR::SH,
        &order.requested_procedure_id,
    );
    let description = &order.procedure_description;
    put(
        &mut o,
        tags::REQUESTED_PROCEDURE_DESCRIPTION,
        VR::LO,
        description,
    );
    let codes = order.procedure.iter().map(code_item).collect();
    put_seq(&mut o, tags::REQUESTED_PROCEDURE_CODE_SEQUENCE, codes);
    put(
        &mut o,
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        &order.study_instance_uid,
    );
    put(
        &mut o,
        tags::REQUESTED_PROCEDURE_PRIORITY,
        VR::SH,
        order.priority.dicom(),
    );
    put(
        &mut o,
        tags::REASON_FOR_THE_REQUESTED_PROCEDURE,
        VR::LO,
        &order.reason,
    );
    put_seq(&mut o, tags::REFERENCED_STUDY_SEQUENCE, Vec::new());
    // Scheduled procedure step.
    let s = &order.step;
    let mut step = InMemDicomObject::new_empty();
    put(
        &mut step,
        tags::SCHEDULED_STATION_AE_TITLE,
        VR::AE,
        &s.station_ae_title,
    );
    put(
        &mut step,
        tags::SCHEDULED_PROCEDURE_STEP_START_DATE,
        VR::DA,
        &s.start_date,
    );
    put(
        &mut step,
        tags::SCHEDULED_PROCEDURE_STEP_START_TIME,
        VR::TM,
        &s.start_time,
    );
    put(&mut step, tags::MODALITY, VR::CS, &s.modality);
    let performer = &s.performing_physician;
    put(
        &mut step,
        tags::SCHEDULED_PERFORMING_PHYSICIAN_NAME,
        VR::PN,
        performer,
    );
    put(
        &mut step,
        tags::SCHEDULED_PROCEDURE_STEP_DESCRIPTION,
        VR::LO,
        &s.description,
    );
    put(
        &mut step,
        tags::SCHEDULED_STATION_NAME,
        VR::SH,
        &s.station_name,
    );
    put(
        &mut step,
        tags::SCHEDULED_PROCEDURE_STEP_LOCATION,
        VR::SH,
        &s.location,
    );
    put(&mut step, tags::SCHEDULED_PROCEDURE_STEP_ID, VR::SH, &s.id);
    let status = order.status.step_status();
    put(
        &mut step,
        tags::SCHEDULED_PROCEDURE_STEP_STATUS,
        VR::CS,
        status,
    );
    let protocol = order.procedure.iter().map(code_item).collect();
    put_seq(&mut step, tags::SCHEDULED_PROTOCOL_CODE_SEQUENCE, protocol);
    put_seq(&mut o, tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE, vec![step]);
    o
}

/// `full` cut down to the keys of `request`: each requested key with its value (empty when
/// the item has none); a requested sequence with its items cut to the keys of the request's
/// item (whole items when the request's sequence is empty).
fn cut_to(request: &InMemDicomObject, full: &InMemDicomObject) -> InMemDicomObject {
    let mut out = InMemDicomObject::new_empty();
    for elem in request.iter() {
        let tag = elem.tag();
        if tag == tags::SPECIFIC_CHARACTER_SET || tag.group() == 0x0002 {
            continue;
        }
        match full.get(tag) {
            Some(found) if found.vr() == VR::SQ => {
                let items = found.items().unwrap_or_default();
                let cut: Vec<_> = match elem.items().and_then(|i| i.first()) {
                    Some(keys) if keys.iter().next().is_some() => {
                        items.iter().map(|item| cut_to(keys, item)).collect()
                    }
                    _ => items.to_vec(),
                };
                put_seq(&mut out, tag, cut);
            }
            Some(found) => {
                out.put(found.clone());
            }
            None if elem.vr() == VR::SQ => put_seq(&mut out, tag, Vec::new()),
            None => {
                out.put(DataElement::new(tag, elem.vr(), PrimitiveValue::Empty));
            }
        }
    }
    out
}

/// Does all text of the order fit in Latin-1 (so an ISO_IR 100 order can be answered in it)?
fn fits_latin1(order: &Order) -> bool {
    let json = serde_json::to_string(order).unwrap_or_default();
    json.chars().all(|c| (c as u32) < 0x100)
}

/// The answer to `request` for one matching order, encoded in the request's transfer syntax.
pub fn response_item(request: &WorklistRequest, order: &Order) -> Result<Vec<u8>, EncodeError> {
    let mut out = cut_to(&request.identifier, &full_item(order));
    // The order's own character set where its text fits, else UTF-8.
    let charset = if order.charset == "ISO_IR 100" && fits_latin1(order) {
        "ISO_IR 100"
    } else {
        "ISO_IR 192"
    };
    out.put(DataElement::new(
        tags::SPECIFIC_CHARACTER_SET,
        VR::CS,
        PrimitiveValue::from(charset),
    ));
    let ts = TransferSyntaxRegistry
        .get(&request.transfer_syntax)
        .ok_or_else(|| EncodeError::UnknownTransferSyntax(request.transfer_syntax.clone()))?;
    let mut bytes = Vec::with_capacity(1024);
    out.write_dataset_with_ts(&mut bytes, ts)
        .map_err(|e| EncodeError::Write(Box::new(e)))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacs_storage::orders::{OrderPatient, OrderSource, OrderStatus, Priority, ScheduledStep};

    pub(crate) fn order(name: &str, charset: &str) -> Order {
        Order {
            accession_number: "ACC42".into(),
            placer_order_number: Some("PL1".into()),
            filler_order_number: None,
            status: OrderStatus::Scheduled,
            patient: OrderPatient {
                id: "PID7".into(),
                issuer: "HOSP".into(),
                name: name.into(),
                birth_date: "19700101".into(),
                sex: "F".into(),
            },
            study_instance_uid: "1.2.826.0.1.3680043.2.1".into(),
            requested_procedure_id: "RP42".into(),
            procedure: Some(Code {
                value: "24627-2".into(),
                scheme: "LN".into(),
                meaning: "CT Chest".into(),
            }),
            procedure_description: "CT Chest".into(),
            priority: Priority::Stat,
            reason: "cough".into(),
            requesting_physician: "House^Gregory".into(),
            referring_physician: String::new(),
            admission_id: "V1".into(),
            step: ScheduledStep {
                id: "SPS42".into(),
                modality: "CT".into(),
                station_ae_title: "CT1".into(),
                start_date: "20261205".into(),
                start_time: "093000".into(),
                description: "CT Chest".into(),
                ..Default::default()
            },
            charset: charset.into(),
            source: OrderSource::Hl7,
            created_ms: 0,
            updated_ms: 0,
            performed_steps: Vec::new(),
        }
    }

    fn request(identifier: InMemDicomObject) -> WorklistRequest {
        let mut bytes = Vec::new();
        identifier
            .write_dataset_with_ts(
                &mut bytes,
                &dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased(),
            )
            .expect("encode");
        parse_worklist_request(&bytes, "1.2.840.10008.1.2.1", MatchOptions::default())
            .expect("parse")
    }

    fn decode(bytes: &[u8]) -> InMemDicomObject {
        InMemDicomObject::read_dataset_with_ts(
            bytes,
            &dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased(),
        )
        .expect("decode")
    }

    #[test]
    fn answers_carry_the_requested_keys_and_the_step_items() {
        let mut id = InMemDicomObject::new_empty();
        put(&mut id, tags::PATIENT_NAME, VR::PN, "");
        put(&mut id, tags::ACCESSION_NUMBER, VR::SH, "");
        put_seq(&mut id, tags::REQUESTED_PROCEDURE_CODE_SEQUENCE, Vec::new());
        let mut step = InMemDicomObject::new_empty();
        put(&mut step, tags::MODALITY, VR::CS, "CT");
        put(
            &mut step,
            tags::SCHEDULED_PROCEDURE_STEP_START_DATE,
            VR::DA,
            "20261205",
        );
        put(&mut step, tags::SCHEDULED_STATION_AE_TITLE, VR::AE, "");
        put_seq(&mut id, tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE, vec![step]);
        let req = request(id);
        let o = order("Doe^Jane", "ISO_IR 192");
        assert!(req.query.matches(&o));
        let answer = decode(&response_item(&req, &o).expect("encode"));
        assert_eq!(text_of(&answer, tags::PATIENT_NAME), "Doe^Jane");
        assert_eq!(text_of(&answer, tags::ACCESSION_NUMBER), "ACC42");
        assert!(answer.get(tags::PATIENT_ID).is_none(), "not requested");
        let code = first_item(&answer, tags::REQUESTED_PROCEDURE_CODE_SEQUENCE).expect("code");
        assert_eq!(text_of(code, tags::CODE_VALUE), "24627-2");
        let step = first_item(&answer, tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE).expect("step");
        assert_eq!(text_of(step, tags::SCHEDULED_STATION_AE_TITLE), "CT1");
        assert_eq!(text_of(step, tags::MODALITY), "CT");
        assert!(step.get(tags::SCHEDULED_PROCEDURE_STEP_ID).is_none());
    }

    #[test]
    fn latin1_orders_are_answered_in_latin1() {
        let mut id = InMemDicomObject::new_empty();
        put(&mut id, tags::PATIENT_NAME, VR::PN, "");
        let req = request(id);
        let bytes = response_item(&req, &order("Müller^Jürgen", "ISO_IR 100")).expect("enc");
        assert!(bytes.windows(2).any(|w| w == b"M\xFC"), "Latin-1 bytes");
        let answer = decode(&bytes);
        assert_eq!(text_of(&answer, tags::SPECIFIC_CHARACTER_SET), "ISO_IR 100");
        assert_eq!(text_of(&answer, tags::PATIENT_NAME), "Müller^Jürgen");
        // Text Latin-1 cannot hold: UTF-8.
        let bytes = response_item(&req, &order("Ωmega^Ann", "ISO_IR 100")).expect("enc");
        assert_eq!(
            text_of(&decode(&bytes), tags::SPECIFIC_CHARACTER_SET),
            "ISO_IR 192"
        );
    }
}
