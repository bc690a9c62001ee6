//! EHR worker: on StudyStable, a FHIR R4 ImagingStudy for the study, created or updated by
//! identifier (conditional update, `PUT ImagingStudy?identifier=urn:dicom:uid|urn:oid:...`).

use pacs_fhir::imaging_study;
use pacs_storage::{Event, EventKind, Store};

use super::{Outgoing, Prepared, Worker, WorkerError};

pub struct EhrWorker {
    /// FHIR base, e.g. https://ehr.example.org/fhir
    pub fhir_base: String,
    pub bearer: Option<String>,
    /// Our WADO-RS base for the ImagingStudy endpoint.
    pub wado_base: String,
}

impl Worker for EhrWorker {
    fn name(&self) -> &str {
        "ehr"
    }

    fn wants(&self, event: &Event) -> bool {
        event.kind == EventKind::StudyStable
    }

    fn prepare(&self, event: &Event, store: &Store) -> Result<Prepared, WorkerError> {
        let Some(resource) = imaging_study(store, &event.study_instance_uid, &self.wado_base)?
        else {
            return Ok(Prepared::Skip);
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
}
