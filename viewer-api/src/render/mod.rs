//! Rendering stored frames to consumer images (PS3.18 8.3.5, 10.4.1.1.3): decode with
//! dicom-pixeldata, apply the Modality LUT and VOI (window from the request, else the
//! instance's VOI LUT or window, else the value range; MONOCHROME1 inverted), convert colour
//! (RGB, YBR, PALETTE COLOR) to RGB, fit a viewport, and encode JPEG, PNG or GIF.
//!
//! Everything here is CPU work meant for the rayon pool in [`pool`], never a tokio thread.

pub mod bits;
mod encode;
pub(crate) mod frames;
mod native;
mod options;
mod palette;
pub mod pool;
pub mod thumbnails;

use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;
use dicom_pixeldata::{ConvertOptions, PixelDecoder, VoiLutOption, WindowLevel};
use image::{DynamicImage, GenericImageView};

pub use encode::{encode as encode_image, Format};
pub use options::{RenderOptions, Viewport, Window, MAX_VIEWPORT};

/// Why a frame could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the instance has no pixel data")]
    NoPixelData,
    #[error("frame {asked} is out of range: the instance has {count} frame(s)")]
    FrameOutOfRange { asked: u32, count: u32 },
    #[error("cannot decode pixel data stored as {transfer_syntax}: {detail}")]
    Decode {
        transfer_syntax: String,
        detail: String,
    },
    #[error("cannot render: {0}")]
    Convert(String),
    /// Pixel data this renderer does not handle, or that does not fit its own attributes.
    #[error("cannot render this pixel data: {0}")]
    Unsupported(String),
    #[error("cannot encode the image: {0}")]
    Encode(String),
}

fn int(obj: &DefaultDicomObject, tag: dicom_core::Tag) -> Option<u32> {
    obj.get(tag).and_then(|e| e.value().to_int::<u32>().ok())
}

