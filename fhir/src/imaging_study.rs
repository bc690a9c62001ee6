//! The ImagingStudy of a study (sent by the EHR worker and served by the read-only
//! `GET /fhir/ImagingStudy` search).

use pacs_storage::part10::read_instance;
use pacs_storage::records::{first_value, Attributes};
use pacs_storage::{StorageError, Store};
use serde_json::{json, Value};

use crate::coding::{self, DCM};
use crate::datetime::fhir_datetime;

fn text(a: &Attributes, tag: &str) -> Option<String> {
    let v = first_value(a, tag).trim();
    (!v.is_empty()).then(|| v.to_string())
}

fn number(a: &Attributes, tag: &str) -> Option<i64> {
    first_value(a, tag).trim().parse().ok()
}

/// The ImagingStudy resource of a study as the index holds it now; `wado_base` is our
/// WADO-RS base for its endpoint.
pub fn imaging_study(
    store: &Store,
    study_uid: &str,
    wado_base: &str,
) -> Result<Option<Value>, StorageError> {
    let Some(study) = store.index.study(study_uid)? else {
        return Ok(None);
    };
    let a = &study.attributes;
    // Times are local to the acquisition site; its offset makes them FHIR dateTimes.
    let zone = text(a, "00080201");
    let mut series_out = Vec::new();
    let mut procedure = Vec::new();
    for uid in &store.index.series_uids(study_uid)? {
        let Some(s) = store.index.series(uid)? else {
            continue;
        };
        let mut instances = Vec::new();
        for rec in store.index.series_instances(uid)? {
            if procedure.is_empty() {
                // Procedure codes live in the data set (a sequence the index does not keep).
                if let Ok(obj) = read_instance(store.blobs.as_ref(), &rec.blob, true) {
                    procedure =
                        coding::concepts(&obj, dicom_dictionary_std::tags::PROCEDURE_CODE_SEQUENCE);
                }
            }
            let mut inst = json!({
                "uid": rec.sop_instance_uid,
                "sopClass": {"system": "urn:ietf:rfc:3986", "code": format!("urn:oid:{}", rec.sop_class_uid)},
            });
            if let Some(n) = number(&rec.attributes, "00200013") {
                inst["number"] = json!(n);
            }
            instances.push(inst);
        }
        let sa = &s.attributes;
        let mut series = json!({
            "uid": s.series_instance_uid,
            "modality": {"system": DCM, "code": first_value(sa, "00080060")},
            "numberOfInstances": s.num_instances,
            "instance": instances,
        });
        if let Some(n) = number(sa, "00200011") {
            series["number"] = json!(n);
        }
        if let Some(d) = text(sa, "0008103E") {
            series["description"] = json!(d);
        }
        if let Some(b) = text(sa, "00180015") {
            series["bodySite"] = json!({"display": b});
        }
        if let Some(started) = fhir_datetime(
            first_value(sa, "00080021"),
            first_value(sa, "00080031"),
            zone.as_deref(),
        ) {
            series["started"] = json!(started);
        }
        series_out.push(series);
    }
    let patient_id = first_value(a, "00100020");
    let issuer = first_value(a, "00100021");
    let mut subject = json!({
        "identifier": {
            "system": if issuer.is_empty() { "urn:pacs:patient-id".to_string() } else { format!("urn:pacs:issuer:{issuer}") },
            "value": patient_id,
        }
    });
    if let Some(name) = text(a, "00100010") {
        subject["display"] = json!(name);
    }
    let mut identifiers =
        vec![json!({"system": "urn:dicom:uid", "value": format!("urn:oid:{study_uid}")})];
    if let Some(acc) = text(a, "00080050") {
        identifiers.push(json!({
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]},
            "value": acc,
        }));
    }
    let mut resource = json!({
        "resourceType": "ImagingStudy",
        "identifier": identifiers,
        "status": "available",
        "subject": subject,
        "modality": study.modalities.iter().map(|m| json!({"system": DCM, "code": m})).collect::<Vec<_>>(),
        "numberOfSeries": study.num_series,
        "numberOfInstances": study.num_instances,
        "contained": [{
            "resourceType": "Endpoint",
            "id": "wado",
            "status": "active",
            "connectionType": {"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type", "code": "dicom-wado-rs"},
            "payloadType": [{"text": "DICOM"}],
            "address": format!("{}/studies/{study_uid}", wado_base),
        }],
        "endpoint": [{"reference": "#wado"}],
        "series": series_out,
    });
    if let Some(started) = fhir_datetime(
        first_value(a, "00080020"),
        first_value(a, "00080030"),
        zone.as_deref(),
    ) {
        resource["started"] = json!(started);
    }
    if let Some(d) = text(a, "00081030") {
        resource["description"] = json!(d);
    }
    // The order the images were taken for (same accession number): basedOn ServiceRequest.
    if let Some(acc) = text(a, "00080050") {
        if store.orders.order(&acc)?.is_some() {
            resource["basedOn"] = json!([{
                "reference": format!("ServiceRequest/{acc}"),
                "identifier": {
                    "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]},
                    "value": acc,
                },
            }]);
        }
    }
    if !procedure.is_empty() {
        resource["procedureCode"] = json!(procedure);
    }
    Ok(Some(resource))
}
