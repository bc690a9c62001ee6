//! Native (uncompressed) frames that dicom-pixeldata's image conversion does not render right:
//! YBR_FULL and YBR_FULL_422 colour (its conversion has the Cb term of green with the wrong
//! sign, and it sizes packed 4:2:2 frames as full ones), 32-bit grayscale (it stops at 16) and
//! 1-bit binary frames (it refuses BitsAllocated 1).

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;
use dicom_pixeldata::VoiLutFunction;
use image::{DynamicImage, GrayImage, RgbImage};

use super::{RenderError, Window};

fn int(obj: &DefaultDicomObject, tag: Tag) -> Option<u32> {
    obj.get(tag).and_then(|e| e.value().to_int::<u32>().ok())
}

fn text(obj: &DefaultDicomObject, tag: Tag) -> String {
    obj.get(tag)
        .and_then(|e| e.value().to_str().ok())
        .map(|s| s.trim_end_matches([' ', '\0']).to_string())
        .unwrap_or_default()
}

/// What a native frame looks like.
struct Layout {
    rows: usize,
    cols: usize,
    samples: usize,
    bits: usize,
    photometric: String,
}

fn layout(obj: &DefaultDicomObject) -> Option<Layout> {
    Some(Layout {
        rows: int(obj, tags::ROWS)? as usize,
        cols: int(obj, tags::COLUMNS)? as usize,
        samples: int(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1) as usize,
        bits: int(obj, tags::BITS_ALLOCATED)? as usize,
        photometric: text(obj, tags::PHOTOMETRIC_INTERPRETATION),
    })
}

impl Layout {
    fn frame_len(&self) -> usize {
        let px = self.rows * self.cols;
        if self.photometric == "YBR_FULL_422" {
            px * 2
        } else {
            px * self.samples * self.bits / 8
        }
    }

    /// Bytes the pixel data needs to hold frames 1..=`frame`.
    fn bytes_through(&self, frame: u32) -> usize {
        if self.bits == 1 {
            (frame as usize * self.rows * self.cols * self.samples).div_ceil(8)
        } else {
            frame as usize * self.frame_len()
        }
    }
}

/// The bytes of a native frame (1-based), checked against the declared size.
fn frame_bytes(obj: &DefaultDicomObject, l: &Layout, frame: u32) -> Result<Vec<u8>, RenderError> {
    let bytes = obj
        .get(tags::PIXEL_DATA)
        .and_then(|e| e.value().to_bytes().ok())
        .ok_or(RenderError::NoPixelData)?;
    let len = l.frame_len();
    let start = (frame as usize - 1) * len;
    bytes.get(start..start + len).map(<[u8]>::to_vec).ok_or_else(|| {
        RenderError::Convert(format!(
            "pixel data holds {} bytes; frame {frame} of {}x{} {} with {} bits allocated needs bytes {start}..{}",
            bytes.len(),
            l.cols,
            l.rows,
            l.photometric,
            l.bits,
            start + len
        ))
    })
}

/// Check a native frame's size before decoding (a short or mislabelled Pixel Data gets a
/// reason rather than a decoder's index error). Reads lengths only: no pixel copy.
pub fn check_native_frame(obj: &DefaultDicomObject, frame: u32) -> Result<(), RenderError> {
    let l = layout(obj)
        .filter(|l| (l.bits % 8 == 0 && l.bits > 0) || l.bits == 1)
        .ok_or_else(|| {
            RenderError::Unsupported("Rows, Columns or BitsAllocated missing or invalid".into())
        })?;
    let held = match obj.get(tags::PIXEL_DATA).map(|e| e.value()) {
        Some(dicom_core::value::Value::Primitive(p)) => p.calculate_byte_len(),
        _ => return Err(RenderError::NoPixelData),
    };
    let end = l.bytes_through(frame);
    if held < end {
        return Err(RenderError::Unsupported(format!(
            "pixel data holds {held} bytes; frames 1..{frame} of {}x{} {} with {} bits allocated need {end}",
            l.cols, l.rows, l.photometric, l.bits,
        )));
    }
    Ok(())
}

