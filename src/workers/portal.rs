//! Patient portal worker: on StudyStable, a "results available" notice (patient, study date,
//! description, modalities) with a signed link that opens this study only, until it expires;
//! once per study. A correction of a study already announced sends the notice again as
//! `results-corrected` (a new patient, description or content), or `results-withdrawn` when
//! the study was corrected away.

use pacs_auth::share;
use pacs_storage::records::first_value;
use pacs_storage::{Event, EventKind, Store};
use serde_json::json;

use super::{Outgoing, Prepared, Worker, WorkerError};

pub struct PortalWorker {
    pub url: String,
    pub bearer: Option<String>,
    pub secret: Vec<u8>,
    /// Base of our HTTP API for the link, e.g. https://pacs.example.org
    pub public_base: String,
    pub link_ttl_secs: u64,
}

impl Worker for PortalWorker {
    fn name(&self) -> &str {
        "portal"
    }

    fn wants(&self, event: &Event) -> bool {
        event.kind == EventKind::StudyStable || event.kind.is_correction()
    }

    fn prepare(&self, event: &Event, store: &Store) -> Result<Prepared, WorkerError> {
        let uid = &event.study_instance_uid;
        let announced = store
            .outbox
            .delivered_for_study(self.name(), uid)?
            .is_some_and(|seq| seq != event.seq);
        let correction = event.kind.is_correction();
        // One notice per study: a study that grows after it was announced (a late series)
        // gets no second "results available"; its link shows the study as it is. A
        // correction is told only about a study the portal knows.
        if announced != correction {
            return Ok(Prepared::Skip);
        }
        let Some(study) = store.index.study(uid)? else {
            if !correction {
                return Ok(Prepared::Skip);
            }
            let notice = json!({"type": "results-withdrawn", "study_instance_uid": uid});
            return Ok(Prepared::Send(Outgoing {
                method: reqwest::Method::POST,
                url: self.url.clone(),
                content_type: "application/json".into(),
                body: notice.to_string().into_bytes(),
                bearer: self.bearer.clone(),
            }));
        };
        let a = &study.attributes;
        // The link's life counts from the event, so a retried notice carries the same link.
        let expires = event.time_ms / 1000 + self.link_ttl_secs;
        let token = share::sign(&self.secret, uid, expires);
        let notice = json!({
            "type": if correction { "results-corrected" } else { "results-available" },
            "patient_id": first_value(a, "00100020"),
            "issuer_of_patient_id": first_value(a, "00100021"),
            "patient_name": first_value(a, "00100010"),
            "study_instance_uid": uid,
            "study_date": first_value(a, "00080020"),
            "description": first_value(a, "00081030"),
            "modalities": study.modalities,
            "link": format!("{}/api/share/{token}", self.public_base.trim_end_matches('/')),
            "expires": expires,
        });
        Ok(Prepared::Send(Outgoing {
            method: reqwest::Method::POST,
            url: self.url.clone(),
            content_type: "application/json".into(),
            body: notice.to_string().into_bytes(),
            bearer: self.bearer.clone(),
        }))
    }
}
