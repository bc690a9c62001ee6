//! Rendering stored frames to consumer images (PS3.18 8.3.5, 10.4.1.1.3): decode with
//! dicom-pixeldata, apply the Modality LUT and VOI (window from the request, else the
//! instance's VOI LUT or window, else the value range; MONOCHROME1 inverted), convert colour
//! (RGB, YBR, PALETTE COLOR) to RGB, fit a viewport, and encode JPEG, PNG or GIF.
//!
//! Everything here is CPU work meant for the rayon pool in [`pool`], never a tokio thread.

mod encode;
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
pub use options::{RenderOptions, Viewport, Window};

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
