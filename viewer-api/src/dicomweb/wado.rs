//! WADO-RS (PS3.18 10.4): instances, metadata, frames and bulk data of stored instances.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use dicom_core::value::Value;
use dicom_core::Tag;
use dicom_object::InMemDicomObject;
use pacs_storage::audit::Interface;
use pacs_storage::part10::{file_header, read_instance, FileMetaFields};
use pacs_storage::transcode::{can_transcode, encode_as, is_native};
use pacs_storage::InstanceRecord;
use serde_json::Value as Json;

use super::json::{self, BulkLinks};
use super::media::{frame_media_type, parse_accept, MediaRange, EXPLICIT_LE};
use super::multipart::{self, PartWriter, StreamError};
use super::{check_uid, dicom_json_response, Ctx};
use crate::error::ApiError;
use crate::render::frames::{self as pixels, FrameError};
use crate::{blocking, ApiState};

/// A study, series or instance named by the request path.
#[derive(Debug, Clone)]
pub struct Resource {
    pub study: String,
    pub series: Option<String>,
    pub instance: Option<String>,
}

impl Resource {
    pub fn from_path(p: &HashMap<String, String>) -> Result<Resource, ApiError> {
        Self::from_path_checked(p, check_uid)
    }

    /// As [`Resource::from_path`], for administrators: any stored key (see
    /// [`super::check_record_key`]).
    pub fn from_path_any_key(p: &HashMap<String, String>) -> Result<Resource, ApiError> {
        Self::from_path_checked(p, super::check_record_key)
    }

    fn from_path_checked(
        p: &HashMap<String, String>,
        check: fn(&str) -> Result<(), ApiError>,
    ) -> Result<Resource, ApiError> {
        let get = |k: &str| -> Result<Option<String>, ApiError> {
            p.get(k).map(|v| check(v).map(|_| v.clone())).transpose()
        };
        Ok(Resource {
            study: get("study")?.ok_or(ApiError::NotFound("study"))?,
            series: get("series")?,
            instance: get("instance")?,
        })
    }

    fn what(&self) -> &'static str {
        match (&self.series, &self.instance) {
            (_, Some(_)) => "instance",
            (Some(_), None) => "series",
            _ => "study",
        }
    }
}

/// The stored instances of a resource, in series then instance order; 404 when none.
pub fn resolve(
    index: &dyn pacs_storage::Index,
    r: &Resource,
) -> Result<Vec<InstanceRecord>, ApiError> {
    let mut out = Vec::new();
    if let Some(uid) = &r.instance {
        if let Some(rec) = index.instance(uid)? {
            let series_ok = r
                .series
                .as_ref()
                .is_none_or(|s| *s == rec.series_instance_uid);
            if rec.study_instance_uid == r.study && series_ok {
                out.push(rec);
            }
        }
        return non_empty(out, r);
    }
    let series_list = match &r.series {
        Some(s) => match index.series(s)? {
            Some(rec) if rec.study_instance_uid == r.study => vec![s.clone()],
            _ => Vec::new(),
        },
        None => index.series_uids(&r.study)?,
    };
    for series in series_list {
        out.extend(index.series_instances(&series)?);
    }
    non_empty(out, r)
}

fn non_empty(v: Vec<InstanceRecord>, r: &Resource) -> Result<Vec<InstanceRecord>, ApiError> {
    if v.is_empty() {
        Err(ApiError::NotFound(r.what()))
    } else {
        Ok(v)
    }
}

fn instance_url(base: &str, rec: &InstanceRecord) -> String {
    format!(
        "{base}/studies/{}/series/{}/instances/{}",
        rec.study_instance_uid, rec.series_instance_uid, rec.sop_instance_uid
    )
}

/// ETag of an instance representation: changes when the instance is replaced or corrected.
fn etag(rec: &InstanceRecord, variant: &str) -> String {
    format!(
        "\"{:x}-{:x}-{}-{variant}\"",
        rec.received_ms,
        rec.size,
        rec.versions.len()
    )
}

/// A 304 response when the client's copy (If-None-Match) is current.
fn not_modified(headers: &HeaderMap, tag: &str) -> Option<Response> {
    let current = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    if current {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        set_cache_headers(&mut r, tag);
        return Some(r);
    }
    None
}

