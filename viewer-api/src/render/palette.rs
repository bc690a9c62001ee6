//! PALETTE COLOR (PS3.3 C.7.6.3.1.5): stored values index red, green and blue lookup tables.
//! dicom-pixeldata's image conversion does not apply palettes, so they are mapped here.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;
use dicom_pixeldata::DecodedPixelData;
use image::{DynamicImage, RgbImage};

use super::RenderError;

pub fn is_palette(obj: &DefaultDicomObject) -> bool {
    obj.get(tags::PHOTOMETRIC_INTERPRETATION)
        .and_then(|e| e.value().to_str().ok())
        .is_some_and(|p| p.trim_end_matches([' ', '\0']) == "PALETTE COLOR")
}

/// One channel's table as 8-bit output values.
struct Lut {
    first: i64,
    values: Vec<u8>,
}

impl Lut {
    fn read(obj: &DefaultDicomObject, descriptor: Tag, data: Tag) -> Result<Lut, RenderError> {
        let bad = |what: &str| RenderError::Convert(format!("palette: {what}"));
        let desc: Vec<i64> = obj
            .get(descriptor)
            .and_then(|e| e.value().to_multi_int::<i64>().ok())
            .filter(|d| d.len() == 3)
            .ok_or_else(|| bad("lookup table descriptor missing or malformed"))?;
        let entries = if desc[0] == 0 {
            65536
        } else {
            desc[0] as usize
        };
        let bits = desc[2];
        let bytes = obj
            .get(data)
            .and_then(|e| e.value().to_bytes().ok())
            .ok_or_else(|| {
                bad("lookup table data missing (segmented palettes are not supported)")
            })?;
        let words = |b: &[u8]| -> Vec<u16> {
            b.chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect()
        };
        let values: Vec<u8> = match bits {
            16 => words(&bytes).into_iter().map(|v| (v >> 8) as u8).collect(),
            8 if bytes.len() >= entries * 2 => words(&bytes)
                .into_iter()
                .map(|v| (v & 0xFF) as u8)
                .collect(),
            8 => bytes.to_vec(),
            _ => return Err(bad("bits per entry must be 8 or 16")),
        };
        if values.len() < entries {
            return Err(bad("lookup table data shorter than its descriptor"));
        }
        Ok(Lut {
            first: desc[1],
            values: values[..entries].to_vec(),
        })
    }

    fn map(&self, index: i64) -> u8 {
        let i = (index - self.first).clamp(0, self.values.len() as i64 - 1);
        self.values[i as usize]
    }
}

pub fn render(
    obj: &DefaultDicomObject,
    decoded: &DecodedPixelData<'_>,
) -> Result<DynamicImage, RenderError> {
    let red = Lut::read(
        obj,
        tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
        tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
    )?;
    let green = Lut::read(
        obj,
        tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
        tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
    )?;
    let blue = Lut::read(
        obj,
        tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
        tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
    )?;
    let (w, h) = (decoded.columns(), decoded.rows());
    let data = decoded.data();
    let pixels = w as usize * h as usize;
    let indices: Vec<i64> = match decoded.bits_allocated() {
        8 => data.iter().take(pixels).map(|v| i64::from(*v)).collect(),
        16 => data
            .chunks_exact(2)
            .take(pixels)
            .map(|c| i64::from(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        b => {
            return Err(RenderError::Convert(format!(
                "palette indices of {b} bits are not supported"
            )))
        }
    };
    if indices.len() < pixels {
        return Err(RenderError::Convert(
            "pixel data shorter than the frame".into(),
        ));
    }
    let mut out = Vec::with_capacity(pixels * 3);
    for i in indices {
        out.extend_from_slice(&[red.map(i), green.map(i), blue.map(i)]);
    }
    RgbImage::from_raw(w, h, out)
        .map(DynamicImage::ImageRgb8)
        .ok_or_else(|| RenderError::Convert("palette image size mismatch".into()))
}
