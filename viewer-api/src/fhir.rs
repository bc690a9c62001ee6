//! FHIR R4 views of the archive: the ImagingStudy of a study (sent by the EHR worker and
//! served by the read-only `GET /fhir/ImagingStudy` search).

use pacs_storage::part10::read_instance;
use pacs_storage::records::{first_value, Attributes};
use pacs_storage::{SecondaryKey, Store};
use serde_json::{json, Value};

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";

/// DICOM DA + TM to a FHIR dateTime (local time, as DICOM gives no offset here).
pub fn fhir_datetime(date: &str, time: &str) -> Option<String> {
    let d = date.trim();
    if d.len() != 8 || !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut out = format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..8]);
    let t: String = time
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    if t.len() >= 4 {
        let secs = if t.len() >= 6 { &t[4..6] } else { "00" };
        out.push_str(&format!("T{}:{}:{secs}", &t[..2], &t[2..4]));
    }
    Some(out)
}

fn text(a: &Attributes, tag: &str) -> Option<String> {
    let v = first_value(a, tag).trim();
    (!v.is_empty()).then(|| v.to_string())
}

fn number(a: &Attributes, tag: &str) -> Option<i64> {
    first_value(a, tag).trim().parse().ok()
}

/// Codes of a code sequence (CodeValue, CodingSchemeDesignator, CodeMeaning) as a FHIR coding.
pub fn codes(obj: &dicom_object::DefaultDicomObject, tag: dicom_core::Tag) -> Vec<Value> {
    use dicom_dictionary_std::tags;
    let Some(seq) = obj.get(tag).and_then(|e| e.value().items()) else {
        return Vec::new();
    };
    seq.iter()
        .filter_map(|item| {
            let s = |t| {
                item.get(t)
                    .and_then(|e| e.value().to_str().ok())
                    .map(|v| v.trim().to_string())
            };
            let code = s(tags::CODE_VALUE)?;
            Some(json!({
                "coding": [{
                    "system": s(tags::CODING_SCHEME_DESIGNATOR).unwrap_or_default(),
                    "code": code,
                    "display": s(tags::CODE_MEANING).unwrap_or_default(),
                }],
                "text": s(tags::CODE_MEANING).unwrap_or_default(),
            }))
        })
        .collect()
}

/// The ImagingStudy resource of a study as the index holds it now; `wado_base` is our
/// WADO-RS base for its endpoint.
pub fn imaging_study(
    store: &Store,
    study_uid: &str,
    wado_base: &str,
) -> Result<Option<Value>, String> {
    let e = |e: pacs_storage::StorageError| e.to_string();
    let Some(study) = store.index.study(study_uid).map_err(e)? else {
        return Ok(None);
    };
    let a = &study.attributes;
    let series_uids = store
        .index
        .scan_secondary(&SecondaryKey::SeriesOfStudy(study_uid.into()), usize::MAX)
        .map_err(e)?;
    let mut series_out = Vec::new();
    let mut procedure = Vec::new();
    for uid in &series_uids {
        let Some(s) = store.index.series(uid).map_err(e)? else {
            continue;
        };
        let sops = store
            .index
            .scan_secondary(&SecondaryKey::InstancesOfSeries(uid.clone()), usize::MAX)
            .map_err(e)?;
        let mut instances = Vec::new();
        for sop in &sops {
            if let Some(rec) = store.index.instance(sop).map_err(e)? {
                if procedure.is_empty() {
                    // Procedure codes live in the data set (a sequence the index does not keep).
                    if let Ok(obj) = read_instance(store.blobs.as_ref(), &rec.blob, true) {
                        procedure =
                            codes(&obj, dicom_dictionary_std::tags::PROCEDURE_CODE_SEQUENCE);
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
        if let Some(started) =
            fhir_datetime(first_value(sa, "00080021"), first_value(sa, "00080031"))
        {
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
    if let Some(started) = fhir_datetime(first_value(a, "00080020"), first_value(a, "00080030")) {
        resource["started"] = json!(started);
    }
    if let Some(d) = text(a, "00081030") {
        resource["description"] = json!(d);
    }
    if !procedure.is_empty() {
        resource["procedureCode"] = json!(procedure);
    }
    Ok(Some(resource))
}

#[cfg(test)]
mod tests {
    #[test]
    fn dicom_dates_become_fhir_datetimes() {
        assert_eq!(
            super::fhir_datetime("20241105", "083015.123").as_deref(),
            Some("2024-11-05T08:30:15")
        );
        assert_eq!(
            super::fhir_datetime("20241105", "").as_deref(),
            Some("2024-11-05")
        );
        assert_eq!(super::fhir_datetime("2024", "0830"), None);
    }
}