fn set_cache_headers(r: &mut Response, tag: &str) {
    if let Ok(v) = HeaderValue::from_str(tag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    // Private: it is patient data. Revalidated on every use (a 304 when unchanged): an
    // instance can be corrected, replaced or deleted, and a viewer must show that at once.
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
}

/// Which transfer syntax instances are sent in.
#[derive(Debug, Clone, PartialEq)]
enum Syntax {
    AsStored,
    Exactly(String),
}

impl Syntax {
    fn from_param(p: Option<&str>) -> Syntax {
        match p {
            Some("*") => Syntax::AsStored,
            Some(ts) => Syntax::Exactly(ts.to_string()),
            None => Syntax::Exactly(EXPLICIT_LE.into()),
        }
    }

    fn target<'a>(&'a self, stored: &'a str) -> &'a str {
        match self {
            Syntax::AsStored => stored,
            Syntax::Exactly(t) => t,
        }
    }
}

/// The transfer syntax of the best acceptable `multipart/related; type="application/dicom"`
/// range for which every instance can be sent; 406 with the reason otherwise.
fn negotiate_instances(
    ranges: &[MediaRange],
    records: &[InstanceRecord],
) -> Result<Syntax, ApiError> {
    let mut refusals = Vec::new();
    for r in ranges {
        let dicom_parts = match r.mime.as_str() {
            "multipart/related" => r
                .part_type
                .as_deref()
                .is_none_or(|t| t == "application/dicom"),
            "*/*" | "multipart/*" | "application/dicom" => true,
            _ => false,
        };
        if !dicom_parts {
            continue;
        }
        let syntax = Syntax::from_param(r.transfer_syntax.as_deref());
        match records.iter().find(|rec| {
            !can_transcode(
                &rec.transfer_syntax_uid,
                syntax.target(&rec.transfer_syntax_uid),
            )
        }) {
            None => return Ok(syntax),
            Some(rec) => refusals.push(format!(
                "instance {} is stored as {} and cannot be converted to {}",
                rec.sop_instance_uid,
                rec.transfer_syntax_uid,
                syntax.target(&rec.transfer_syntax_uid)
            )),
        }
    }
    Err(ApiError::NotAcceptable(if refusals.is_empty() {
        "instances are sent as multipart/related; type=\"application/dicom\"".into()
    } else {
        refusals.join("; ")
    }))
}

/// An instance ready to be sent: the stored file, or its re-encoded bytes.
enum Prepared {
    Stored,
    Encoded { head: Vec<u8>, dataset: Vec<u8> },
}

/// Re-encode an instance for `target` when it is not stored that way (CPU-heavy: done ahead of
/// the writer, see `write_instances`).
fn prepare(ctx: &Ctx, rec: &InstanceRecord, target: &str) -> Result<Prepared, StreamError> {
    if target == rec.transfer_syntax_uid {
        return Ok(Prepared::Stored);
    }
    let fail = |e: Box<dyn std::error::Error + Send + Sync>| {
        StreamError::instance(&rec.sop_instance_uid, e)
    };
    let obj = ctx
        .store
        .read_verified(rec, Interface::Http)
        .map_err(|e| fail(e.into()))?;
    let dataset = encode_as(obj, &rec.transfer_syntax_uid, target).map_err(|e| fail(e.into()))?;
    let head = file_header(&FileMetaFields {
        sop_class_uid: &rec.sop_class_uid,
        sop_instance_uid: &rec.sop_instance_uid,
        transfer_syntax_uid: target,
        source_ae_title: None,
    })
    .map_err(|e| fail(e.into()))?;
    Ok(Prepared::Encoded { head, dataset })
}

/// Write one prepared instance as a part.
fn send_instance(
    ctx: &Ctx,
    w: &PartWriter,
    rec: &InstanceRecord,
    target: &str,
    prepared: Prepared,
) -> Result<(), StreamError> {
    let location = instance_url(&ctx.base, rec);
    let part_type = format!("application/dicom; transfer-syntax={target}");
    match prepared {
        Prepared::Stored => {
            let reader = ctx
                .store
                .open_verified(rec, Interface::Http)
                .map_err(|e| StreamError::instance(&rec.sop_instance_uid, e))?;
            w.begin(&part_type, Some(&location))?;
            w.copy_from(reader)
        }
        Prepared::Encoded { head, dataset } => {
            w.begin(&part_type, Some(&location))?;
            w.bytes(head)?;
            w.bytes(dataset)
        }
    }
}

/// Send instances in order. When some must be re-encoded, a second thread prepares the next
/// ones while this one writes, so decoding overlaps with sending (a few instances ahead).
fn write_instances(
    ctx: &Ctx,
    w: &PartWriter,
    records: &[InstanceRecord],
    syntax: &Syntax,
) -> Result<(), StreamError> {
    let target = |rec: &InstanceRecord| syntax.target(&rec.transfer_syntax_uid).to_string();
    if records.iter().all(|r| target(r) == r.transfer_syntax_uid) {
        for rec in records {
            send_instance(ctx, w, rec, &target(rec), Prepared::Stored)?;
        }
        return Ok(());
    }
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Prepared, StreamError>>(2);
        scope.spawn(move || {
            for rec in records {
                if tx.send(prepare(ctx, rec, &target(rec))).is_err() {
                    return;
                }
            }
        });
        for rec in records {
            let prepared = rx.recv().map_err(|_| {
                StreamError::instance(&rec.sop_instance_uid, "instance preparation stopped")
            })??;
            send_instance(ctx, w, rec, &target(rec), prepared)?;
        }
        Ok(())
    })
}

