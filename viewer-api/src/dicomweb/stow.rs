//! STOW-RS (PS3.18 10.5): `multipart/related; type="application/dicom"` bodies, each part
//! streamed into a staged blob and stored through the same durable ingest path as C-STORE.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use futures_util::TryStreamExt;
use pacs_storage::{Expected, IngestError, IngestSource, Ingested, ReceiveError, Receiver};
use serde_json::{json, Map, Value as Json};

use axum::Extension;
use pacs_auth::role::Role;

use super::media::parse_content_type;
use super::{check_uid, dicom_json_response, Ctx};
use crate::access::guard::Grant;
use crate::error::ApiError;
use crate::reidentify::{reidentify_file, Reidentifier};
use crate::ApiState;

// Failure reasons (PS3.18 Table 10.5.3-2 / PS3.4 Annex B).
const PROCESSING_FAILURE: u16 = 0x0110;
const OUT_OF_RESOURCES: u16 = 0xA700;
const DOES_NOT_MATCH: u16 = 0xA900;
const CANNOT_UNDERSTAND: u16 = 0xC000;
// IOCM rejection notes, with the codes DIMSE answers (dcm4chee-arc's).
const PREVIOUSLY_REJECTED: u16 = 0xA771;
const REJECTION_FAILED: u16 = 0xA772;

/// One part's result.
enum PartOutcome {
    Stored(Ingested),
    Failed {
        sop_class: Option<String>,
        sop_instance: Option<String>,
        reason: u16,
        detail: String,
    },
}

fn failure_reason(e: &ReceiveError) -> u16 {
    let ReceiveError::Ingest(e) = e else {
        return if e.is_out_of_space() {
            OUT_OF_RESOURCES
        } else {
            PROCESSING_FAILURE
        };
    };
    match e {
        IngestError::Unparseable(_) | IngestError::InvalidUid { .. } => CANNOT_UNDERSTAND,
        IngestError::MissingAttribute(_) | IngestError::Mismatch { .. } => DOES_NOT_MATCH,
        IngestError::PreviouslyRejected { .. } => PREVIOUSLY_REJECTED,
        IngestError::RejectionRefused(_) => REJECTION_FAILED,
        // Disk full, or the shared database or bucket away for now: try again later.
        IngestError::Storage(s) if s.is_out_of_space() || s.is_unavailable() => OUT_OF_RESOURCES,
        IngestError::Storage(_) => PROCESSING_FAILURE,
    }
}

/// Check the request's Content-Type: multipart/related of application/dicom parts.
pub fn boundary_of(headers: &HeaderMap) -> Result<String, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::UnsupportedMediaType("no Content-Type".into()))?;
    let (mime, params) = parse_content_type(ct);
    if mime != "multipart/related" {
        return Err(ApiError::UnsupportedMediaType(format!(
            "STOW-RS takes multipart/related; type=\"application/dicom\", not {mime}"
        )));
    }
    if let Some(t) = params.get("type") {
        if !t.eq_ignore_ascii_case("application/dicom") {
            return Err(ApiError::UnsupportedMediaType(format!(
                "parts of type {t} are not supported; send application/dicom instances"
            )));
        }
    }
    params
        .get("boundary")
        .filter(|b| !b.is_empty())
        .cloned()
        .ok_or_else(|| ApiError::BadRequest("multipart Content-Type without a boundary".into()))
}

fn body_error(e: multer::Error, limit: u64) -> ApiError {
    match e {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            ApiError::PayloadTooLarge(format!("the request body exceeds {limit} bytes"))
        }
        other => ApiError::BadRequest(format!("malformed multipart body: {other}")),
    }
}