/// Number of frames of an instance (1 when NumberOfFrames is absent).
pub fn frame_count(obj: &DefaultDicomObject) -> u32 {
    int(obj, tags::NUMBER_OF_FRAMES)
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

/// Render frame `frame` (1-based) of an instance into an 8-bit grayscale or RGB image.
pub fn render_image(
    obj: &DefaultDicomObject,
    frame: u32,
    window: Option<&Window>,
) -> Result<DynamicImage, RenderError> {
    if obj.get(tags::PIXEL_DATA).is_none() {
        return Err(RenderError::NoPixelData);
    }
    let count = frame_count(obj);
    if frame == 0 || frame > count {
        return Err(RenderError::FrameOutOfRange {
            asked: frame,
            count,
        });
    }
    let ts = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_string();
    if pacs_storage::transcode::is_native(&ts) {
        native::check_native_frame(obj, frame)?;
        if let Some(rendered) = native::render(obj, frame, window) {
            return rendered;
        }
    }
    if let Some(native) = own_jpeg_decode(obj, frame, &ts)? {
        return render_image(&native, 1, window);
    }
    if let Some(single) = single_frame_object(obj, frame) {
        return render_image(&single, 1, window);
    }
    check_codestream_size(obj, frame, &ts).map_err(|e| RenderError::Unsupported(e.to_string()))?;
    let decoded = obj
        .decode_pixel_data_frame(frame - 1)
        .map_err(|e| RenderError::Decode {
            transfer_syntax: ts.clone(),
            detail: pacs_storage::error_chain(&e),
        })?;
    if palette::is_palette(obj) {
        return palette::render(obj, &decoded);
    }
    let voi = match window {
        Some(w) => VoiLutOption::CustomWithFunction(
            WindowLevel {
                center: w.center,
                width: w.width,
            },
            w.function,
        ),
        None => VoiLutOption::Default,
    };
    let options = ConvertOptions::new().with_voi_lut(voi).force_8bit();
    decoded
        .to_dynamic_image_with_options(0, &options)
        .map_err(|e| RenderError::Convert(pacs_storage::error_chain(&e)))
}

/// A JPEG frame dicom-pixeldata reads wrong or not at all (see [`pacs_storage::jpeg`]), as a one-frame
/// native instance with the same attributes; None for every other frame.
fn own_jpeg_decode(
    obj: &DefaultDicomObject,
    frame: u32,
    ts: &str,
) -> Result<Option<DefaultDicomObject>, RenderError> {
    let Ok(bitstream) = frames::stored_frame(obj, frame) else {
        return Ok(None);
    };
    if !pacs_storage::jpeg::needs_own_decoder(ts, &bitstream) {
        return Ok(None);
    }
    let (rows, cols) = (int(obj, tags::ROWS), int(obj, tags::COLUMNS));
    let size = |v: Option<u32>| v.and_then(|v| u16::try_from(v).ok()).unwrap_or(0);
    let decoded = pacs_storage::jpeg::decode(&bitstream, size(rows), size(cols)).map_err(|e| {
        RenderError::Decode {
            transfer_syntax: ts.to_string(),
            detail: e.to_string(),
        }
    })?;
    Ok(Some(native_frame_object(obj, &decoded)))
}

/// JPEG 2000 syntaxes (PS3.5 A.4.4, A.4.10).
const JPEG_2000: [&str; 7] = [
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.92",
    "1.2.840.10008.1.2.4.93",
    "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.202",
    "1.2.840.10008.1.2.4.203",
];

/// A JPEG 2000 codestream of another size than its data set says.
#[derive(Debug, thiserror::Error)]
#[error("the JPEG 2000 codestream of frame {frame} is {width}x{height} with {components} component(s), but the data set says {cols}x{rows} with {samples} sample(s) per pixel")]
pub struct CodestreamMismatch {
    frame: u32,
    width: u32,
    height: u32,
    components: u16,
    cols: u32,
    rows: u32,
    samples: u32,
}

/// A JPEG 2000 frame must be the size the data set says (see [`pacs_storage::j2k`]).
pub(crate) fn check_codestream_size(
    obj: &DefaultDicomObject,
    frame: u32,
    ts: &str,
) -> Result<(), CodestreamMismatch> {
    if !JPEG_2000.contains(&ts) {
        return Ok(());
    }
    let Ok(bitstream) = frames::stored_frame(obj, frame) else {
        return Ok(()); // the decoder reports what is wrong with the fragments
    };
    let Some(found) = pacs_storage::j2k::size(&bitstream) else {
        return Ok(());
    };
    let rows = int(obj, tags::ROWS).unwrap_or(0);
    let cols = int(obj, tags::COLUMNS).unwrap_or(0);
    let samples = int(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1);
    if (found.width, found.height, u32::from(found.components)) == (cols, rows, samples) {
        Ok(())
    } else {
        Err(CodestreamMismatch {
            frame,
            width: found.width,
            height: found.height,
            components: found.components,
            cols,
            rows,
            samples,
        })
    }
}

/// For encapsulated multi-frame pixel data whose fragments are not one per frame, the frame
/// (split as [`frames::stored_frame`] does, Basic Offset Table or bitstream
/// starts) as a one-frame instance: dicom-pixeldata's own split needs the offset table and
/// otherwise hands the first frame every fragment.
pub(crate) fn single_frame_object(
    obj: &DefaultDicomObject,
    frame: u32,
) -> Option<DefaultDicomObject> {
    use dicom_core::value::{PixelFragmentSequence, Value};
    let count = frame_count(obj);
    let Value::PixelSequence(seq) = obj.get(tags::PIXEL_DATA)?.value() else {
        return None;
    };
    if count <= 1 || seq.fragments().len() == count as usize {
        return None;
    }
    let bitstream = frames::stored_frame(obj, frame).ok()?;
    let pixels = Value::PixelSequence(PixelFragmentSequence::new(
        Vec::<u32>::new(),
        vec![bitstream],
    ));
    Some(with_pixel_data(obj, obj.meta().clone(), pixels, &[]))
}

/// A copy of `obj` under `meta` with `pixels` as its one frame and `attributes` replaced.
fn with_pixel_data(
    obj: &DefaultDicomObject,
    meta: dicom_object::FileMetaTable,
    pixels: dicom_core::value::Value<
        dicom_object::InMemDicomObject,
        dicom_core::value::InMemFragment,
    >,
    attributes: &[dicom_object::mem::InMemElement],
) -> DefaultDicomObject {
    use dicom_core::header::Header;
    use dicom_core::{DataElement, PrimitiveValue, VR};
    let mut copy = DefaultDicomObject::new_empty_with_meta(meta);
    for e in obj.iter() {
        if e.tag() != tags::PIXEL_DATA {
            copy.put(e.clone());
        }
    }
    for e in attributes {
        copy.put(e.clone());
    }
    copy.put(DataElement::new(
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        PrimitiveValue::from("1"),
    ));
    let vr = match &pixels {
        dicom_core::value::Value::Primitive(_)
            if int(obj, tags::BITS_ALLOCATED).unwrap_or(8) > 8
                || attributes.iter().any(|a| {
                    a.tag() == tags::BITS_ALLOCATED && a.to_int::<u16>().ok() > Some(8)
                }) =>
        {
            VR::OW
        }
        _ => VR::OB,
    };
    copy.put(DataElement::new(tags::PIXEL_DATA, vr, pixels));
    copy
}

/// `obj` with one native frame in place of its pixel data.
pub(crate) fn native_frame_object(
    obj: &DefaultDicomObject,
    d: &pacs_storage::jpeg::Decoded,
) -> DefaultDicomObject {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN;
    let mut meta = obj.meta().clone();
    meta.set_transfer_syntax(&EXPLICIT_VR_LITTLE_ENDIAN);
    let us = |tag, v: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(v));
    let mut attributes = vec![
        us(tags::ROWS, d.rows),
        us(tags::COLUMNS, d.cols),
        us(tags::SAMPLES_PER_PIXEL, d.samples_per_pixel),
        us(tags::BITS_ALLOCATED, d.bits_allocated),
        us(tags::PLANAR_CONFIGURATION, 0),
    ];
    if let Some(p) = d.photometric {
        attributes.push(DataElement::new(
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            PrimitiveValue::from(p),
        ));
    }
    let pixels = dicom_core::value::Value::Primitive(PrimitiveValue::from(d.samples.clone()));
    with_pixel_data(obj, meta, pixels, &attributes)
}