/// `GET /studies/{study}[/series/{series}[/instances/{instance}]]`
pub async fn retrieve(
    State(s): State<ApiState>,
    Path(p): Path<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let resource = Resource::from_path(&p)?;
    let ctx = Ctx::new(&s, &headers);
    let index = s.store.index.clone();
    let r = resource.clone();
    let records = blocking(move || Ok(resolve(index.as_ref(), &r))).await??;
    let ranges = parse_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let syntax = negotiate_instances(&ranges, &records)?;
    let single_tag = (resource.instance.is_some()).then(|| {
        etag(
            &records[0],
            &format!("dcm-{}", syntax.target(&records[0].transfer_syntax_uid)),
        )
    });
    if let Some(tag) = &single_tag {
        if let Some(not_modified) = not_modified(&headers, tag) {
            return Ok(not_modified);
        }
    }
    let mut response = multipart::stream("application/dicom", move |w| {
        write_instances(&ctx, w, &records, &syntax)
    })
    .await;
    if let Some(tag) = &single_tag {
        set_cache_headers(&mut response, tag);
    }
    Ok(response)
}

/// Metadata of one instance as DICOM JSON, pixel data and large values as BulkDataURIs.
fn instance_metadata(ctx: &Ctx, rec: &InstanceRecord) -> Result<Json, ApiError> {
    let obj = read_instance(ctx.store.blobs.as_ref(), &rec.blob, true)?;
    let base = instance_url(&ctx.base, rec);
    let mut out = json::dataset(&obj, &BulkLinks { base: &base });
    // Reading stopped before Pixel Data: link it when the instance is an image.
    if obj.get(dicom_dictionary_std::tags::ROWS).is_some() {
        let wide = obj
            .get(dicom_dictionary_std::tags::BITS_ALLOCATED)
            .and_then(|e| e.value().to_int::<u16>().ok())
            .is_some_and(|b| b > 8);
        let vr = if is_native(&rec.transfer_syntax_uid) && wide {
            "OW"
        } else {
            "OB"
        };
        if let Json::Object(map) = &mut out {
            map.insert(
                "7FE00010".into(),
                serde_json::json!({ "vr": vr, "BulkDataURI": format!("{base}/bulk/7FE00010") }),
            );
        }
    }
    Ok(out)
}

/// `GET .../metadata` at study, series or instance level.
pub async fn metadata(
    State(s): State<ApiState>,
    Path(p): Path<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    super::media::require_json(&headers, "metadata")?;
    let resource = Resource::from_path(&p)?;
    let ctx = Ctx::new(&s, &headers);
    let single = resource.instance.is_some();
    let (body, tag) = blocking(move || {
        Ok((|| {
            let records = resolve(ctx.store.index.as_ref(), &resource)?;
            let tag = single.then(|| etag(&records[0], "json"));
            let items = records
                .iter()
                .map(|rec| instance_metadata(&ctx, rec))
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, ApiError>((Json::Array(items), tag))
        })())
    })
    .await??;
    if let Some(tag) = &tag {
        if let Some(not_modified) = not_modified(&headers, tag) {
            return Ok(not_modified);
        }
    }
    let mut response = dicom_json_response(StatusCode::OK, &body);
    if let Some(tag) = &tag {
        set_cache_headers(&mut response, tag);
    }
    Ok(response)
}

/// How frames are sent: as stored or decoded, and the part media type.
#[derive(Debug, Clone)]
struct FrameSyntax {
    decode: bool,
    part_type: String,
}

