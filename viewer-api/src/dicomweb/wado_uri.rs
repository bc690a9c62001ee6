//! WADO-URI (PS3.18 9, formerly Part 18's "Web Access to DICOM Objects"):
//! `GET /wado?requestType=WADO&studyUID=&seriesUID=&objectUID=&contentType=`, what EHR links
//! and older viewers still use. One instance, as a Part 10 file (`application/dicom`, with
//! `transferSyntax`) or as a rendered image (`image/jpeg` by default, `image/png`,
//! `image/gif`, with `frameNumber`, `rows`, `columns`, `windowCenter`/`windowWidth`,
//! `imageQuality`).

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use dicom_pixeldata::VoiLutFunction;
use pacs_storage::audit::Interface;
use pacs_storage::part10::{file_header, FileMetaFields};
use pacs_storage::transcode::{can_transcode, encode_as};
use pacs_storage::InstanceRecord;

use super::media::EXPLICIT_LE;
use super::multipart;
use super::rendered::{image_response, render_single};
use super::wado::{resolve, Resource};
use crate::error::ApiError;
use crate::render::{Format, RenderOptions, Viewport, Window, MAX_VIEWPORT};
use crate::{blocking, off_runtime, ApiState};

/// The route.
pub const PATH: &str = "/wado";

/// What the request asks for.
#[derive(Debug, Clone, PartialEq)]
enum Content {
    Dicom { transfer_syntax: Option<String> },
    Image(Format),
}

#[derive(Debug)]
struct Request {
    study: String,
    series: String,
    object: String,
    content: Content,
    frame: u32,
    options: Option<RenderOptions>,
}

fn bad(text: impl Into<String>) -> ApiError {
    ApiError::BadRequest(text.into())
}

/// The media type asked for: the first of the `contentType` list we can produce (image/jpeg
/// when absent, as PS3.18 says for single-frame images); 406 otherwise.
fn content(list: Option<&str>, transfer_syntax: Option<String>) -> Result<Content, ApiError> {
    let Some(list) = list else {
        return Ok(Content::Image(Format::Jpeg));
    };
    for item in list.split(',') {
        let mime = item
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match mime.as_str() {
            "application/dicom" => {
                return Ok(Content::Dicom {
                    transfer_syntax: transfer_syntax.clone(),
                })
            }
            "*/*" | "image/*" => return Ok(Content::Image(Format::Jpeg)),
            m => {
                if let Some(f) = Format::from_media_type(m) {
                    return Ok(Content::Image(f));
                }
            }
        }
    }
    Err(ApiError::NotAcceptable(format!(
        "contentType {list:?}: this server answers application/dicom, image/jpeg, image/png or image/gif"
    )))
}

/// Whether a WADO-URI query asks for the DICOM object (a retrieve) rather than an image (a
/// rendering): what the access layer authorizes it as.
pub fn wants_dicom(query: &str) -> bool {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "contentType")
        .is_some_and(|(_, v)| matches!(content(Some(&v), None), Ok(Content::Dicom { .. })))
}

/// The study, series and instance a WADO-URI query names, under the names the access layer
/// checks path parameters by.
pub fn uids(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .filter_map(|(k, v)| {
            let name = match k.as_ref() {
                "studyUID" => "study",
                "seriesUID" => "series",
                "objectUID" => "instance",
                _ => return None,
            };
            Some((name.to_string(), v.trim().to_string()))
        })
        .collect()
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ApiError> {
    value
        .trim()
        .parse()
        .map_err(|_| bad(format!("{name} must be a number, got {value:?}")))
}

fn parse(query: &str) -> Result<Request, ApiError> {
    let mut p: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if p.insert(k.to_string(), v.to_string()).is_some() {
            return Err(bad(format!("parameter {k} given twice")));
        }
    }
    match p.get("requestType").map(String::as_str) {
        Some("WADO") => {}
        other => return Err(bad(format!("requestType must be WADO, got {other:?}"))),
    }
    let missing: Vec<&str> = ["studyUID", "seriesUID", "objectUID"]
        .into_iter()
        .filter(|k| p.get(*k).is_none_or(|v| v.trim().is_empty()))
        .collect();
    if !missing.is_empty() {
        return Err(bad(format!("missing {}", missing.join(", "))));
    }
    if p.get("anonymize").is_some_and(|v| v == "yes") {
        return Err(bad("anonymize=yes is not supported"));
    }
    let uid = |k: &str| p.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
    let content = content(
        p.get("contentType").map(String::as_str),
        p.get("transferSyntax").map(|v| v.trim().to_string()),
    )?;
    let frame = match p.get("frameNumber") {
        Some(v) => number::<u32>("frameNumber", v)
            .ok()
            .filter(|f| *f >= 1)
            .ok_or_else(|| bad(format!("frameNumber must be 1 or more, got {v:?}")))?,
        None => 1,
    };
    let options = match &content {
        Content::Dicom { .. } => None,
        Content::Image(format) => Some(render_options(&p, *format)?),
    };
    Ok(Request {
        study: uid("studyUID"),
        series: uid("seriesUID"),
        object: uid("objectUID"),
        content,
        frame,
        options,
    })
}

