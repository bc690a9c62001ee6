//! EHR worker: on StudyStable, a FHIR R4 ImagingStudy for the study, created or updated by
//! identifier (conditional update, `PUT ImagingStudy?identifier=urn:dicom:uid|urn:oid:...`),
//! `basedOn` the order with the study's accession number. On a performed procedure step that
//! ended (MPPS COMPLETED or DISCONTINUED), the order's ServiceRequest status is changed with
//! a conditional JSON Patch (`PATCH ServiceRequest?identifier=ACC`): the EHR owns the
//! request, so only its status is touched. A correction (patient update or merge, study
//! update, series moved) sends the study's ImagingStudy again; a study corrected away (its
//! last series moved elsewhere) is sent as `entered-in-error`.

use pacs_fhir::imaging_study;
use pacs_fhir::service_request;
use pacs_storage::{Event, EventKind, OrderStatus, Store};
use serde_json::json;

use super::{Outgoing, Prepared, Worker, WorkerError};

pub struct EhrWorker {
    /// FHIR base, e.g. https://ehr.example.org/fhir
    pub fhir_base: String,
    pub bearer: Option<String>,
    /// Our WADO-RS base for the ImagingStudy endpoint.
    pub wado_base: String,
}

impl EhrWorker {
    fn imaging_study(&self, event: &Event, store: &Store) -> Result<Prepared, WorkerError> {
        let resource = match imaging_study(store, &event.study_instance_uid, &self.wado_base)? {
            Some(resource) => resource,
            None if event.kind.is_correction() => withdrawn(event),
            None => return Ok(Prepared::Skip),
        };
        Ok(Prepared::Send(Outgoing::fhir(
            reqwest::Method::PUT,
            format!(
                "{}/ImagingStudy?identifier=urn:dicom:uid%7Curn:oid:{}",
                self.fhir_base.trim_end_matches('/'),
                event.study_instance_uid
            ),
            &resource,
            self.bearer.clone(),
        )))
    }

    /// The ServiceRequest status the step's end implies. A step that started changes nothing
    /// a ServiceRequest can say (it stays `active`), and an unscheduled step has no order.
    fn order_status(&self, event: &Event) -> Prepared {
        let status = match event.kind {
            EventKind::MppsCompleted => OrderStatus::Completed,
            EventKind::MppsDiscontinued => OrderStatus::Discontinued,
            _ => return Prepared::Skip,
        };
        let Some(accession) = event.accession_number.as_deref().filter(|a| !a.is_empty()) else {
            return Prepared::Skip;
        };
        let identifier: String = form_urlencoded::byte_serialize(accession.as_bytes()).collect();
        Prepared::Send(Outgoing::json_patch(
            format!(
                "{}/ServiceRequest?identifier={identifier}",
                self.fhir_base.trim_end_matches('/')
            ),
            &json!([{"op": "replace", "path": "/status", "value": service_request::status(status)}]),
            self.bearer.clone(),
        ))
    }
}

impl Worker for EhrWorker {
    fn name(&self) -> &str {
        "ehr"
    }

    fn wants(&self, event: &Event) -> bool {
        matches!(
            event.kind,
            EventKind::StudyStable | EventKind::MppsCompleted | EventKind::MppsDiscontinued
        ) || event.kind.is_correction()
    }

    fn prepare(&self, event: &Event, store: &Store) -> Result<Prepared, WorkerError> {
        match event.kind {
            EventKind::StudyStable => self.imaging_study(event, store),
            kind if kind.is_correction() => self.imaging_study(event, store),
            _ => Ok(self.order_status(event)),
        }
    }
}

/// The ImagingStudy of a study no longer in the archive because a correction moved its
/// content elsewhere: the EHR's copy was an error.
fn withdrawn(event: &Event) -> serde_json::Value {
    let (id, issuer) = event
        .patient_key
        .split_once('\u{1}')
        .unwrap_or((event.patient_key.as_str(), ""));
    json!({
        "resourceType": "ImagingStudy",
        "identifier": [{"system": "urn:dicom:uid", "value": format!("urn:oid:{}", event.study_instance_uid)}],
        "status": "entered-in-error",
        "subject": {"identifier": {
            "system": if issuer.is_empty() { "urn:pacs:patient-id".to_string() } else { format!("urn:pacs:issuer:{issuer}") },
            "value": id,
        }},
    })
}
