//! Pharmacy worker: when a stable study records contrast (Contrast/Bolus Agent and its coded
//! Agent Sequence, Ingredient, Volume, Route, Start Time) or a radiopharmaceutical
//! (Radiopharmaceutical Information Sequence with its Code Sequence), a FHIR
//! MedicationAdministration for each, coded when the data set codes the agent; and a
//! DetectedIssue allergy alert when the patient's Allergies or Medical Alerts name the agent
//! or its class (see `agents`). Sent as one transaction of conditional updates keyed by study,
//! so repeats do not duplicate.

use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use pacs_fhir::coding::{codes, Code};
use pacs_fhir::datetime::{fhir_date, fhir_datetime, fhir_datetime_dt};
use pacs_storage::{Event, EventKind, Store};
use serde_json::{json, Value};

use super::agents::{allergy_matches, classify, AgentClass};
use super::{study_headers, subject, text, Outgoing, Prepared, Worker, WorkerError};

pub struct PharmacyWorker {
    pub url: String,
    pub bearer: Option<String>,
}

/// One administration found in a data set.
#[derive(Debug, Clone, PartialEq)]
struct Given {
    /// The agent as named (free text, else the first code's meaning).
    agent: String,
    /// The agent's coded entries (Contrast/Bolus Agent Sequence or Radiopharmaceutical Code
    /// Sequence).
    codes: Vec<Code>,
    ingredient: Option<String>,
    route: Option<String>,
    route_codes: Vec<Code>,
    /// (value, unit)
    dose: Option<(f64, &'static str)>,
    /// When it was given, as a FHIR dateTime (a time only with a known zone).
    time: Option<String>,
    class: Option<AgentClass>,
}

impl Given {
    /// Every name the agent goes by here, for classing and allergy matching.
    fn names(&self) -> Vec<&str> {
        let mut names = vec![self.agent.as_str()];
        names.extend(self.ingredient.as_deref());
        names.extend(self.codes.iter().map(|c| c.meaning.as_str()));
        names
    }
}

fn number(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Option<f64> {
    obj.get(tag)
        .and_then(|e| e.value().to_multi_float64().ok())
        .and_then(|v| v.first().copied())
}

/// The date an image was made on (for start times given without one), and the site's offset.
fn date_and_zone(h: &InMemDicomObject) -> (Option<String>, Option<String>) {
    let date = [tags::ACQUISITION_DATE, tags::SERIES_DATE, tags::STUDY_DATE]
        .into_iter()
        .find_map(|t| text(h, t));
    (date, text(h, tags::TIMEZONE_OFFSET_FROM_UTC))
}

fn contrast(h: &InMemDicomObject) -> Option<Given> {
    let agent_codes = codes(h, tags::CONTRAST_BOLUS_AGENT_SEQUENCE);
    let agent = text(h, tags::CONTRAST_BOLUS_AGENT)
        .or_else(|| agent_codes.first().map(|c| c.meaning.clone()))
        .filter(|a| !a.is_empty())?;
    let (date, zone) = date_and_zone(h);
    let time = text(h, tags::CONTRAST_BOLUS_START_TIME).and_then(|t| {
        date.as_deref()
            .and_then(|d| fhir_datetime(d, &t, zone.as_deref()))
    });
    let mut g = Given {
        agent,
        codes: agent_codes,
        ingredient: text(h, tags::CONTRAST_BOLUS_INGREDIENT),
        route: text(h, tags::CONTRAST_BOLUS_ROUTE),
        route_codes: codes(h, tags::CONTRAST_BOLUS_ADMINISTRATION_ROUTE_SEQUENCE),
        dose: number(h, tags::CONTRAST_BOLUS_VOLUME).map(|v| (v, "mL")),
        time,
        class: None,
    };
    g.class = classify(&g.codes, &g.names(), false);
    Some(g)
}

fn radiopharmaceuticals(h: &InMemDicomObject) -> Vec<Given> {
    let Some(items) = h
        .get(tags::RADIOPHARMACEUTICAL_INFORMATION_SEQUENCE)
        .and_then(|e| e.value().items())
    else {
        return Vec::new();
    };
    let (date, zone) = date_and_zone(h);
    items
        .iter()
        .filter_map(|i| {
            let agent_codes = codes(i, tags::RADIOPHARMACEUTICAL_CODE_SEQUENCE);
            let agent = text(i, tags::RADIOPHARMACEUTICAL)
                .or_else(|| agent_codes.first().map(|c| c.meaning.clone()))
                .filter(|a| !a.is_empty())?;
            // The start's own DT (with its offset, if any) first, else TM on the image's date.
            let time = text(i, tags::RADIOPHARMACEUTICAL_START_DATE_TIME)
                .and_then(|dt| fhir_datetime_dt(&dt, zone.as_deref()))
                .or_else(|| {
                    let t = text(i, tags::RADIOPHARMACEUTICAL_START_TIME)?;
                    fhir_datetime(date.as_deref()?, &t, zone.as_deref())
                });
            let mut g = Given {
                agent,
                codes: agent_codes,
                ingredient: None,
                route: text(i, tags::RADIOPHARMACEUTICAL_ROUTE),
                route_codes: codes(i, tags::ADMINISTRATION_ROUTE_CODE_SEQUENCE),
                dose: number(i, tags::RADIONUCLIDE_TOTAL_DOSE).map(|v| (v, "Bq")),
                time,
                class: None,
            };
            g.class = classify(&g.codes, &g.names(), true);
            Some(g)
        })
        .collect()
}

fn administrations(h: &InMemDicomObject) -> Vec<Given> {
    contrast(h)
        .into_iter()
        .chain(radiopharmaceuticals(h))
        .collect()
}

/// The MedicationAdministration of one agent.
fn administration(
    g: &Given,
    id: &str,
    subject: &Value,
    study_ref: &Value,
    study_date: &str,
) -> Value {
    let mut medication = json!({"text": g.agent});
    if !g.codes.is_empty() {
        medication["coding"] = json!(g.codes.iter().map(Code::coding).collect::<Vec<_>>());
    }
    let mut admin = json!({
        "resourceType": "MedicationAdministration",
        "identifier": [{"system": "urn:pacs:administration", "value": id}],
        "status": "completed",
        "medicationCodeableConcept": medication,
        "subject": subject,
        "supportingInformation": [study_ref],
        "dosage": {},
    });
    if let Some(ing) = &g.ingredient {
        admin["note"] = json!([{"text": format!("ingredient: {ing}")}]);
    }
    if g.route.is_some() || !g.route_codes.is_empty() {
        let mut route = json!({});
        if !g.route_codes.is_empty() {
            route["coding"] = json!(g.route_codes.iter().map(Code::coding).collect::<Vec<_>>());
        }
        if let Some(r) = &g.route {
            route["text"] = json!(r);
        }
        admin["dosage"]["route"] = route;
    }
    if let Some((v, unit)) = g.dose {
        admin["dosage"]["dose"] =
            json!({"value": v, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit});
    }
    // The start time when the data set has one, else the study's date.
    if let Some(when) = g.time.clone().or_else(|| fhir_date(study_date)) {
        admin["effectiveDateTime"] = json!(when);
    }
    admin
}

/// The allergy alert for an administration, if the patient's record names what was given.
fn alert(g: &Given, id: &str, subject: &Value, allergies: &[String]) -> Option<Value> {
    let class = g.class?;
    let allergy = allergies
        .iter()
        .find(|a| allergy_matches(a, class, &g.names()))?;
    let alert_id = format!("{id}-allergy");
    let label = class.label();
    Some(json!({
        "resource": {
            "resourceType": "DetectedIssue",
            "identifier": [{"system": "urn:pacs:alert", "value": alert_id}],
            "status": "final",
            "severity": "high",
            "code": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "ALGY", "display": "Allergy Alert"}],
                "text": format!("{label} given to a patient with a recorded allergy"),
            },
            "patient": subject,
            "detail": format!("{} ({label}) administered; patient record says: {allergy}", g.agent),
            "implicated": [{"identifier": {"system": "urn:pacs:administration", "value": id}}],
        },
        "request": {"method": "PUT", "url": format!("DetectedIssue?identifier=urn:pacs:alert%7C{alert_id}")},
    }))
}

