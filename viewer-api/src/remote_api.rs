//! Other archives through this one (admin only, like every `/api` route not classified
//! otherwise; audited): `GET /api/remote/{node}/studies?PatientID=&PatientName=&StudyDate=
//! &AccessionNumber=&ModalitiesInStudy=&StudyInstanceUID=&limit=` asks a `[[nodes]]` entry by
//! C-FIND (Study Root, STUDY level) and answers DICOM JSON as QIDO-RS does;
//! `POST /api/remote/{node}/retrieve` `{"study": UID}` has it C-MOVE the study to us and
//! answers the counts once the move has ended. The DIMSE side is the server's
//! ([`RemoteArchives`]), handed to the API at start.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::access::guard::AuditNote;
use crate::error::ApiError;
use crate::ApiState;

/// Default and largest number of matches one query returns.
const LIMIT_DEFAULT: usize = 100;
const LIMIT_MAX: usize = 1000;

pub type RemoteFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, RemoteError>> + Send + 'a>>;

/// What the other archive did with a retrieve.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetrieveCounts {
    pub status: u16,
    pub completed: u16,
    pub failed: u16,
    pub warning: u16,
    pub comment: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{0:?} is not a configured node")]
    UnknownNode(String),
    /// The node could not be reached or broke the protocol.
    #[error("{node}: {reason}")]
    Unreachable { node: String, reason: String },
    /// The node answered with a failure status.
    #[error("{node} answered 0x{status:04X}{}", .comment.as_ref().map(|c| format!(": {c}")).unwrap_or_default())]
    Refused {
        node: String,
        status: u16,
        comment: Option<String>,
    },
}

/// Query/retrieve against configured nodes, as the server does it (DIMSE SCU).
pub trait RemoteArchives: Send + Sync {
    /// Study-level C-FIND with these keys; at most `limit` matches.
    fn find_studies<'a>(
        &'a self,
        node: &'a str,
        keys: Vec<(Tag, String)>,
        limit: usize,
    ) -> RemoteFuture<'a, Vec<InMemDicomObject>>;
    /// C-MOVE of a study to this archive.
    fn retrieve_study<'a>(
        &'a self,
        node: &'a str,
        study: &'a str,
    ) -> RemoteFuture<'a, RetrieveCounts>;
    /// C-STORE of stored instances (de-identified when `deid` says so) to a node; the
    /// number stored.
    fn send_to_node<'a>(
        &'a self,
        node: &'a str,
        store: std::sync::Arc<pacs_storage::Store>,
        instances: Vec<pacs_storage::InstanceRecord>,
        deid: Option<crate::export_stow::Deidentify>,
    ) -> RemoteFuture<'a, usize>;
}

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/remote/{node}/studies", get(find_studies))
        .route("/api/remote/{node}/retrieve", post(retrieve))
}

impl From<RemoteError> for ApiError {
    fn from(e: RemoteError) -> Self {
        match e {
            RemoteError::UnknownNode(_) => ApiError::Missing(e.to_string()),
            other => ApiError::BadGateway(other.to_string()),
        }
    }
}

fn remote(s: &ApiState) -> Result<&dyn RemoteArchives, ApiError> {
    s.remote
        .as_deref()
        .ok_or_else(|| ApiError::Missing("query/retrieve to other archives".into()))
}

/// Query parameters that become C-FIND keys.
const KEYS: &[(&str, Tag)] = &[
    ("PatientID", tags::PATIENT_ID),
    ("PatientName", tags::PATIENT_NAME),
    ("PatientBirthDate", tags::PATIENT_BIRTH_DATE),
    ("StudyDate", tags::STUDY_DATE),
    ("AccessionNumber", tags::ACCESSION_NUMBER),
    ("ModalitiesInStudy", tags::MODALITIES_IN_STUDY),
    ("StudyInstanceUID", tags::STUDY_INSTANCE_UID),
    ("StudyDescription", tags::STUDY_DESCRIPTION),
];

async fn find_studies(
    State(s): State<ApiState>,
    Path(node): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let mut keys = Vec::new();
    let mut limit = LIMIT_DEFAULT;
    for (k, v) in &q {
        if k == "limit" {
            limit = v
                .parse::<usize>()
                .map_err(|_| ApiError::BadRequest(format!("limit {v:?} is not a number")))?
                .clamp(1, LIMIT_MAX);
            continue;
        }
        let Some((_, tag)) = KEYS.iter().find(|(name, _)| name == k) else {
            let known: Vec<&str> = KEYS.iter().map(|(n, _)| *n).collect();
            return Err(ApiError::BadRequest(format!(
                "unknown key {k:?}; keys: {}, limit",
                known.join(", ")
            )));
        };
        if v.len() > 64 || v.chars().any(|c| c.is_control() || c == '\\') {
            return Err(ApiError::BadRequest(format!(
                "{k}: {v:?} is not a single value"
            )));
        }
        keys.push((*tag, v.clone()));
    }
    let matches = remote(&s)?.find_studies(&node, keys, limit).await?;
    let answer: Vec<Value> = matches.iter().map(dicom_json).collect();
    let mut r = Json(Value::Array(answer)).into_response();
    r.extensions_mut().insert(AuditNote {
        action: Some("remote.find"),
        detail: Some(format!("node {node}, {} matches", matches.len())),
        ..AuditNote::default()
    });
    Ok(r)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetrieveBody {
    study: String,
}

async fn retrieve(
    State(s): State<ApiState>,
    Path(node): Path<String>,
    Json(body): Json<RetrieveBody>,
) -> Result<Response, ApiError> {
    crate::dicomweb::check_uid(&body.study)?;
    let counts = remote(&s)?.retrieve_study(&node, &body.study).await?;
    let mut r = Json(json!({
        "status": counts.status,
        "completed": counts.completed,
        "failed": counts.failed,
        "warning": counts.warning,
        "comment": counts.comment,
    }))
    .into_response();
    r.extensions_mut().insert(AuditNote {
        action: Some("remote.retrieve"),
        study_uid: Some(body.study.clone()),
        detail: Some(format!(
            "from {node}: {} completed, {} failed, {} warnings",
            counts.completed, counts.failed, counts.warning
        )),
        ..AuditNote::default()
    });
    Ok(r)
}

/// A C-FIND match as DICOM JSON (text values; the VR from the element).
fn dicom_json(obj: &InMemDicomObject) -> Value {
    let mut out = serde_json::Map::new();
    for e in obj.iter() {
        let tag = e.header().tag;
        if tag == tags::QUERY_RETRIEVE_LEVEL || tag == tags::SPECIFIC_CHARACTER_SET {
            continue;
        }
        let vr = e.header().vr();
        let key = format!("{:04X}{:04X}", tag.group(), tag.element());
        let text = e
            .value()
            .to_str()
            .map(|v| v.into_owned())
            .unwrap_or_default();
        let values: Vec<Value> = text
            .trim_end_matches(['\0', ' '])
            .split('\\')
            .filter(|v| !v.is_empty())
            .map(|v| {
                let v = v.trim();
                match vr.to_string() {
                    "PN" => json!({"Alphabetic": v}),
                    "IS" => v
                        .parse::<i64>()
                        .map(Value::from)
                        .unwrap_or_else(|_| json!(v)),
                    _ => json!(v),
                }
            })
            .collect();
        let mut item = serde_json::Map::new();
        item.insert("vr".into(), json!(vr.to_string()));
        if !values.is_empty() {
            item.insert("Value".into(), Value::Array(values));
        }
        out.insert(key, Value::Object(item));
    }
    Value::Object(out)
}
