//! The de-identified export sent to a DICOMweb endpoint (`{"stow": "<base URL>"}` as the
//! export's JSON body): STOW-RS of the study in batches, each batch de-identified off the async
//! workers and posted as one multipart/related request to `<base>/studies`. The answer says how
//! many instances the endpoint stored; the first batch it refuses stops the export with 502 and
//! the endpoint's own words.

use std::time::Duration;

use pacs_deid::{HashedPseudonyms, Profile};
use pacs_storage::InstanceRecord;
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
pub(crate) struct ExportTarget {
    /// DICOMweb base URL (`https://host/dicom-web`).
    pub stow: String,
    /// Bearer token for the endpoint, if it wants one.
    #[serde(default)]
    pub token: Option<String>,
}

impl ExportTarget {
    pub(crate) fn check(&self) -> Result<(), ApiError> {
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

/// Send the study; the number of instances stored.
pub(crate) async fn send(
    s: &ApiState,
    study: &str,
    profile: Profile,
    project: &str,
    target: &ExportTarget,
) -> Result<usize, ApiError> {
    let st = s.clone();
    let uid = study.to_string();
    let instances = off_runtime(move || st.store.index.study_instances(&uid)).await?;
    if instances.is_empty() {
        return Err(ApiError::NotFound("study"));
    }
    let client = reqwest::Client::builder()
        .timeout(BATCH_DEADLINE)
        .build()
        .map_err(|e| ApiError::Internal(format!("HTTP client: {e}")))?;
    let boundary = format!("pacs-export-{}", uuid::Uuid::new_v4().simple());
    let mut sent = 0;
    for batch in instances.chunks(BATCH) {
        let (st, records, profile, project, b) = (
            s.clone(),
            batch.to_vec(),
            profile.clone(),
            project.to_string(),
            boundary.clone(),
        );
        let body = off_runtime(move || multipart(&st, &records, &profile, &project, &b)).await?;
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

/// One STOW-RS body: the batch de-identified, each part an application/dicom file.
fn multipart(
    s: &ApiState,
    batch: &[InstanceRecord],
    profile: &Profile,
    project: &str,
    boundary: &str,
) -> Result<Vec<u8>, ApiError> {
    let mut pseudonyms = HashedPseudonyms::new(project, &s.config.share_secret);
    let mut body = Vec::new();
    for rec in batch {
        let (_, obj) = deidentified(s, rec, profile, &mut pseudonyms)?;
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes(),
        );
        obj.write_all(&mut body)
            .map_err(|e| ApiError::Internal(format!("writing {}: {e}", rec.sop_instance_uid)))?;
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    record_pseudonyms(s, project, &mut pseudonyms)?;
    Ok(body)
}
