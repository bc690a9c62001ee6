//! Image encoding: JPEG through libjpeg-turbo, PNG and GIF through `image`.

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
            // libjpeg-turbo: about 3x faster than the pure-Rust encoders measured here, and
            // encoding is most of a rendered request (benches/render.rs).
            let (width, height) = (img.width() as usize, img.height() as usize);
            let encoded = match img {
                DynamicImage::ImageLuma8(g) => turbojpeg::compress(
                    turbojpeg::Image {
                        pixels: g.as_raw().as_slice(),
                        width,
                        pitch: width,
                        height,
                        format: turbojpeg::PixelFormat::GRAY,
                    },
                    i32::from(quality),
                    turbojpeg::Subsamp::Gray,
                ),
                other => {
                    let rgb = other.to_rgb8();
                    turbojpeg::compress(
                        turbojpeg::Image {
                            pixels: rgb.as_raw().as_slice(),
                            width,
                            pitch: width * 3,
                            height,
                            format: turbojpeg::PixelFormat::RGB,
                        },
                        i32::from(quality),
                        // No chroma subsampling: colour ultrasound and photos keep their detail.
                        turbojpeg::Subsamp::None,
                    )
                }
            };
            Ok(encoded.map_err(|e| err(&e))?.to_vec())
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
