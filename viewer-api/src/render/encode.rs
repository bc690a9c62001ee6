//! Image encoding: JPEG through jpeg-encoder (fast, SIMD), PNG and GIF through `image`.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat};

use super::RenderError;

/// Output media type of a rendered resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
    Gif,
}

impl Format {
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Gif => "image/gif",
        }
    }

    pub fn from_media_type(m: &str) -> Option<Format> {
        match m {
            "image/jpeg" | "image/jpg" => Some(Format::Jpeg),
            "image/png" => Some(Format::Png),
            "image/gif" => Some(Format::Gif),
            _ => None,
        }
    }
}

pub fn encode(img: &DynamicImage, format: Format, quality: u8) -> Result<Vec<u8>, RenderError> {
    let err = |e: &dyn std::fmt::Display| RenderError::Encode(e.to_string());
    match format {
        Format::Jpeg => {
            let (w, h) = (img.width(), img.height());
            let (w16, h16) = (
                u16::try_from(w).map_err(|e| err(&e))?,
                u16::try_from(h).map_err(|e| err(&e))?,
            );
            let mut out = Vec::with_capacity((w * h / 8) as usize);
            let encoder = jpeg_encoder::Encoder::new(&mut out, quality);
            match img {
                DynamicImage::ImageLuma8(g) => encoder
                    .encode(g.as_raw(), w16, h16, jpeg_encoder::ColorType::Luma)
                    .map_err(|e| err(&e))?,
                other => {
                    let rgb = other.to_rgb8();
                    encoder
                        .encode(rgb.as_raw(), w16, h16, jpeg_encoder::ColorType::Rgb)
                        .map_err(|e| err(&e))?
                }
            }
            Ok(out)
        }
        Format::Png | Format::Gif => {
            let mut out = Cursor::new(Vec::new());
            let f = if format == Format::Png {
                ImageFormat::Png
            } else {
                ImageFormat::Gif
            };
            let img = match (format, img) {
                // GIF carries 8-bit RGBA palettes; PNG keeps grey as grey.
                (Format::Gif, i) => DynamicImage::ImageRgba8(i.to_rgba8()),
                (_, i) => i.clone(),
            };
            img.write_to(&mut out, f).map_err(|e| err(&e))?;
            Ok(out.into_inner())
        }
    }
}
