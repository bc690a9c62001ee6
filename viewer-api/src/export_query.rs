//! `POST /api/export?profile=NAME&project=P&<QIDO-RS study keys>`: every study the query
//! matches (as `GET /dicom-web/studies` would list them), de-identified together: one zip,
//! or sent to the JSON body's target (`{"stow": URL}` or `{"to": AE}`) as the one-study
//! export does. At most 100 studies: a larger selection is refused with the count, so a
//! query that matches the whole archive is not exported by mistake.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use pacs_storage::query::{Level, QueryError};
use pacs_storage::records::first_value;

use crate::access::guard::AuditNote;
use crate::dicomweb::qido::Search;
use crate::error::ApiError;
use crate::export_api::{export_studies, profile_named, TargetBody};
use crate::{off_runtime, ApiState};

/// Most studies one export takes.
const MAX_STUDIES: usize = 100;

pub fn routes() -> Router<ApiState> {
    Router::new().route("/api/export", post(export_query))
}

async fn export_query(
    State(s): State<ApiState>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (mut profile, mut project, mut keys) = (None, None, Vec::new());
    for (name, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "profile" => profile = Some(value.into_owned()),
            "project" => project = Some(value.into_owned()),
            "limit" | "offset" | "includefield" | "fuzzymatching" => {
                return Err(ApiError::BadRequest(format!(
                    "{name} has no meaning for an export: name the studies by their keys"
                )))
            }
            _ => keys.push((name.into_owned(), value.into_owned())),
        }
    }
    if keys.is_empty() {
        return Err(ApiError::BadRequest(
            "name the studies to export with QIDO-RS study keys (PatientID=..., StudyDate=...)"
                .into(),
        ));
    }
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&keys)
        .finish();
    let search = Search::parse(Level::Study, &[], &query, s.config.match_options)?;
    let target = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let b: TargetBody = serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("export target: {e}")))?;
        Some(b.target()?)
    };
    let name = profile.unwrap_or_else(|| "basic".into());
    let deid = profile_named(&s, &name)?;
    let project = project.unwrap_or_else(|| "default".into());
    let st = s.clone();
    let studies = off_runtime(move || {
        let mut uids = Vec::new();
        st.store
            .index
            .find(&search.query, &mut |m| {
                uids.push(first_value(&m.attributes, "0020000D").to_string());
                uids.len() <= MAX_STUDIES
            })
            .map_err(|e| match e {
                QueryError::Storage(s) => ApiError::from(s),
                other => ApiError::BadRequest(other.to_string()),
            })?;
        Ok::<_, ApiError>(uids)
    })
    .await?;
    if studies.len() > MAX_STUDIES {
        return Err(ApiError::BadRequest(format!(
            "the query matches more than {MAX_STUDIES} studies; narrow it"
        )));
    }
    let count = studies.len();
    let mut r = export_studies(&s, studies, &name, deid, &project, target).await?;
    if let Some(note) = r.extensions_mut().get_mut::<AuditNote>() {
        let detail = note.detail.take().unwrap_or_default();
        note.detail = Some(format!("{count} studies matching {query}: {detail}"));
    }
    Ok(r)
}