fn negotiate_frames(ranges: &[MediaRange], stored: &str) -> Result<FrameSyntax, ApiError> {
    let native = is_native(stored);
    let stored_media = frame_media_type(stored);
    for r in ranges {
        let part = match r.mime.as_str() {
            "multipart/related" => r
                .part_type
                .clone()
                .unwrap_or_else(|| "application/octet-stream".into()),
            "*/*" | "multipart/*" => "application/octet-stream".into(),
            _ => continue,
        };
        let ts = r.transfer_syntax.as_deref();
        // A wildcard part type (dicomweb-client asks `type="*/*"` by default) takes what
        // octet-stream gets (uncompressed unless `transfer-syntax=*`), else the stored bitstream.
        let wildcard = part == "*/*" || (part == "image/*" && !native);
        if wildcard {
            let as_octets = MediaRange {
                part_type: Some("application/octet-stream".into()),
                ..r.clone()
            };
            if let Ok(syntax) = negotiate_frames(std::slice::from_ref(&as_octets), stored) {
                return Ok(syntax);
            }
            if !native && ts.is_none_or(|t| t == "*" || t == stored) {
                return Ok(FrameSyntax {
                    decode: false,
                    part_type: format!("{stored_media}; transfer-syntax={stored}"),
                });
            }
            continue;
        }
        if part == "application/octet-stream" {
            match ts {
                // As stored: native frames, or the compressed bitstream labelled with its syntax.
                Some("*") => {
                    return Ok(FrameSyntax {
                        decode: false,
                        part_type: format!(
                            "application/octet-stream; transfer-syntax={}",
                            if native { EXPLICIT_LE } else { stored }
                        ),
                    })
                }
                None | Some(EXPLICIT_LE) if native || can_transcode(stored, EXPLICIT_LE) => {
                    return Ok(FrameSyntax {
                        decode: !native,
                        part_type: format!(
                            "application/octet-stream; transfer-syntax={EXPLICIT_LE}"
                        ),
                    });
                }
                Some(t) if t == stored => {
                    return Ok(FrameSyntax {
                        decode: false,
                        part_type: format!("application/octet-stream; transfer-syntax={stored}"),
                    })
                }
                _ => {}
            }
        } else if !native && part == stored_media && ts.is_none_or(|t| t == "*" || t == stored) {
            return Ok(FrameSyntax {
                decode: false,
                part_type: format!("{stored_media}; transfer-syntax={stored}"),
            });
        }
    }
    Err(ApiError::NotAcceptable(format!(
        "frames of this instance (stored as {stored}) are available as application/octet-stream{}",
        if native {
            String::new()
        } else {
            format!(" or {stored_media}")
        }
    )))
}

/// Parse `1,3,5` (1-based frame numbers, no duplicates: PS3.18 8.3.3.1.3). Without
/// duplicates the list is never longer than the frame count once each number is checked
/// against it, so a short URL cannot ask for the same large frame thousands of times.
pub(super) fn parse_frame_list(text: &str) -> Result<Vec<u32>, ApiError> {
    let frames: Vec<u32> = text
        .split(',')
        .map(|f| f.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| {
            ApiError::BadRequest(format!(
                "frame list {text:?} is not comma-separated numbers"
            ))
        })?;
    if frames.is_empty() || frames.contains(&0) {
        return Err(ApiError::BadRequest("frame numbers start at 1".into()));
    }
    let mut seen = std::collections::HashSet::with_capacity(frames.len());
    if let Some(dup) = frames.iter().find(|f| !seen.insert(**f)) {
        return Err(ApiError::BadRequest(format!(
            "frame {dup} is listed more than once"
        )));
    }
    Ok(frames)
}

/// A frame that could not be produced: the client's mistake (4xx), a syntax we cannot decode
/// (406), or stored data we cannot read (500); each names the transfer syntax.
fn frame_error_for(e: FrameError, transfer_syntax: &str) -> ApiError {
    match e {
        FrameError::OutOfRange { .. } | FrameError::NoPixelData => frame_error(e),
        other => ApiError::NotAcceptable(format!("stored as {transfer_syntax}: {other}")),
    }
}

/// Frames the client asked for that do not exist are its mistake (400); stored pixel data
/// that cannot be cut into frames or decoded is a representation we cannot give (406, with
/// the reason), never a 500.
fn frame_error(e: FrameError) -> ApiError {
    match e {
        FrameError::OutOfRange { .. } | FrameError::NoPixelData => {
            ApiError::BadRequest(e.to_string())
        }
        other => ApiError::NotAcceptable(other.to_string()),
    }
}

