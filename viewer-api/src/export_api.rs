//! `POST /api/studies/{study}/export?profile=NAME[&project=P]`: the study de-identified with
//! a configured PS3.15 Annex E profile (`deid_profiles`), as an `application/zip` download.
//! UIDs and patient pseudonyms come from the archive's secret and the project, so the same
//! study always maps to the same new UIDs within a project. The zip is written to a temporary
//! file in the data folder and streamed, so memory does not grow with the study. With a JSON
//! body `{"stow": "<DICOMweb base URL>"[, "token"]}` the study goes there instead
//! ([`crate::export_stow`]).

use std::io::{Seek, SeekFrom, Write};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use dicom_object::{FileDicomObject, InMemDicomObject};
use pacs_deid::{deidentify_file, HashedPseudonyms, MappingKind, Profile};
use pacs_storage::audit::Interface;
use pacs_storage::pseudonyms::PseudonymEntry;
use pacs_storage::{InstanceRecord, Store};
use serde::Deserialize;
use serde_json::json;

use crate::access::guard::AuditNote;
use crate::error::ApiError;
use crate::export_stow::ExportTarget;
use crate::{off_runtime, ApiState};

pub fn routes() -> Router<ApiState> {
    Router::new().route("/api/studies/{study}/export", post(export))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    profile: Option<String>,
    project: Option<String>,
}

async fn export(
    State(s): State<ApiState>,
    Path(study): Path<String>,
    Query(q): Query<ExportQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    // No body: a zip download. A JSON body names another target.
    let target: Option<Target> = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let b: TargetBody = serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("export target: {e}")))?;
        Some(b.target()?)
    };
    let name = q.profile.unwrap_or_else(|| "basic".into());
    let profile = profile_named(&s, &name)?;
    let project = q.project.unwrap_or_else(|| "default".into());
    let mut r = export_studies(&s, vec![study.clone()], &name, profile, &project, target).await?;
    if let Some(note) = r.extensions_mut().get_mut::<AuditNote>() {
        note.study_uid = Some(study);
    }
    Ok(r)
}

/// The studies exported de-identified: as a zip answer, or sent to the JSON body's target;
/// the answer carries its audit note.
pub(crate) async fn export_studies(
    s: &ApiState,
    studies: Vec<String>,
    name: &str,
    profile: Profile,
    project: &str,
    target: Option<Target>,
) -> Result<Response, ApiError> {
    let detail = format!("profile {name}, project {project}");
    if let Some(target) = target {
        let (count, to, answer) = match &target {
            Target::Stow(t) => {
                let n = crate::export_stow::send(s, &studies, profile, project, t).await?;
                (n, t.stow.clone(), json!({"stored": n, "stow": t.stow}))
            }
            Target::Node(ae) => {
                let n = send_to_node(s, studies, profile, project, ae).await?;
                (n, ae.clone(), json!({"stored": n, "to": ae}))
            }
        };
        let mut r = Json(answer).into_response();
        r.extensions_mut().insert(AuditNote {
            action: Some("study.export"),
            detail: Some(format!(
                "{detail}, {count} instances de-identified and sent to {to}"
            )),
            ..AuditNote::default()
        });
        return Ok(r);
    }
    let (mut r, count) = zip_download(s, studies, profile, project).await?;
    r.extensions_mut().insert(AuditNote {
        action: Some("study.export"),
        detail: Some(format!("{detail}, {count} instances de-identified")),
        ..AuditNote::default()
    });
    Ok(r)
}

/// The instances of the studies, study by study; 404 when there are none.
pub(crate) fn instances_of(
    s: &ApiState,
    studies: &[String],
) -> Result<Vec<InstanceRecord>, ApiError> {
    let mut instances = Vec::new();
    for study in studies {
        instances.extend(s.store.index.study_instances(study)?);
    }
    if instances.is_empty() {
        return Err(ApiError::NotFound("study"));
    }
    Ok(instances)
}

/// The de-identified studies as a streamed `application/zip` answer, and its size in
/// instances.
pub(crate) async fn zip_download(
    s: &ApiState,
    studies: Vec<String>,
    profile: Profile,
    project: &str,
) -> Result<(Response, usize), ApiError> {
    let (st, project) = (s.clone(), project.to_string());
    let (file, count) = off_runtime(move || write_zip(&st, &studies, &profile, &project)).await?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(
        tokio::fs::File::from_std(file),
    ));
    let mut r = body.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    r.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"study-deidentified.zip\""),
    );
    Ok((r, count))
}

/// The configured profile of this name, or a 400 naming the configured ones.
pub(crate) fn profile_named(s: &ApiState, name: &str) -> Result<Profile, ApiError> {
    s.config
        .deid_profiles
        .iter()
        .find(|p| p.name == name)
        .cloned()
        .ok_or_else(|| {
            let known: Vec<&str> = s
                .config
                .deid_profiles
                .iter()
                .map(|p| p.name.as_str())
                .collect();
            ApiError::BadRequest(format!(
                "no de-identification profile {name:?}; configured: {}",
                known.join(", ")
            ))
        })
}

