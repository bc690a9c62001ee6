//! External AI: each stable series is sent to the AI service with STOW-RS (as stored); the
//! service posts its findings back to `POST /api/studies/{uid}/flags`.

use pacs_storage::{Event, EventKind, Store};

use super::{series_records, Outgoing, Prepared, Worker, WorkerError};

pub struct AiWorker {
    /// The AI service's DICOMweb base; instances go to `{url}/studies`.
    pub url: String,
    pub bearer: Option<String>,
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
        for rec in series_records(store, series)? {
            let sop = &rec.sop_instance_uid;
            let mut file = Vec::new();
            std::io::Read::read_to_end(&mut store.blobs.open(&rec.blob)?, &mut file).map_err(
                |source| WorkerError::ReadBlob {
                    sop: sop.clone(),
                    source,
                },
            )?;
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