/// Send frames of one instance (all when `frames` is None).
async fn send_frames(
    s: ApiState,
    resource: Resource,
    frames: Option<Vec<u32>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let whole_value = frames.is_none();
    let ctx = Ctx::new(&s, &headers);
    let index = s.store.index.clone();
    let r = resource.clone();
    let rec = blocking(move || Ok(resolve(index.as_ref(), &r)))
        .await??
        .remove(0);
    let ranges = parse_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let syntax = negotiate_frames(&ranges, &rec.transfer_syntax_uid)?;
    let list = frames.as_ref().map_or("all".to_string(), |f| {
        f.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
    });
    let tag = etag(&rec, &format!("frames-{list}-{}", syntax.part_type.len()));
    if let Some(not_modified) = not_modified(&headers, &tag) {
        return Ok(not_modified);
    }
    // Read, check and produce the first frame before answering, so a bad frame number or an
    // undecodable instance is a 4xx/5xx with its reason, not a cut stream.
    let store = s.store.clone();
    let rec2 = rec.clone();
    let decode = syntax.decode;
    let (obj, frames, first) = blocking(move || {
        Ok((|| {
            let obj = store.read_verified(&rec2, Interface::Http)?;
            if obj.get(dicom_dictionary_std::tags::PIXEL_DATA).is_none() {
                return Err(frame_error(FrameError::NoPixelData));
            }
            let frames = frames.unwrap_or_else(|| (1..=pixels::frame_count(&obj)).collect());
            pixels::check_frames(&obj, &frames).map_err(frame_error)?;
            let first = if decode {
                pixels::decoded_frame(&obj, frames[0], &rec2.transfer_syntax_uid)
            } else {
                pixels::stored_frame(&obj, frames[0])
            }
            .map_err(|e| frame_error_for(e, &rec2.transfer_syntax_uid))?;
            Ok::<_, ApiError>((obj, frames, first))
        })())
    })
    .await??;
    let obj = Arc::new(obj);
    let stored = rec.transfer_syntax_uid.clone();
    let base = instance_url(&ctx.base, &rec);
    let part_type_main = syntax
        .part_type
        .split(';')
        .next()
        .unwrap_or("application/octet-stream")
        .to_string();
    // Bulk data of Pixel Data in native form is one value (one part); frames are one part each,
    // as is each compressed frame.
    let one_part = whole_value && (syntax.decode || is_native(&stored));
    let mut response = multipart::stream(&part_type_main, move |w| {
        let mut first = Some(first);
        for (i, f) in frames.iter().enumerate() {
            let bytes = match first.take() {
                Some(b) => b,
                None => if syntax.decode {
                    pixels::decoded_frame(&obj, *f, &stored)
                } else {
                    pixels::stored_frame(&obj, *f)
                }
                .map_err(StreamError::part)?,
            };
            if !one_part {
                w.begin(&syntax.part_type, Some(&format!("{base}/frames/{f}")))?;
            } else if i == 0 {
                w.begin(&syntax.part_type, Some(&format!("{base}/bulk/7FE00010")))?;
            }
            w.bytes(bytes)?;
        }
        Ok(())
    })
    .await;
    set_cache_headers(&mut response, &tag);
    Ok(response)
}

/// `GET .../instances/{instance}/frames/{frames}`
pub async fn frames(
    State(s): State<ApiState>,
    Path(p): Path<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let resource = Resource::from_path(&p)?;
    let list = parse_frame_list(p.get("frames").map(String::as_str).unwrap_or_default())?;
    send_frames(s, resource, Some(list), headers).await
}

/// Parse a bulk data path `GGGGEEEE[/item/GGGGEEEE]...`.
fn parse_bulk_path(path: &str) -> Result<Vec<(Tag, Option<usize>)>, ApiError> {
    let bad = || ApiError::BadRequest(format!("bulk data path {path:?} is not tag[/item/tag]..."));
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut out = Vec::new();
    for chunk in parts.chunks(2) {
        let t = chunk[0];
        if t.len() != 8 {
            return Err(bad());
        }
        let n = u32::from_str_radix(t, 16).map_err(|_| bad())?;
        let item = chunk
            .get(1)
            .map(|i| i.parse::<usize>().map_err(|_| bad()))
            .transpose()?;
        out.push((Tag((n >> 16) as u16, (n & 0xFFFF) as u16), item));
    }
    if out.is_empty() || out.last().is_some_and(|(_, item)| item.is_some()) {
        return Err(bad());
    }
    Ok(out)
}

