//! WADO-RS rendered and thumbnail resources (PS3.18 10.4.1.1.3, 8.3.5): consumer images of
//! studies, series, instances and frames, rendered on the rayon pool.

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use pacs_storage::audit::Interface;
use pacs_storage::records::first_value;
use pacs_storage::InstanceRecord;
use rayon::prelude::*;

use super::media::parse_accept;
use super::multipart::{self, StreamError};
use super::wado::{parse_frame_list, resolve, Resource};
use crate::error::ApiError;
use crate::render::{self, Format, RenderError, RenderOptions, Viewport};
use crate::{blocking, ApiState};

/// Images rendered at once for a multi-image answer (bounds memory, keeps the pool busy).
const BATCH: usize = 8;
/// Default thumbnail size and quality.
const THUMBNAIL_SIZE: u32 = 128;
const THUMBNAIL_QUALITY: u8 = 75;

/// The output the client accepts: an image format, and whether it asked for multipart.
fn negotiate(headers: &HeaderMap) -> Result<(Format, bool), ApiError> {
    let ranges = parse_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    for r in &ranges {
        match r.mime.as_str() {
            "*/*" | "image/*" => return Ok((Format::Jpeg, false)),
            "multipart/related" => {
                let part = r.part_type.as_deref().unwrap_or("image/jpeg");
                if let Some(f) = Format::from_media_type(part) {
                    return Ok((f, true));
                }
            }
            m => {
                if let Some(f) = Format::from_media_type(m) {
                    return Ok((f, false));
                }
            }
        }
    }
    Err(ApiError::NotAcceptable(
        "rendered images are available as image/jpeg, image/png or image/gif".into(),
    ))
}

fn render_error(e: RenderError, rec: &InstanceRecord) -> ApiError {
    let what = format!("instance {}: {e}", rec.sop_instance_uid);
    // The stored pixel data cannot be shown as an image (a codec feature we lack, data that
    // does not fit its attributes): that representation is not available, 406 with the
    // reason. Only failing to encode an image we made is our own fault.
    match e {
        RenderError::FrameOutOfRange { .. } => ApiError::BadRequest(what),
        RenderError::NoPixelData
        | RenderError::Decode { .. }
        | RenderError::Unsupported(_)
        | RenderError::Convert(_) => ApiError::NotAcceptable(what),
        RenderError::Encode(_) => ApiError::Internal(what),
    }
}

fn is_image(rec: &InstanceRecord) -> bool {
    !first_value(&rec.attributes, "00280010").is_empty()
}

fn number(rec: &InstanceRecord, tag: &str) -> i64 {
    first_value(&rec.attributes, tag)
        .trim()
        .parse()
        .unwrap_or(i64::MAX)
}

fn frames_of(rec: &InstanceRecord) -> u32 {
    first_value(&rec.attributes, "00280008")
        .trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

/// Image instances in viewing order: series by SeriesNumber (index order within), then
/// InstanceNumber.
fn viewing_order(
    index: &dyn pacs_storage::Index,
    mut recs: Vec<InstanceRecord>,
) -> Vec<InstanceRecord> {
    recs.retain(is_image);
    let mut series_number: HashMap<String, i64> = HashMap::new();
    for r in &recs {
        if !series_number.contains_key(&r.series_instance_uid) {
            let n = index
                .series(&r.series_instance_uid)
                .ok()
                .flatten()
                .map(|s| {
                    first_value(&s.attributes, "00200011")
                        .trim()
                        .parse()
                        .unwrap_or(i64::MAX)
                })
                .unwrap_or(i64::MAX);
            series_number.insert(r.series_instance_uid.clone(), n);
        }
    }
    recs.sort_by_key(|r| {
        (
            series_number
                .get(&r.series_instance_uid)
                .copied()
                .unwrap_or(i64::MAX),
            r.series_instance_uid.clone(),
            number(r, "00200013"),
        )
    });
    recs
}

/// The image instances of a resource in viewing order (404 when the resource is unknown).
async fn image_records(s: &ApiState, resource: Resource) -> Result<Vec<InstanceRecord>, ApiError> {
    let index = s.store.index.clone();
    blocking(move || {
        Ok(resolve(index.as_ref(), &resource).map(|r| viewing_order(index.as_ref(), r)))
    })
    .await?
}

/// One image rendered on the rendering pool.
pub(super) async fn render_single(
    s: &ApiState,
    rec: InstanceRecord,
    frame: u32,
    options: RenderOptions,
) -> Result<Vec<u8>, ApiError> {
    let st = s.clone();
    s.render
        .run(move || render_one(&st, &rec, frame, &options))
        .await
        .ok_or_else(|| ApiError::Internal("rendering failed".into()))?
}

fn render_one(
    s: &ApiState,
    rec: &InstanceRecord,
    frame: u32,
    options: &RenderOptions,
) -> Result<Vec<u8>, ApiError> {
    let obj = s.store.read_verified(rec, Interface::Http)?;
    render::render(&obj, frame, options).map_err(|e| render_error(e, rec))
}

pub(super) fn image_response(format: Format, body: Bytes, cacheable: bool) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.media_type()),
    );
    if cacheable {
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, max-age=3600"),
        );
    }
    r
}