/// Stream one part to a staged blob and ingest it.
async fn store_part(
    ctx: &Ctx,
    mut field: multer::Field<'static>,
    expected_study: Option<&str>,
) -> Result<PartOutcome, ApiError> {
    let part_type = field
        .content_type()
        .map(|m| m.essence_str().to_ascii_lowercase());
    if let Some(t) = part_type.filter(|t| t != "application/dicom") {
        // Drain it: the rest of the body still has to be read.
        while field
            .chunk()
            .await
            .map_err(|e| body_error(e, ctx.max_stow_bytes))?
            .is_some()
        {}
        return Ok(PartOutcome::Failed {
            sop_class: None,
            sop_instance: None,
            reason: CANNOT_UNDERSTAND,
            detail: format!("part of type {t} is not application/dicom"),
        });
    }
    let blobs = ctx.store.blobs.clone();
    let mut receiver = tokio::task::spawn_blocking(move || Receiver::begin(blobs.as_ref()))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let written: Result<(), ApiError> = async {
        while let Some(chunk) = field
            .chunk()
            .await
            .map_err(|e| body_error(e, ctx.max_stow_bytes))?
        {
            receiver.write(&chunk)?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = written {
        receiver.abandon(ctx.store.blobs.as_ref());
        return Err(e);
    }
    let store = ctx.store.clone();
    let expected_study = expected_study.map(str::to_string);
    let project = ctx.reidentify.clone();
    let result = tokio::task::spawn_blocking(move || {
        let Some(project) = project else {
            let expected = Expected {
                study_instance_uid: expected_study,
                ..Expected::default()
            };
            return receiver.finish(&store, &IngestSource::Stow, &expected);
        };
        // A result on the pseudonymous study: the original study is the one to match.
        let study = match expected_study {
            Some(uid) => Some(
                Reidentifier::new(&store, &project)
                    .uid(&uid)
                    .map_err(IngestError::from)?
                    .unwrap_or(uid),
            ),
            None => None,
        };
        let expected = Expected {
            study_instance_uid: study,
            ..Expected::default()
        };
        let rewrite = |path: &std::path::Path| {
            reidentify_file(&store, &project, path).map(|changed| {
                if changed {
                    tracing::info!(project = %project, "AI result re-identified");
                }
            })
        };
        receiver.finish_rewritten(&store, &IngestSource::Stow, &expected, Some(&rewrite))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(match result {
        Ok(ingested) => PartOutcome::Stored(ingested),
        Err(e) => {
            tracing::warn!(error = %e, "STOW-RS part not stored");
            PartOutcome::Failed {
                sop_class: None,
                sop_instance: None,
                reason: failure_reason(&e),
                detail: e.to_string(),
            }
        }
    })
}

fn text(vr: &str, v: &str) -> Json {
    json!({ "vr": vr, "Value": [v] })
}

/// The STOW-RS response data set (PS3.18 10.5.3) and its HTTP status.
fn response_body(ctx: &Ctx, outcomes: &[PartOutcome], study: Option<&str>) -> (StatusCode, Json) {
    let mut referenced = Vec::new();
    let mut failed = Vec::new();
    for o in outcomes {
        match o {
            PartOutcome::Stored(i) => {
                let url = format!(
                    "{}/studies/{}/series/{}/instances/{}",
                    ctx.base, i.study_instance_uid, i.series_instance_uid, i.sop_instance_uid
                );
                referenced.push(json!({
                    "00081150": text("UI", &i.sop_class_uid),
                    "00081155": text("UI", &i.sop_instance_uid),
                    "00081190": text("UR", &url),
                }));
            }
            PartOutcome::Failed {
                sop_class,
                sop_instance,
                reason,
                detail,
            } => {
                let mut item = Map::new();
                if let Some(c) = sop_class {
                    item.insert("00081150".into(), text("UI", c));
                }
                if let Some(i) = sop_instance {
                    item.insert("00081155".into(), text("UI", i));
                }
                item.insert("00081197".into(), json!({ "vr": "US", "Value": [reason] }));
                // Error Comment, so a person reading the response learns why.
                item.insert(
                    "00000902".into(),
                    text("LO", &detail.chars().take(64).collect::<String>()),
                );
                failed.push(Json::Object(item));
            }
        }
    }
    let mut body = Map::new();
    let study_url = study.map(str::to_string).or_else(|| {
        outcomes.iter().find_map(|o| match o {
            PartOutcome::Stored(i) => Some(i.study_instance_uid.clone()),
            PartOutcome::Failed { .. } => None,
        })
    });
    if let Some(s) = study_url.filter(|_| !referenced.is_empty()) {
        body.insert(
            "00081190".into(),
            text("UR", &format!("{}/studies/{s}", ctx.base)),
        );
    }
    let only_out_of_resources = outcomes
        .iter()
        .all(|o| matches!(o, PartOutcome::Failed { reason, .. } if *reason == OUT_OF_RESOURCES));
    let status = match (referenced.is_empty(), failed.is_empty()) {
        (false, true) => StatusCode::OK,
        (false, false) => StatusCode::ACCEPTED,
        // Nothing stored for lack of resources: a client may send it all again later.
        (true, false) if only_out_of_resources => StatusCode::SERVICE_UNAVAILABLE,
        (true, _) => StatusCode::CONFLICT,
    };
    if !referenced.is_empty() {
        body.insert(
            "00081199".into(),
            json!({ "vr": "SQ", "Value": referenced }),
        );
    }
    if !failed.is_empty() {
        body.insert("00081198".into(), json!({ "vr": "SQ", "Value": failed }));
    }
    (status, Json::Object(body))
}

/// `POST /studies` and `POST /studies/{study}`.
pub async fn store(
    State(s): State<ApiState>,
    Extension(grant): Extension<Grant>,
    Path(p): Path<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let study = p.get("study").cloned();
    if let Some(uid) = &study {
        check_uid(uid)?;
    }
    let boundary = boundary_of(&headers)?;
    let mut ctx = Ctx::new(&s, &headers);
    if grant.principal.role == Role::AiService {
        ctx.reidentify = s.config.ai_project.clone();
    }
    let limit = ctx.max_stow_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge(format!(
            "the request body exceeds {limit} bytes"
        )));
    }
    let stream = body
        .into_data_stream()
        .map_err(|e| std::io::Error::other(e.to_string()));
    let constraints =
        multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(limit));
    let mut multipart = multer::Multipart::with_constraints(stream, boundary, constraints);
    let mut outcomes = Vec::new();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                // Parts completed before the error are stored and durable; say so.
                if !outcomes.is_empty() {
                    tracing::warn!(
                        stored = outcomes.len(),
                        "STOW-RS body broken after some parts"
                    );
                }
                return Err(body_error(e, limit));
            }
        };
        outcomes.push(store_part(&ctx, field, study.as_deref()).await?);
    }
    if outcomes.is_empty() {
        return Err(ApiError::BadRequest(
            "the multipart body has no parts".into(),
        ));
    }
    let (status, body) = response_body(&ctx, &outcomes, study.as_deref());
    Ok(dicom_json_response(status, &body))
}