/// The bytes of the element at `path` (little endian for multi-byte values).
fn bulk_value(obj: &InMemDicomObject, path: &[(Tag, Option<usize>)]) -> Option<Vec<u8>> {
    let (tag, item) = path.first()?;
    let elem = obj.get(*tag)?;
    match (elem.value(), item) {
        (Value::Sequence(seq), Some(i)) => bulk_value(seq.items().get(*i)?, &path[1..]),
        (Value::Primitive(p), None) => Some(p.to_bytes().to_vec()),
        _ => None,
    }
}

/// `GET .../instances/{instance}/bulk/{path}`: pixel data as frames, other values as one part.
pub async fn bulk(
    State(s): State<ApiState>,
    Path(p): Path<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let resource = Resource::from_path(&p)?;
    let path = parse_bulk_path(p.get("path").map(String::as_str).unwrap_or_default())?;
    if path.len() == 1 && path[0].0 == dicom_dictionary_std::tags::PIXEL_DATA {
        return send_frames(s, resource, None, headers).await;
    }
    let store = s.store.clone();
    let bytes = blocking(move || {
        Ok((|| {
            let rec = resolve(store.index.as_ref(), &resource)?.remove(0);
            let obj = store.read_verified(&rec, Interface::Http)?;
            bulk_value(&obj, &path).ok_or(ApiError::NotFound("bulk data element"))
        })())
    })
    .await??;
    Ok(multipart::stream("application/octet-stream", move |w| {
        w.begin("application/octet-stream", None)?;
        w.bytes(bytes)
    })
    .await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_negotiation_follows_accept() {
        let jpeg = "1.2.840.10008.1.2.4.70";
        let ranges = parse_accept(Some(
            "multipart/related; type=\"application/octet-stream\"; transfer-syntax=*",
        ));
        let f = negotiate_frames(&ranges, jpeg).expect("as stored");
        assert!(!f.decode);
        assert!(f.part_type.ends_with(jpeg));
        let f = negotiate_frames(&parse_accept(None), jpeg).expect("default");
        assert!(f.decode);
        let f = negotiate_frames(
            &parse_accept(Some("multipart/related; type=image/jpeg")),
            jpeg,
        )
        .expect("jpeg");
        assert_eq!(f.part_type, format!("image/jpeg; transfer-syntax={jpeg}"));
        assert!(negotiate_frames(
            &parse_accept(Some("multipart/related; type=image/jls")),
            jpeg
        )
        .is_err());
        assert!(negotiate_frames(
            &parse_accept(Some("multipart/related; type=application/octet-stream")),
            "1.2.840.10008.1.2.4.100"
        )
        .is_err());
        // dicomweb-client's default: any part type. Uncompressed where we can decode, the
        // stored bitstream where we cannot (MPEG-2 here), as stored with transfer-syntax=*.
        let any = parse_accept(Some("multipart/related; type=\"*/*\""));
        let f = negotiate_frames(&any, jpeg).expect("any, jpeg");
        assert!(f.decode);
        assert!(f.part_type.ends_with(EXPLICIT_LE), "{}", f.part_type);
        let f = negotiate_frames(&any, EXPLICIT_LE).expect("any, native");
        assert!(!f.decode);
        let mpeg = "1.2.840.10008.1.2.4.100";
        let f = negotiate_frames(&any, mpeg).expect("any, undecodable");
        assert!(!f.decode && f.part_type.ends_with(mpeg), "{}", f.part_type);
        let f = negotiate_frames(
            &parse_accept(Some("multipart/related; type=\"*/*\"; transfer-syntax=*")),
            jpeg,
        )
        .expect("any, as stored");
        assert!(!f.decode && f.part_type.ends_with(jpeg), "{}", f.part_type);
    }

    #[test]
    fn frame_lists_and_bulk_paths_are_checked() {
        assert_eq!(parse_frame_list("1,3,5").expect("list"), [1, 3, 5]);
        assert!(parse_frame_list("0").is_err());
        assert!(parse_frame_list("1,x").is_err());
        assert!(parse_frame_list("1,2,1").is_err(), "duplicates");
        assert_eq!(parse_bulk_path("7FE00010").expect("pixel").len(), 1);
        assert_eq!(
            parse_bulk_path("00540016/0/00181074")
                .expect("nested")
                .len(),
            2
        );
        assert!(parse_bulk_path("00540016/0").is_err());
        assert!(parse_bulk_path("../etc").is_err());
    }
}