/// Where a JSON body sends the export: `{"stow": URL[, "token"]}` or `{"to": AE}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TargetBody {
    stow: Option<String>,
    token: Option<String>,
    to: Option<String>,
}

pub(crate) enum Target {
    Stow(ExportTarget),
    /// A `[[nodes]]` entry, by C-STORE.
    Node(String),
}

impl TargetBody {
    pub(crate) fn target(self) -> Result<Target, ApiError> {
        match (self.stow, self.to) {
            (Some(stow), None) => {
                let t = ExportTarget {
                    stow,
                    token: self.token,
                };
                t.check()?;
                Ok(Target::Stow(t))
            }
            (None, Some(ae)) if self.token.is_none() => Ok(Target::Node(ae)),
            _ => Err(ApiError::BadRequest(
                "export target: give either {\"stow\": URL[, \"token\"]} or {\"to\": AE title}"
                    .into(),
            )),
        }
    }
}

/// C-STORE of the de-identified studies to a configured node; the number stored.
async fn send_to_node(
    s: &ApiState,
    studies: Vec<String>,
    profile: Profile,
    project: &str,
    ae: &str,
) -> Result<usize, ApiError> {
    let remote = s
        .remote
        .clone()
        .ok_or_else(|| ApiError::Missing("export to DICOM nodes".into()))?;
    let st = s.clone();
    let instances = off_runtime(move || instances_of(&st, &studies)).await?;
    let deid = crate::export_stow::Deidentify {
        profile,
        project: project.to_string(),
        secret: s.config.share_secret.clone(),
    };
    Ok(remote
        .send_to_node(ae, s.store.clone(), instances, Some(deid))
        .await?)
}

/// The de-identified study as a zip in an unnamed temporary file, rewound; and its size in
/// instances.
fn write_zip(
    s: &ApiState,
    studies: &[String],
    profile: &Profile,
    project: &str,
) -> Result<(std::fs::File, usize), ApiError> {
    let store = &s.store;
    let instances = instances_of(s, studies)?;
    let zip_error = |e: zip::result::ZipError| ApiError::Internal(format!("writing the zip: {e}"));
    let tmp = tempfile::tempfile_in(store.data_dir())
        .map_err(|e| ApiError::Internal(format!("creating the export file: {e}")))?;
    let mut zip = zip::ZipWriter::new(tmp);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    let mut pseudonyms = HashedPseudonyms::new(project, &s.config.share_secret);
    for rec in &instances {
        let (name, obj) = deidentified(store, rec, profile, &mut pseudonyms)?;
        zip.start_file(name, options).map_err(zip_error)?;
        obj.write_all(&mut zip)
            .map_err(|e| ApiError::Internal(format!("writing {}: {e}", rec.sop_instance_uid)))?;
    }
    // In the table before anything leaves, so whatever comes back can be re-identified.
    record_pseudonyms(store, project, &mut pseudonyms)?;
    let mut file = zip.finish().map_err(zip_error)?;
    file.flush()
        .and_then(|()| file.seek(SeekFrom::Start(0)).map(|_| ()))
        .map_err(|e| ApiError::Internal(format!("rewinding the export file: {e}")))?;
    Ok((file, instances.len()))
}

/// One stored instance de-identified: its path in an export (`STUDY/SERIES/SOP.dcm`, new
/// UIDs) and the file.
pub fn deidentified(
    store: &Store,
    rec: &InstanceRecord,
    profile: &Profile,
    pseudonyms: &mut HashedPseudonyms,
) -> Result<(String, FileDicomObject<InMemDicomObject>), ApiError> {
    let mut obj = store.read_verified(rec, Interface::Http)?;
    pacs_storage::un_vr::resolve_un(&mut obj);
    deidentify_file(&mut obj, profile, pseudonyms)
        .map_err(|e| ApiError::Internal(format!("de-identifying {}: {e}", rec.sop_instance_uid)))?;
    let uid = |tag| {
        obj.element(tag)
            .ok()
            .and_then(|e| e.to_str().ok())
            .map(|v| v.trim_end_matches('\0').to_string())
            .unwrap_or_default()
    };
    use dicom_dictionary_std::tags;
    let name = format!(
        "{}/{}/{}.dcm",
        uid(tags::STUDY_INSTANCE_UID),
        uid(tags::SERIES_INSTANCE_UID),
        uid(tags::SOP_INSTANCE_UID)
    );
    Ok((name, obj))
}

/// Keep what the de-identification replaced in the index's pseudonym table.
pub fn record_pseudonyms(
    store: &Store,
    project: &str,
    pseudonyms: &mut HashedPseudonyms,
) -> Result<(), ApiError> {
    let entries: Vec<PseudonymEntry> = pseudonyms
        .take_mappings()
        .into_iter()
        .map(|m| PseudonymEntry {
            project: project.to_string(),
            kind: match m.kind {
                MappingKind::Uid => "uid",
                MappingKind::PatientId => "patient-id",
                MappingKind::PatientName => "patient-name",
            }
            .to_string(),
            original: m.original,
            replacement: m.replacement,
        })
        .collect();
    store.pseudonyms.put_pseudonyms(&entries)?;
    Ok(())
}
