//! Pharmacy worker: when a stable study records contrast (ContrastBolusAgent, Volume,
//! Ingredient, Route) or a radiopharmaceutical (RadiopharmaceuticalInformationSequence), a FHIR
//! MedicationAdministration for each; and a DetectedIssue safety alert when the patient's
//! Allergies or MedicalAlerts mention the agent's class (iodinated contrast, gadolinium).
//! Sent as one transaction of conditional updates keyed by study, so repeats do not duplicate.

use dicom_dictionary_std::tags;
use pacs_storage::{Event, EventKind, Store};
use serde_json::{json, Value};

use super::{study_headers, subject, text, Outgoing, Prepared, Worker};

pub struct PharmacyWorker {
    pub url: String,
    pub bearer: Option<String>,
}

/// One administration found in a data set.
#[derive(Debug, Clone, PartialEq)]
struct Given {
    agent: String,
    ingredient: Option<String>,
    route: Option<String>,
    /// (value, unit)
    dose: Option<(f64, &'static str)>,
    time: Option<String>,
}

/// The class of an agent, for allergy matching.
fn agent_class(g: &Given) -> Option<&'static str> {
    let all =
        format!("{} {}", g.agent, g.ingredient.clone().unwrap_or_default()).to_ascii_uppercase();
    if all.contains("GAD") {
        Some("gadolinium")
    } else if all.contains("IOD") || all.starts_with("IO") || all.contains("CONTRAST") {
        Some("iodinated contrast")
    } else {
        None
    }
}

fn number(obj: &dicom_object::InMemDicomObject, tag: dicom_core::Tag) -> Option<f64> {
    obj.get(tag)
        .and_then(|e| e.value().to_multi_float64().ok())
        .and_then(|v| v.first().copied())
}

fn administrations(h: &dicom_object::InMemDicomObject) -> Vec<Given> {
    let mut out = Vec::new();
    if let Some(agent) = text(h, tags::CONTRAST_BOLUS_AGENT) {
        out.push(Given {
            agent,
            ingredient: text(h, tags::CONTRAST_BOLUS_INGREDIENT),
            route: text(h, tags::CONTRAST_BOLUS_ROUTE),
            dose: number(h, tags::CONTRAST_BOLUS_VOLUME).map(|v| (v, "mL")),
            time: text(h, tags::CONTRAST_BOLUS_START_TIME),
        });
    }
    if let Some(items) = h
        .get(tags::RADIOPHARMACEUTICAL_INFORMATION_SEQUENCE)
        .and_then(|e| e.value().items())
    {
        for i in items {
            if let Some(agent) = text(i, tags::RADIOPHARMACEUTICAL) {
                out.push(Given {
                    agent,
                    ingredient: None,
                    route: text(i, tags::RADIOPHARMACEUTICAL_ROUTE),
                    dose: number(i, tags::RADIONUCLIDE_TOTAL_DOSE).map(|v| (v, "Bq")),
                    time: text(i, tags::RADIOPHARMACEUTICAL_START_DATE_TIME)
                        .or_else(|| text(i, tags::RADIOPHARMACEUTICAL_START_TIME)),
                });
            }
        }
    }
    out
}

impl Worker for PharmacyWorker {
    fn name(&self) -> &str {
        "pharmacy"
    }

    fn wants(&self, event: &Event) -> bool {
        event.kind == EventKind::StudyStable
    }

    fn prepare(&self, event: &Event, store: &Store) -> Result<Prepared, String> {
        let study_uid = &event.study_instance_uid;
        let Some(study) = store.index.study(study_uid).map_err(|e| e.to_string())? else {
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
        let mut entries: Vec<Value> = Vec::new();
        for (n, g) in given.iter().enumerate() {
            let id = format!("{study_uid}-{}", n + 1);
            let mut admin = json!({
                "resourceType": "MedicationAdministration",
                "identifier": [{"system": "urn:pacs:administration", "value": id}],
                "status": "completed",
                "medicationCodeableConcept": {"text": g.agent},
                "subject": subject,
                "supportingInformation": [study_ref],
                "dosage": {},
            });
            if let Some(ing) = &g.ingredient {
                admin["medicationCodeableConcept"]["coding"] = json!([{"display": ing}]);
            }
            if let Some(r) = &g.route {
                admin["dosage"]["route"] = json!({"text": r});
            }
            if let Some((v, unit)) = g.dose {
                admin["dosage"]["dose"] = json!({"value": v, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit});
            }
            let date = pacs_storage::records::first_value(&study.attributes, "00080020");
            if date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit()) {
                admin["effectiveDateTime"] =
                    json!(format!("{}-{}-{}", &date[..4], &date[4..6], &date[6..8]));
            }
            entries.push(json!({
                "resource": admin,
                "request": {"method": "PUT", "url": format!("MedicationAdministration?identifier=urn:pacs:administration%7C{id}")},
            }));
            // Safety alert: the agent's class named in the patient's allergies or alerts.
            let class = agent_class(g);
            let hit = class.and_then(|c| {
                let words: &[&str] = if c == "gadolinium" {
                    &["GAD"]
                } else {
                    &["IOD", "CONTRAST"]
                };
                allergies
                    .iter()
                    .find(|a| words.iter().any(|w| a.to_ascii_uppercase().contains(w)))
            });
            if let (Some(class), Some(allergy)) = (class, hit) {
                let alert_id = format!("{id}-allergy");
                entries.push(json!({
                    "resource": {
                        "resourceType": "DetectedIssue",
                        "identifier": [{"system": "urn:pacs:alert", "value": alert_id}],
                        "status": "final",
                        "severity": "high",
                        "code": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "DRG", "display": "Drug Interaction Alert"}], "text": format!("{class} given to a patient with a recorded allergy")},
                        "patient": subject,
                        "detail": format!("{} ({class}) administered; patient record says: {allergy}", g.agent),
                        "implicated": [{"identifier": {"system": "urn:pacs:administration", "value": id}}],
                    },
                    "request": {"method": "PUT", "url": format!("DetectedIssue?identifier=urn:pacs:alert%7C{alert_id}")},
                }));
            }
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

    #[test]
    fn agents_are_classed_for_allergy_checks() {
        let g = |agent: &str, ingredient: Option<&str>| Given {
            agent: agent.into(),
            ingredient: ingredient.map(str::to_string),
            route: None,
            dose: None,
            time: None,
        };
        assert_eq!(
            agent_class(&g("OMNIPAQUE 350", Some("IODINE"))),
            Some("iodinated contrast")
        );
        assert_eq!(agent_class(&g("IOHEXOL", None)), Some("iodinated contrast"));
        assert_eq!(
            agent_class(&g("GADOBUTROL", Some("GADOLINIUM"))),
            Some("gadolinium")
        );
        assert_eq!(agent_class(&g("Fluorodeoxyglucose", None)), None);
    }
}