/// Render natively stored frames dicom-pixeldata gets wrong; None when it handles them.
pub fn render(
    obj: &DefaultDicomObject,
    frame: u32,
    window: Option<&Window>,
) -> Option<Result<DynamicImage, RenderError>> {
    let l = layout(obj)?;
    match (l.photometric.as_str(), l.samples, l.bits) {
        ("YBR_FULL" | "YBR_FULL_422", 3, 8) => Some(ybr(obj, &l, frame)),
        (_, 1, 32) => Some(gray32(obj, &l, frame, window)),
        (_, 1, 1) => Some(binary(obj, &l, frame)),
        _ => None,
    }
}

/// A 1-bit frame: set pixels white (black under MONOCHROME1), no windowing to apply.
fn binary(obj: &DefaultDicomObject, l: &Layout, frame: u32) -> Result<DynamicImage, RenderError> {
    let bytes = obj
        .get(tags::PIXEL_DATA)
        .and_then(|e| e.value().to_bytes().ok())
        .ok_or(RenderError::NoPixelData)?;
    let bits = super::bits::unpack_frame(&bytes, l.rows * l.cols, frame).ok_or_else(|| {
        RenderError::Unsupported(format!("pixel data too short for frame {frame}"))
    })?;
    let (on, off) = if l.photometric == "MONOCHROME1" {
        (0, 255)
    } else {
        (255, 0)
    };
    let pixels = bits
        .iter()
        .map(|b| if *b == 1 { on } else { off })
        .collect();
    GrayImage::from_raw(l.cols as u32, l.rows as u32, pixels)
        .map(DynamicImage::ImageLuma8)
        .ok_or_else(|| RenderError::Convert("binary frame size".into()))
}

/// YBR_FULL to RGB (PS3.3 C.7.6.3.1.2).
fn to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let (y, cb, cr) = (f32::from(y), f32::from(cb) - 128.0, f32::from(cr) - 128.0);
    let clamp = |v: f32| v.round().clamp(0.0, 255.0) as u8;
    [
        clamp(y + 1.402 * cr),
        clamp(y - 0.344_136 * cb - 0.714_136 * cr),
        clamp(y + 1.772 * cb),
    ]
}

fn ybr(obj: &DefaultDicomObject, l: &Layout, frame: u32) -> Result<DynamicImage, RenderError> {
    let data = frame_bytes(obj, l, frame)?;
    let px = l.rows * l.cols;
    let mut out = Vec::with_capacity(px * 3);
    if l.photometric == "YBR_FULL_422" {
        // Y1 Y2 Cb Cr for each pair of pixels along a row.
        for q in data.chunks_exact(4) {
            out.extend_from_slice(&to_rgb(q[0], q[2], q[3]));
            out.extend_from_slice(&to_rgb(q[1], q[2], q[3]));
        }
    } else if int(obj, tags::PLANAR_CONFIGURATION) == Some(1) {
        for i in 0..px {
            out.extend_from_slice(&to_rgb(data[i], data[px + i], data[2 * px + i]));
        }
    } else {
        for p in data.chunks_exact(3) {
            out.extend_from_slice(&to_rgb(p[0], p[1], p[2]));
        }
    }
    out.truncate(px * 3);
    RgbImage::from_raw(l.cols as u32, l.rows as u32, out)
        .map(DynamicImage::ImageRgb8)
        .ok_or_else(|| RenderError::Convert("YBR frame size mismatch".into()))
}

