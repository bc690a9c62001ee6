//! External AI: each stable series is sent to the AI service with STOW-RS, as stored or, with
//! `profile`, de-identified (the replacements recorded in the pseudonym table first); the
//! service posts its findings back to `POST /api/studies/{uid}/flags` and may store results
//! (SR, SEG) by STOW-RS, both re-identified through the table when they name pseudonyms.

use pacs_storage::{Event, EventKind, Store};

use pacs_deid::HashedPseudonyms;
use pacs_viewer_api::{deidentified, record_pseudonyms, Deidentify};

use super::{series_records, Outgoing, Prepared, Worker, WorkerError};

pub struct AiWorker {
    /// The AI service's DICOMweb base; instances go to `{url}/studies`.
    pub url: String,
    pub bearer: Option<String>,
    /// De-identify what is sent (profile, project, secret).
    pub deid: Option<Deidentify>,
}

impl Worker for AiWorker {
    fn name(&self) -> &str {
        "ai"
    }

    fn yields_to_ingest(&self) -> bool {
        true
    }

    fn wants(&self, event: &Event) -> bool {
        event.kind == EventKind::SeriesStable
    }

    fn prepare(&self, event: &Event, store: &Store) -> Result<Prepared, WorkerError> {
        let Some(series) = &event.series_instance_uid else {
            return Ok(Prepared::Skip);
        };
        let boundary = format!("pacs-ai-{}", event.seq);
        let mut body = Vec::new();
        let mut parts = 0;
        let mut pseudonyms = self
            .deid
            .as_ref()
            .map(|d| HashedPseudonyms::new(&d.project, &d.secret));
        for rec in series_records(store, series)? {
            let sop = &rec.sop_instance_uid;
            let read_failed = |source| WorkerError::ReadBlob {
                sop: sop.clone(),
                source,
            };
            let mut file = Vec::new();
            match (&self.deid, pseudonyms.as_mut()) {
                (Some(d), Some(p)) => {
                    let failed = |e: String| WorkerError::Deidentify(format!("{sop}: {e}"));
                    let (_, obj) = deidentified(store, &rec, &d.profile, p)
                        .map_err(|e| failed(e.to_string()))?;
                    obj.write_all(&mut file)
                        .map_err(|e| failed(e.to_string()))?;
                }
                _ => {
                    std::io::Read::read_to_end(&mut store.blobs.open(&rec.blob)?, &mut file)
                        .map_err(read_failed)?;
                }
            }
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes(),
            );
            body.extend_from_slice(&file);
            body.extend_from_slice(b"\r\n");
            parts += 1;
        }
        if parts == 0 {
            return Ok(Prepared::Skip);
        }
        if let (Some(d), Some(p)) = (&self.deid, pseudonyms.as_mut()) {
            // In the table before anything leaves, so what returns can be re-identified.
            record_pseudonyms(store, &d.project, p)
                .map_err(|e| WorkerError::Deidentify(e.to_string()))?;
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        Ok(Prepared::Send(Outgoing {
            method: reqwest::Method::POST,
            url: format!("{}/studies", self.url.trim_end_matches('/')),
            content_type: format!(
                "multipart/related; type=\"application/dicom\"; boundary={boundary}"
            ),
            body,
            bearer: self.bearer.clone(),
        }))
    }
}