/// Crop to the viewport's source rectangle and scale to fit its size, keeping the aspect ratio.
pub fn fit_viewport(img: DynamicImage, viewport: Option<&Viewport>) -> DynamicImage {
    let Some(v) = viewport else {
        return img;
    };
    let (w, h) = img.dimensions();
    let img = match v.source {
        Some((sx, sy, sw, sh)) => {
            let sx = sx.min(w.saturating_sub(1));
            let sy = sy.min(h.saturating_sub(1));
            let sw = sw.min(w - sx).max(1);
            let sh = sh.min(h - sy).max(1);
            img.crop_imm(sx, sy, sw, sh)
        }
        None => img,
    };
    let (w, h) = img.dimensions();
    if w == v.width && h == v.height {
        return img;
    }
    let scale = f64::min(
        f64::from(v.width) / f64::from(w),
        f64::from(v.height) / f64::from(h),
    );
    let nw = ((f64::from(w) * scale).round() as u32).max(1);
    let nh = ((f64::from(h) * scale).round() as u32).max(1);
    img.resize_exact(nw, nh, image::imageops::FilterType::Triangle)
}

/// Render and encode one frame as asked.
pub fn render(
    obj: &DefaultDicomObject,
    frame: u32,
    options: &RenderOptions,
) -> Result<Vec<u8>, RenderError> {
    let img = render_image(obj, frame, options.window.as_ref())?;
    let img = fit_viewport(img, options.viewport.as_ref());
    encode::encode(&img, options.format, options.quality)
}

#[cfg(test)]
mod tests;
