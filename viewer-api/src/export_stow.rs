//! The de-identified export sent to a DICOMweb endpoint (`{"stow": "<base URL>"}` as the
//! export's JSON body): STOW-RS of the study in batches, each batch de-identified off the async
//! workers and posted as one multipart/related request to `<base>/studies`. The answer says how
//! many instances the endpoint stored; the first batch it refuses stops the export with 502 and
//! the endpoint's own words.

use std::sync::Arc;
use std::time::Duration;

use pacs_deid::{HashedPseudonyms, Profile};
use pacs_storage::audit::Interface;
use pacs_storage::{InstanceRecord, Store};
use serde::Deserialize;

use crate::error::ApiError;
use crate::export_api::{deidentified, record_pseudonyms};
use crate::{off_runtime, ApiState};

/// Instances per STOW request: a few tens of megabytes of CT at most.
const BATCH: usize = 50;
/// A batch that takes longer than this is given up (the endpoint is down or stuck).
const BATCH_DEADLINE: Duration = Duration::from_secs(120);

/// Where the export goes, from the request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportTarget {
    /// DICOMweb base URL (`https://host/dicom-web`).
    pub stow: String,
    /// Bearer token for the endpoint, if it wants one.
    #[serde(default)]
    pub token: Option<String>,
}

impl ExportTarget {
    pub fn check(&self) -> Result<(), ApiError> {
        let url = reqwest::Url::parse(&self.stow)
            .map_err(|e| ApiError::BadRequest(format!("stow {:?}: {e}", self.stow)))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(ApiError::BadRequest(format!(
                "stow {:?} is not an http(s) URL",
                self.stow
            )));
        }
        Ok(())
    }

    fn studies_url(&self) -> String {
        format!("{}/studies", self.stow.trim_end_matches('/'))
    }
}

/// Send the studies; the number of instances stored.
pub(crate) async fn send(
    s: &ApiState,
    studies: &[String],
    profile: Profile,
    project: &str,
    target: &ExportTarget,
) -> Result<usize, ApiError> {
    let (st, studies) = (s.clone(), studies.to_vec());
    let instances = off_runtime(move || crate::export_api::instances_of(&st, &studies)).await?;
    let deid = Deidentify {
        profile,
        project: project.to_string(),
        secret: s.config.share_secret.clone(),
    };
    stow_records(s.store.clone(), target, &instances, Some(Arc::new(deid))).await
}

/// How instances are de-identified on their way out.
#[derive(Debug, Clone)]
pub struct Deidentify {
    pub profile: Profile,
    pub project: String,
    /// The archive's secret (the share-link key): new UIDs and pseudonyms derive from it.
    pub secret: Vec<u8>,
}

/// STOW-RS of stored instances to `target` in batches of 50, each read (and de-identified
/// when `deid` says so) off the async workers; the number stored. The first batch the
/// endpoint refuses, stores only in part (202) or does not answer stops the send with
/// [`ApiError::BadGateway`] naming the endpoint's words and what was stored before.
pub async fn stow_records(
    store: Arc<Store>,
    target: &ExportTarget,
    instances: &[InstanceRecord],
    deid: Option<Arc<Deidentify>>,
) -> Result<usize, ApiError> {
    let client = reqwest::Client::builder()
        .timeout(BATCH_DEADLINE)
        .build()
        .map_err(|e| ApiError::Internal(format!("HTTP client: {e}")))?;
    let boundary = format!("pacs-export-{}", uuid::Uuid::new_v4().simple());
    let mut sent = 0;
    for batch in instances.chunks(BATCH) {
        let (st, records, deid, b) = (
            store.clone(),
            batch.to_vec(),
            deid.clone(),
            boundary.clone(),
        );
        let body = off_runtime(move || multipart(&st, &records, deid.as_deref(), &b)).await?;
        let mut request = client
            .post(target.studies_url())
            .header(
                reqwest::header::CONTENT_TYPE,
                format!("multipart/related; type=\"application/dicom\"; boundary={boundary}"),
            )
            .header(reqwest::header::ACCEPT, "application/dicom+json")
            .body(body);
        if let Some(token) = &target.token {
            request = request.bearer_auth(token);
        }
        let unreachable = |e: reqwest::Error| {
            ApiError::BadGateway(format!(
                "{}: {e} ({sent} of {} instances stored before)",
                target.stow,
                instances.len()
            ))
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        if !status.is_success() || status.as_u16() == 202 {
            // 202: some instances were refused (FailedSOPSequence); the export is not whole.
            let text: String = response
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(500)
                .collect();
            return Err(ApiError::BadGateway(format!(
                "{} answered {status}: {text} ({sent} of {} instances stored before)",
                target.stow,
                instances.len()
            )));
        }
        sent += batch.len();
    }
    Ok(sent)
}

/// One STOW-RS body: each part an application/dicom file, as stored or de-identified.
fn multipart(
    store: &Store,
    batch: &[InstanceRecord],
    deid: Option<&Deidentify>,
    boundary: &str,
) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    let mut pseudonyms = deid.map(|d| HashedPseudonyms::new(&d.project, &d.secret));
    for rec in batch {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes(),
        );
        match (deid, pseudonyms.as_mut()) {
            (Some(d), Some(p)) => {
                let (_, obj) = deidentified(store, rec, &d.profile, p)?;
                obj.write_all(&mut body).map_err(|e| {
                    ApiError::Internal(format!("writing {}: {e}", rec.sop_instance_uid))
                })?;
            }
            _ => {
                let mut blob = store.open_verified(rec, Interface::Http)?;
                std::io::copy(&mut blob, &mut body).map_err(|e| {
                    ApiError::Internal(format!("reading {}: {e}", rec.sop_instance_uid))
                })?;
            }
        }
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    if let (Some(d), Some(p)) = (deid, pseudonyms.as_mut()) {
        record_pseudonyms(store, &d.project, p)?;
    }
    Ok(body)
}