fn with_warnings(mut r: Response, ignored: &[String]) -> Response {
    for name in ignored {
        if let Ok(v) = HeaderValue::from_str(&format!(
            "299 pacs \"rendering parameter {name} is not supported and was ignored\""
        )) {
            r.headers_mut().append(header::WARNING, v);
        }
    }
    r
}

/// `GET .../rendered` at study, series, instance or frames level.
pub async fn rendered(
    State(s): State<ApiState>,
    Path(p): Path<HashMap<String, String>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let resource = Resource::from_path(&p)?;
    let frames = p.get("frames").map(|f| parse_frame_list(f)).transpose()?;
    let (format, multipart_asked) = negotiate(&headers)?;
    let mut options = RenderOptions::new(format);
    let ignored = options
        .parse_query(q.as_deref().unwrap_or_default())
        .map_err(|e| ApiError::BadRequest(e.0))?;
    let single_instance = resource.instance.is_some();
    let records = image_records(&s, resource).await?;
    if records.is_empty() {
        return Err(ApiError::NotAcceptable(
            "nothing to render: no image instances".into(),
        ));
    }
    let items: Vec<(InstanceRecord, u32)> = match (&frames, single_instance) {
        (Some(list), _) => list.iter().map(|f| (records[0].clone(), *f)).collect(),
        _ => records
            .iter()
            .flat_map(|r| (1..=frames_of(r)).map(move |f| (r.clone(), f)))
            .collect(),
    };
    if items.len() == 1 && !multipart_asked {
        let (rec, frame) = items
            .into_iter()
            .next()
            .ok_or(ApiError::NotFound("frame"))?;
        let image = render_single(&s, rec, frame, options).await?;
        return Ok(with_warnings(
            image_response(format, Bytes::from(image), false),
            &ignored,
        ));
    }
    // Several images, rendered in parallel batches and streamed. The first batch is rendered
    // before answering, so a bad frame number or an undecodable instance is a 4xx/5xx with
    // its reason rather than a cut stream.
    let first_len = items.len().min(BATCH);
    let first_batch: Vec<(InstanceRecord, u32)> = items[..first_len].to_vec();
    let st = s.clone();
    let opts = options.clone();
    let first: Vec<Vec<u8>> = s
        .render
        .run(move || {
            first_batch
                .par_iter()
                .map(|(rec, frame)| render_one(&st, rec, *frame, &opts))
                .collect::<Result<Vec<_>, ApiError>>()
        })
        .await
        .ok_or_else(|| ApiError::Internal("rendering failed".into()))??;
    let st = s.clone();
    let response = multipart::stream(format.media_type(), move |w| {
        let send = |rec: &InstanceRecord, frame: u32, image: Vec<u8>| {
            w.begin(
                format.media_type(),
                Some(&format!("frame {frame} of {}", rec.sop_instance_uid)),
            )
            .and_then(|_| w.bytes(image))
        };
        for ((rec, frame), image) in items[..first_len].iter().zip(first) {
            send(rec, *frame, image)?;
        }
        for batch in items[first_len..].chunks(BATCH) {
            let images: Vec<Result<Vec<u8>, ApiError>> = st.render.install(|| {
                batch
                    .par_iter()
                    .map(|(rec, frame)| render_one(&st, rec, *frame, &options))
                    .collect()
            });
            for ((rec, frame), image) in batch.iter().zip(images) {
                send(rec, *frame, image.map_err(StreamError::part)?)?;
            }
        }
        Ok(())
    })
    .await;
    Ok(with_warnings(response, &ignored))
}