fn render_options(
    p: &std::collections::HashMap<String, String>,
    format: Format,
) -> Result<RenderOptions, ApiError> {
    let mut options = RenderOptions::new(format);
    if let Some(q) = p.get("imageQuality") {
        options.quality = number::<u8>("imageQuality", q)
            .ok()
            .filter(|q| (1..=100).contains(q))
            .ok_or_else(|| bad(format!("imageQuality must be 1..100, got {q:?}")))?;
    }
    let size = |name: &str| -> Result<Option<u32>, ApiError> {
        p.get(name)
            .map(|v| {
                number::<u32>(name, v)
                    .ok()
                    .filter(|n| (1..=MAX_VIEWPORT).contains(n))
                    .ok_or_else(|| bad(format!("{name} must be 1..{MAX_VIEWPORT}, got {v:?}")))
            })
            .transpose()
    };
    // One of rows / columns alone bounds that side; the image keeps its aspect.
    options.viewport = match (size("columns")?, size("rows")?) {
        (None, None) => None,
        (w, h) => Some(Viewport {
            width: w.or(h).unwrap_or(MAX_VIEWPORT),
            height: h.or(w).unwrap_or(MAX_VIEWPORT),
            source: None,
        }),
    };
    options.window = match (p.get("windowCenter"), p.get("windowWidth")) {
        (None, None) => None,
        (Some(c), Some(w)) => {
            let center: f64 = number("windowCenter", c)?;
            let width: f64 = number("windowWidth", w)?;
            if !(center.is_finite() && width.is_finite() && width >= 1.0) {
                return Err(bad("windowWidth must be 1 or more, windowCenter a number"));
            }
            Some(Window {
                center,
                width,
                function: VoiLutFunction::Linear,
            })
        }
        _ => return Err(bad("windowCenter and windowWidth go together")),
    };
    Ok(options)
}

/// `GET /wado?requestType=WADO&...`
pub async fn wado(State(s): State<ApiState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let req = parse(q.as_deref().unwrap_or_default())?;
    let resource = Resource {
        study: req.study.clone(),
        series: Some(req.series.clone()),
        instance: Some(req.object.clone()),
    };
    let index = s.store.index.clone();
    let rec = off_runtime::<_, ApiError>(move || resolve(index.as_ref(), &resource))
        .await?
        .into_iter()
        .next()
        .ok_or(ApiError::NotFound("instance"))?;
    match req.content {
        Content::Dicom { transfer_syntax } => part10(&s, rec, transfer_syntax).await,
        Content::Image(format) => {
            let options = req.options.unwrap_or_else(|| RenderOptions::new(format));
            let image = render_single(&s, rec, req.frame, options).await?;
            Ok(image_response(format, image.into(), false))
        }
    }
}

fn with_type(body: Body, content_type: &str) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::OK;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