impl Worker for PharmacyWorker {
    fn name(&self) -> &str {
        "pharmacy"
    }

    fn wants(&self, event: &Event) -> bool {
        event.kind == EventKind::StudyStable
    }

    fn prepare(&self, event: &Event, store: &Store) -> Result<Prepared, WorkerError> {
        let study_uid = &event.study_instance_uid;
        let Some(study) = store.index.study(study_uid)? else {
            return Ok(Prepared::Skip);
        };
        let headers = study_headers(store, study_uid)?;
        let mut given: Vec<Given> = Vec::new();
        let mut allergies = Vec::new();
        for h in &headers {
            for g in administrations(h) {
                if !given.contains(&g) {
                    given.push(g);
                }
            }
            for t in [tags::ALLERGIES, tags::MEDICAL_ALERTS] {
                if let Some(a) = text(h, t) {
                    if !allergies.contains(&a) {
                        allergies.push(a);
                    }
                }
            }
        }
        if given.is_empty() {
            return Ok(Prepared::Skip);
        }
        let subject = subject(&study.attributes);
        let study_ref = json!({"identifier": {"system": "urn:dicom:uid", "value": format!("urn:oid:{study_uid}")}});
        let study_date = pacs_storage::records::first_value(&study.attributes, "00080020");
        let mut entries: Vec<Value> = Vec::new();
        for (n, g) in given.iter().enumerate() {
            let id = format!("{study_uid}-{}", n + 1);
            entries.push(json!({
                "resource": administration(g, &id, &subject, &study_ref, study_date),
                "request": {"method": "PUT", "url": format!("MedicationAdministration?identifier=urn:pacs:administration%7C{id}")},
            }));
            entries.extend(alert(g, &id, &subject, &allergies));
        }
        Ok(Prepared::Send(Outgoing::fhir(
            reqwest::Method::POST,
            self.url.trim_end_matches('/').to_string(),
            &json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
            self.bearer.clone(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_object::mem::InMemDicomObject as Obj;

    fn code_item(value: &str, scheme: &str, meaning: &str) -> Obj {
        Obj::from_element_iter([
            DataElement::new(tags::CODE_VALUE, VR::SH, PrimitiveValue::from(value)),
            DataElement::new(
                tags::CODING_SCHEME_DESIGNATOR,
                VR::SH,
                PrimitiveValue::from(scheme),
            ),
            DataElement::new(tags::CODE_MEANING, VR::LO, PrimitiveValue::from(meaning)),
        ])
    }

    #[test]
    fn a_coded_brand_name_contrast_is_classed_timed_and_coded() {
        let mut h = Obj::new_empty();
        h.put(DataElement::new(
            tags::CONTRAST_BOLUS_AGENT,
            VR::LO,
            PrimitiveValue::from("VISIPAQUE 320"),
        ));
        h.put(DataElement::new(
            tags::CONTRAST_BOLUS_AGENT_SEQUENCE,
            VR::SQ,
            dicom_core::value::DataSetSequence::from(vec![code_item(
                "353962003",
                "SCT",
                "Iodixanol",
            )]),
        ));
        h.put(DataElement::new(
            tags::CONTRAST_BOLUS_START_TIME,
            VR::TM,
            PrimitiveValue::from("101500"),
        ));
        h.put(DataElement::new(
            tags::STUDY_DATE,
            VR::DA,
            PrimitiveValue::from("20241105"),
        ));
        h.put(DataElement::new(
            tags::TIMEZONE_OFFSET_FROM_UTC,
            VR::SH,
            PrimitiveValue::from("+0100"),
        ));
        let given = administrations(&h);
        assert_eq!(given.len(), 1);
        let g = &given[0];
        assert_eq!(g.class, Some(AgentClass::IodinatedContrast));
        assert_eq!(g.time.as_deref(), Some("2024-11-05T10:15:00+01:00"));
        let subject = json!({"display": "X"});
        let admin = administration(g, "1-1", &subject, &json!({}), "20241105");
        assert_eq!(
            admin["medicationCodeableConcept"]["coding"][0],
            json!({"system": "http://snomed.info/sct", "code": "353962003", "display": "Iodixanol"})
        );
        assert_eq!(admin["effectiveDateTime"], "2024-11-05T10:15:00+01:00");
        let alert = alert(g, "1-1", &subject, &["contrast dye".to_string()]).expect("alert");
        assert_eq!(alert["resource"]["code"]["coding"][0]["code"], "ALGY");
        assert!(super::alert(g, "1-1", &subject, &["penicillin".to_string()]).is_none());
    }
}