/// Most instances tried for a thumbnail before giving up (some may not be renderable).
const THUMBNAIL_TRIES: usize = 4;

/// The instances and frames that may stand for a resource in a thumbnail, best first: the
/// middle image of the first series (the middle frame of a multi-frame instance), then its
/// neighbours, then the other series.
fn representatives(
    records: &[InstanceRecord],
    frames: Option<&[u32]>,
) -> Vec<(InstanceRecord, u32)> {
    let Some(first) = records.first() else {
        return Vec::new();
    };
    let (mut series, others): (Vec<&InstanceRecord>, Vec<&InstanceRecord>) = records
        .iter()
        .partition(|r| r.series_instance_uid == first.series_instance_uid);
    let middle = series.len() / 2;
    series.rotate_left(middle);
    series
        .into_iter()
        .chain(others)
        .take(THUMBNAIL_TRIES)
        .map(|rec| {
            let frame = match frames {
                Some(list) => list.first().copied().unwrap_or(1),
                None => frames_of(rec).div_ceil(2),
            };
            (rec.clone(), frame)
        })
        .collect()
}

/// `GET .../thumbnail` at study, series, instance or frames level.
pub async fn thumbnail(
    State(s): State<ApiState>,
    Path(p): Path<HashMap<String, String>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let resource = Resource::from_path(&p)?;
    let frames = p.get("frames").map(|f| parse_frame_list(f)).transpose()?;
    let (format, _) = negotiate(&headers)?;
    let mut options = RenderOptions::new(format);
    options.quality = THUMBNAIL_QUALITY;
    let query = q.unwrap_or_default();
    let ignored = options
        .parse_query(&query)
        .map_err(|e| ApiError::BadRequest(e.0))?;
    if options.viewport.is_none() {
        options.viewport = Some(Viewport {
            width: THUMBNAIL_SIZE,
            height: THUMBNAIL_SIZE,
            source: None,
        });
    }
    let records = image_records(&s, resource).await?;
    let candidates = representatives(&records, frames.as_deref());
    let Some((rec, frame)) = candidates.first().cloned() else {
        return Err(ApiError::NotAcceptable(
            "nothing to show: no image instances".into(),
        ));
    };
    let variant = format!("{}|{frame}|{query}", format.media_type());
    if let Some(hit) = s
        .thumbnails
        .get(&rec.sop_instance_uid, rec.received_ms, &variant)
    {
        return Ok(with_warnings(image_response(format, hit, true), &ignored));
    }
    let st = s.clone();
    let image = s
        .render
        .run(move || {
            // The first that renders; the first error when none does.
            let mut first_error = None;
            for (rec, frame) in &candidates {
                match render_one(&st, rec, *frame, &options) {
                    Ok(image) => return Ok(image),
                    Err(e) => {
                        tracing::warn!(sop = %rec.sop_instance_uid, error = %e, "thumbnail candidate not renderable");
                        first_error.get_or_insert(e);
                    }
                }
            }
            Err(first_error.unwrap_or(ApiError::NotFound("image")))
        })
        .await
        .ok_or_else(|| ApiError::Internal("rendering failed".into()))??;
    let image = Bytes::from(image);
    s.thumbnails.put(
        &rec.sop_instance_uid,
        rec.received_ms,
        &variant,
        image.clone(),
    );
    Ok(with_warnings(image_response(format, image, true), &ignored))
}