/// The instance as a Part 10 file: as stored when that is the syntax asked for (Explicit VR
/// Little Endian when none is, per PS3.18), streamed from the file; else converted first, so a
/// conversion we cannot do is a 406 with the reason, not a cut body.
async fn part10(
    s: &ApiState,
    rec: InstanceRecord,
    transfer_syntax: Option<String>,
) -> Result<Response, ApiError> {
    let target = transfer_syntax.unwrap_or_else(|| EXPLICIT_LE.to_string());
    let content_type = format!("application/dicom; transfer-syntax={target}");
    if target == rec.transfer_syntax_uid {
        let store = s.store.clone();
        let reader = blocking(move || store.open_verified(&rec, Interface::Http)).await?;
        return Ok(multipart::single(&content_type, move |w| {
            w.copy_from(reader)
        }));
    }
    if !can_transcode(&rec.transfer_syntax_uid, &target) {
        return Err(ApiError::NotAcceptable(format!(
            "instance {} is stored as {} and cannot be converted to {target}",
            rec.sop_instance_uid, rec.transfer_syntax_uid
        )));
    }
    let store = s.store.clone();
    let bytes = off_runtime::<_, ApiError>(move || {
        let obj = store.read_verified(&rec, Interface::Http)?;
        let dataset = encode_as(obj, &rec.transfer_syntax_uid, &target).map_err(|e| {
            ApiError::NotAcceptable(format!("instance {}: {e}", rec.sop_instance_uid))
        })?;
        let mut out = file_header(&FileMetaFields {
            sop_class_uid: &rec.sop_class_uid,
            sop_instance_uid: &rec.sop_instance_uid,
            transfer_syntax_uid: &target,
            source_ae_title: None,
        })
        .map_err(|e| ApiError::Internal(e.to_string()))?;
        out.extend_from_slice(&dataset);
        Ok(out)
    })
    .await?;
    Ok(with_type(Body::from(bytes), &content_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UIDS: &str = "requestType=WADO&studyUID=1.2&seriesUID=1.2.3&objectUID=1.2.3.4";

    #[test]
    fn parameters_are_read_and_bad_ones_refused() {
        let r = parse(UIDS).expect("minimal");
        assert_eq!(r.content, Content::Image(Format::Jpeg));
        assert_eq!(
            (r.study.as_str(), r.object.as_str(), r.frame),
            ("1.2", "1.2.3.4", 1)
        );
        let r = parse(&format!(
            "{UIDS}&contentType=application%2Fdicom&transferSyntax=1.2.840.10008.1.2"
        ))
        .expect("dicom");
        assert_eq!(
            r.content,
            Content::Dicom {
                transfer_syntax: Some("1.2.840.10008.1.2".into())
            }
        );
        let r = parse(&format!(
            "{UIDS}&contentType=image/png&rows=64&windowCenter=40&windowWidth=400&frameNumber=2"
        ))
        .expect("png");
        let o = r.options.expect("options");
        assert_eq!(o.viewport.map(|v| (v.width, v.height)), Some((64, 64)));
        assert_eq!(o.window.map(|w| (w.center, w.width)), Some((40.0, 400.0)));
        assert_eq!(r.frame, 2);
        for (query, why) in [
            ("studyUID=1&seriesUID=2&objectUID=3", "requestType"),
            (
                "requestType=WADO&studyUID=1",
                "missing seriesUID, objectUID",
            ),
            (&format!("{UIDS}&frameNumber=0") as &str, "frameNumber"),
            (&format!("{UIDS}&windowCenter=40"), "together"),
            (&format!("{UIDS}&imageQuality=0"), "imageQuality"),
            (&format!("{UIDS}&rows=99999"), "rows"),
            (&format!("{UIDS}&anonymize=yes"), "anonymize"),
            (&format!("{UIDS}&studyUID=9"), "twice"),
        ] {
            match parse(query) {
                Err(ApiError::BadRequest(text)) => assert!(text.contains(why), "{query}: {text}"),
                other => panic!("{query}: {other:?}"),
            }
        }
        assert!(matches!(
            parse(&format!("{UIDS}&contentType=video/mpeg")),
            Err(ApiError::NotAcceptable(_))
        ));
        assert!(wants_dicom("contentType=application/dicom"));
        assert!(!wants_dicom("contentType=image/jpeg,application/dicom"));
        assert!(!wants_dicom(""));
        assert_eq!(
            uids(UIDS),
            [
                ("study".to_string(), "1.2".to_string()),
                ("series".into(), "1.2.3".into()),
                ("instance".into(), "1.2.3.4".into())
            ]
        );
    }
}
