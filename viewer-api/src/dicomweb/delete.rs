//! `DELETE` of a study, series or instance: the index change is one atomic batch; the blob
//! files go after it commits (a crash in between leaves unreferenced files, never records
//! pointing at missing files).

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use pacs_storage::rejection_admin::{self, Selection};

use super::wado::{resolve, Resource};
use crate::error::ApiError;
use crate::{blocking, ApiState};

pub async fn delete(
    State(s): State<ApiState>,
    Path(p): Path<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    // Admin only: any stored key, so that a record with a malformed UID can be removed.
    let resource = Resource::from_path_any_key(&p)?;
    let store = s.store.clone();
    let thumbnails = s.thumbnails.clone();
    // A whole study goes with the instances rejection notes hid in it.
    let whole_study = resource.series.is_none() && resource.instance.is_none();
    let removed = blocking(move || {
        Ok((|| {
            let hidden = if whole_study {
                let selection = Selection {
                    study_instance_uid: Some(resource.study.clone()),
                    ..Selection::default()
                };
                rejection_admin::purge(&store, &selection)?.len()
            } else {
                0
            };
            let records = match resolve(store.index.as_ref(), &resource) {
                Err(ApiError::NotFound(_)) if hidden > 0 => Vec::new(),
                other => other?,
            };
            let uids: Vec<String> = records.into_iter().map(|r| r.sop_instance_uid).collect();
            let removed = store.index.delete_instances(&uids)?;
            thumbnails.evict(&uids);
            for blob in removed.iter().flat_map(|r| r.all_blobs()) {
                if let Err(e) = store.blobs.delete(blob) {
                    tracing::warn!(%blob, error = %e, "deleted instance's file not removed");
                }
            }
            Ok::<_, ApiError>(removed.len() + hidden)
        })())
    })
    .await??;
    tracing::info!(instances = removed, "deleted over DICOMweb");
    Ok(StatusCode::NO_CONTENT.into_response())
}
