//! `POST /fhir/Patient/$merge` (FHIR R5 Patient merge operation): the EHR, as the patient
//! master, tells the archive that one patient record is a duplicate of another. Both patients
//! must be in the archive (a patient it never imaged has nothing to merge: 404, as the API's
//! merge); `preview` answers what would change without changing it. The merge itself is the
//! same correction as `POST /api/patients/merge`, with the same events and audit.
//!
//! Patients are named by identifier (`source-patient-identifier`, `target-patient-identifier`)
//! or by reference (`source-patient`, `target-patient`: `Patient/<PatientID>` or a reference
//! with an identifier), as the archive's ImagingStudy resources name them: system
//! `urn:pacs:issuer:<IssuerOfPatientID>`, or any other system for a PatientID that is unique
//! in the archive.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use pacs_storage::audit::Interface;
use pacs_storage::corrections;
use serde_json::{json, Value};

use crate::access::AuditNote;
use crate::fhir_outcome::{body_bytes, fhir_response, FhirError};
use crate::{off_runtime, ApiState};

pub const PATH: &str = "/fhir/Patient/$merge";
const MAX_BODY: usize = 256 * 1024;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route(PATH, post(merge))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
}

/// A patient as the request names it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Named {
    id: String,
    issuer: Option<String>,
}

impl Named {
    fn from_identifier(v: &Value) -> Result<Named, FhirError> {
        let id = v
            .get("value")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| FhirError::invalid("an Identifier without a value"))?;
        let issuer = v
            .get("system")
            .and_then(Value::as_str)
            .and_then(|s| s.strip_prefix("urn:pacs:issuer:"))
            .map(str::to_string);
        Ok(Named {
            id: id.to_string(),
            issuer,
        })
    }

    fn from_reference(v: &Value) -> Result<Named, FhirError> {
        if let Some(identifier) = v.get("identifier") {
            return Named::from_identifier(identifier);
        }
        let reference = v.get("reference").and_then(Value::as_str).unwrap_or("");
        match reference.strip_prefix("Patient/") {
            Some(id) if !id.is_empty() && !id.contains('/') => Ok(Named {
                id: id.to_string(),
                issuer: None,
            }),
            _ => Err(FhirError::invalid(format!(
                "reference {reference:?} is not Patient/<PatientID>"
            ))),
        }
    }

    fn identifier(&self) -> Value {
        json!({
            "system": match &self.issuer {
                Some(i) => format!("urn:pacs:issuer:{i}"),
                None => "urn:pacs:patient-id".into(),
            },
            "value": self.id,
        })
    }
}

#[derive(Debug)]
struct MergeRequest {
    source: Named,
    target: Named,
    preview: bool,
}

/// The operation's input Parameters.
fn parse(body: &Value) -> Result<MergeRequest, FhirError> {
    if body.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(FhirError::invalid("the body must be a Parameters resource"));
    }
    let mut source = None;
    let mut target = None;
    let mut preview = false;
    let params = body
        .get("parameter")
        .and_then(Value::as_array)
        .ok_or_else(|| FhirError::invalid("Parameters without parameter"))?;
    for p in params {
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        let (slot, named) =
            match name {
                "source-patient-identifier" | "target-patient-identifier" => {
                    let v = p.get("valueIdentifier").ok_or_else(|| {
                        FhirError::invalid(format!("{name} needs valueIdentifier"))
                    })?;
                    (name, Named::from_identifier(v)?)
                }
                "source-patient" | "target-patient" => {
                    let v = p.get("valueReference").ok_or_else(|| {
                        FhirError::invalid(format!("{name} needs valueReference"))
                    })?;
                    (name, Named::from_reference(v)?)
                }
                "preview" => {
                    preview = p
                        .get("valueBoolean")
                        .and_then(Value::as_bool)
                        .ok_or_else(|| FhirError::invalid("preview needs valueBoolean"))?;
                    continue;
                }
                "result-patient" => return Err(FhirError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "not-supported",
                    "result-patient is not supported: the target patient's demographics are kept",
                )),
                other => return Err(FhirError::invalid(format!("unknown parameter {other:?}"))),
            };
        let slot = if slot.starts_with("source") {
            &mut source
        } else {
            &mut target
        };
        match slot {
            Some(existing) if existing != &named => {
                return Err(FhirError::invalid(format!(
                    "{name} names a different patient than another parameter"
                )))
            }
            _ => *slot = Some(named),
        }
    }
    match (source, target) {
        (Some(source), Some(target)) => Ok(MergeRequest {
            source,
            target,
            preview,
        }),
        (None, _) => Err(FhirError::invalid(
            "source-patient or source-patient-identifier is required",
        )),
        (_, None) => Err(FhirError::invalid(
            "target-patient or target-patient-identifier is required",
        )),
    }
}