/// 32-bit grayscale: Modality LUT, then the requested window, the instance's first window, or
/// the frame's range; MONOCHROME1 inverted.
fn gray32(
    obj: &DefaultDicomObject,
    l: &Layout,
    frame: u32,
    window: Option<&Window>,
) -> Result<DynamicImage, RenderError> {
    let data = frame_bytes(obj, l, frame)?;
    let signed = int(obj, tags::PIXEL_REPRESENTATION) == Some(1);
    let stored = int(obj, tags::BITS_STORED).unwrap_or(32).clamp(1, 32);
    let float = |t: Tag| {
        obj.get(t)
            .and_then(|e| e.value().to_multi_float64().ok())
            .and_then(|v| v.first().copied())
    };
    let slope = float(tags::RESCALE_SLOPE).unwrap_or(1.0);
    let intercept = float(tags::RESCALE_INTERCEPT).unwrap_or(0.0);
    let values: Vec<f64> = data
        .chunks_exact(4)
        .map(|c| {
            let raw = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            let masked = if stored == 32 {
                raw
            } else {
                raw & ((1u32 << stored) - 1)
            };
            let v = if signed && stored < 32 && masked >> (stored - 1) == 1 {
                f64::from(masked) - f64::from(1u32 << (stored - 1)) * 2.0
            } else if signed {
                f64::from(masked as i32)
            } else {
                f64::from(masked)
            };
            v * slope + intercept
        })
        .collect();
    let first_window = match (float(tags::WINDOW_CENTER), float(tags::WINDOW_WIDTH)) {
        (Some(center), Some(width)) if width > 0.0 => Some(Window {
            center,
            width,
            function: VoiLutFunction::Linear,
        }),
        _ => None,
    };
    let chosen = window.cloned().or(first_window);
    let map: Box<dyn Fn(f64) -> f64> = match chosen {
        Some(w) => Box::new(move |x| voi(x, &w)),
        None => {
            let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let span = (hi - lo).max(f64::MIN_POSITIVE);
            Box::new(move |x| (x - lo) / span * 255.0)
        }
    };
    let invert = l.photometric == "MONOCHROME1";
    let out: Vec<u8> = values
        .iter()
        .map(|v| {
            let g = map(*v).round().clamp(0.0, 255.0);
            (if invert { 255.0 - g } else { g }) as u8
        })
        .collect();
    GrayImage::from_raw(l.cols as u32, l.rows as u32, out)
        .map(DynamicImage::ImageLuma8)
        .ok_or_else(|| RenderError::Convert("frame size mismatch".into()))
}

/// VOI LUT functions of PS3.3 C.11.2.1.2 to an 8-bit range.
fn voi(x: f64, w: &Window) -> f64 {
    let (c, width) = (w.center, w.width);
    match w.function {
        VoiLutFunction::Linear => {
            if x <= c - 0.5 - (width - 1.0) / 2.0 {
                0.0
            } else if x > c - 0.5 + (width - 1.0) / 2.0 {
                255.0
            } else {
                ((x - (c - 0.5)) / (width - 1.0) + 0.5) * 255.0
            }
        }
        VoiLutFunction::LinearExact => {
            if x <= c - width / 2.0 {
                0.0
            } else if x > c + width / 2.0 {
                255.0
            } else {
                (x - c) / width * 255.0 + 127.5
            }
        }
        VoiLutFunction::Sigmoid => 255.0 / (1.0 + (-4.0 * (x - c) / width).exp()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ybr_full_converts_with_the_standard_coefficients() {
        assert_eq!(to_rgb(128, 128, 128), [128, 128, 128]);
        // Pure red in YBR_FULL (Y 76, Cb 85, Cr 255) comes back red.
        let [r, g, b] = to_rgb(76, 85, 255);
        assert!(r > 250 && g < 5 && b < 5, "{r} {g} {b}");
    }

    #[test]
    fn voi_functions_follow_the_standard() {
        let w = |function| Window {
            center: 100.0,
            width: 50.0,
            function,
        };
        assert_eq!(voi(0.0, &w(VoiLutFunction::Linear)), 0.0);
        assert_eq!(voi(1000.0, &w(VoiLutFunction::Linear)), 255.0);
        assert!((voi(100.0, &w(VoiLutFunction::LinearExact)) - 127.5).abs() < 1e-9);
        assert!((voi(100.0, &w(VoiLutFunction::Sigmoid)) - 127.5).abs() < 1e-9);
    }
}