fn outcome(text: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "information", "code": "informational", "diagnostics": text}],
    })
}

async fn merge(State(s): State<ApiState>, body: Result<Bytes, BytesRejection>) -> Response {
    match run(s, body).await {
        Ok(r) => r,
        Err(e) => axum::response::IntoResponse::into_response(e),
    }
}

async fn run(s: ApiState, body: Result<Bytes, BytesRejection>) -> Result<Response, FhirError> {
    let body = body_bytes(body, MAX_BODY)?;
    let input: Value = serde_json::from_slice(&body)
        .map_err(|e| FhirError::invalid(format!("the body is not JSON: {e}")))?;
    let req = parse(&input)?;
    let store = s.store.clone();
    let (source, target, preview) = (req.source.clone(), req.target.clone(), req.preview);
    let (from, into, done) = off_runtime(move || {
        let find = |n: &Named, role: &str| {
            corrections::find_patient(&store, &n.id, n.issuer.as_deref())?
                .ok_or_else(|| crate::ApiError::Missing(format!("{role} patient {}", n.id)))
        };
        let from = find(&source, "source")?;
        let into = find(&target, "target")?;
        let done = if preview {
            None
        } else {
            Some(corrections::merge_patients(
                &store,
                &from,
                &into,
                Interface::Http,
            )?)
        };
        Ok::<_, crate::ApiError>((from, into, done))
    })
    .await?;
    let text = match &done {
        Some(d) => format!(
            "merged {} studies ({} instances) of patient {} into {}",
            d.studies.len(),
            d.instances,
            corrections::display_key(&from),
            corrections::display_key(&into)
        ),
        None => format!(
            "preview: patient {} would be merged into {}",
            corrections::display_key(&from),
            corrections::display_key(&into)
        ),
    };
    let answer = json!({
        "resourceType": "Parameters",
        "parameter": [
            {"name": "input", "resource": input},
            {"name": "outcome", "resource": outcome(&text)},
            {"name": "result", "resource": {
                "resourceType": "Patient",
                "identifier": [req.target.identifier()],
                "active": true,
                "link": [{"other": {"identifier": req.source.identifier()}, "type": "replaces"}],
            }},
        ],
    });
    let mut r = fhir_response(StatusCode::OK, &answer);
    r.extensions_mut().insert(AuditNote {
        patient_id: Some(req.target.id.clone()),
        study_uid: done.as_ref().and_then(|d| d.studies.first().cloned()),
        detail: Some(match &done {
            Some(d) => d.audit_detail(),
            None => text,
        }),
        action: Some(if preview {
            "patient.merge.preview"
        } else {
            "patient.merge"
        }),
        ..AuditNote::default()
    });
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(list: Value) -> Value {
        json!({"resourceType": "Parameters", "parameter": list})
    }

    #[test]
    fn identifiers_references_and_preview_are_read() {
        let r = parse(&params(json!([
            {"name": "source-patient-identifier", "valueIdentifier": {"system": "urn:pacs:issuer:GH", "value": "OLD"}},
            {"name": "target-patient", "valueReference": {"reference": "Patient/NEW"}},
            {"name": "preview", "valueBoolean": true},
        ])))
        .expect("parses");
        assert_eq!(
            r.source,
            Named {
                id: "OLD".into(),
                issuer: Some("GH".into())
            }
        );
        assert_eq!(
            r.target,
            Named {
                id: "NEW".into(),
                issuer: None
            }
        );
        assert!(r.preview);
    }

    #[test]
    fn incomplete_or_contradictory_requests_are_refused() {
        let only_source = params(json!([
            {"name": "source-patient", "valueReference": {"reference": "Patient/A"}},
        ]));
        assert!(parse(&only_source).is_err());
        let two_sources = params(json!([
            {"name": "source-patient", "valueReference": {"reference": "Patient/A"}},
            {"name": "source-patient-identifier", "valueIdentifier": {"value": "B"}},
            {"name": "target-patient", "valueReference": {"reference": "Patient/C"}},
        ]));
        assert!(parse(&two_sources).is_err());
        let bad_ref = params(json!([
            {"name": "source-patient", "valueReference": {"reference": "Observation/1"}},
            {"name": "target-patient", "valueReference": {"reference": "Patient/C"}},
        ]));
        assert!(parse(&bad_ref).is_err());
        assert!(parse(&json!({"resourceType": "Patient"})).is_err());
    }
}
