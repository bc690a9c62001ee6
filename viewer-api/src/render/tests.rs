//! Rendering checked on the sample files: window arithmetic on known stored values,
//! MONOCHROME1 inversion, viewports, lossless PNG, errors.

use std::path::PathBuf;

use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::VoiLutFunction;
use image::GenericImageView;

use super::*;

fn open(name: &str) -> DefaultDicomObject {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../sample-dicom")
        .join(name);
    OpenFileOptions::new().open_file(&path).expect("sample")
}

/// Stored value at (x, y) of a native 16-bit single-sample frame.
fn stored_u16(obj: &DefaultDicomObject, x: usize, y: usize) -> f64 {
    let cols = obj
        .get(tags::COLUMNS)
        .and_then(|e| e.value().to_int::<usize>().ok())
        .expect("columns");
    let bytes = obj
        .get(tags::PIXEL_DATA)
        .and_then(|e| e.value().to_bytes().ok())
        .expect("pixels");
    let i = (y * cols + x) * 2;
    f64::from(u16::from_le_bytes([bytes[i], bytes[i + 1]]))
}

/// PS3.3 C.11.2.1.2.1 linear window to 8 bits.
fn linear(x: f64, c: f64, w: f64) -> f64 {
    if x <= c - 0.5 - (w - 1.0) / 2.0 {
        0.0
    } else if x > c - 0.5 + (w - 1.0) / 2.0 {
        255.0
    } else {
        ((x - (c - 0.5)) / (w - 1.0) + 0.5) * 255.0
    }
}

#[test]
fn a_requested_window_maps_stored_values_as_the_standard_says() {
    let mr = open("mr_explicit.dcm");
    let (c, w) = (1500.0, 2000.0);
    let img = render_image(
        &mr,
        1,
        Some(&Window {
            center: c,
            width: w,
            function: VoiLutFunction::Linear,
        }),
    )
    .expect("render");
    let luma = img.to_luma8();
    let mut checked = 0;
    for (x, y) in [(0, 0), (10, 200), (128, 128), (255, 17), (77, 3)] {
        let expected = linear(stored_u16(&mr, x, y), c, w);
        let got = f64::from(luma.get_pixel(x as u32, y as u32)[0]);
        assert!(
            (got - expected).abs() <= 1.0,
            "({x},{y}): {got} vs {expected}"
        );
        checked += 1;
    }
    assert_eq!(checked, 5);
}

#[test]
fn monochrome1_is_inverted() {
    let cr = open("cr_jpeg_lossless_monochrome1.dcm");
    let window = Window {
        center: 2048.0,
        width: 4096.0,
        function: VoiLutFunction::Linear,
    };
    let img = render_image(&cr, 1, Some(&window)).expect("render");
    let decoded = cr.decode_pixel_data().expect("decode");
    let values: Vec<u16> = decoded.data_ow();
    let cols = decoded.columns() as usize;
    let (imin, _) = values
        .iter()
        .enumerate()
        .min_by_key(|(_, v)| **v)
        .expect("min");
    let (imax, _) = values
        .iter()
        .enumerate()
        .max_by_key(|(_, v)| **v)
        .expect("max");
    let at = |i: usize| {
        img.to_luma8()
            .get_pixel((i % cols) as u32, (i / cols) as u32)[0]
    };
    assert!(
        at(imin) > at(imax),
        "lowest stored value must be brightest: {} vs {}",
        at(imin),
        at(imax)
    );
}

#[test]
fn viewports_scale_to_fit_and_crop() {
    let ct = open("ct_16bit_signed_implicit.dcm");
    let img = render_image(&ct, 1, None).expect("render");
    assert_eq!(img.dimensions(), (512, 512));
    let fit = fit_viewport(
        img.clone(),
        Some(&Viewport {
            width: 128,
            height: 64,
            source: None,
        }),
    );
    assert_eq!(fit.dimensions(), (64, 64), "aspect kept inside 128x64");
    let crop = fit_viewport(
        img,
        Some(&Viewport {
            width: 100,
            height: 50,
            source: Some((0, 0, 512, 256)),
        }),
    );
    assert_eq!(crop.dimensions(), (100, 50));
}

#[test]
fn png_is_lossless_for_8_bit_sources_and_jpeg_decodes() {
    let sc = open("sc_rgb_jpeg_baseline.dcm");
    let img = render_image(&sc, 1, None).expect("render");
    let png = encode::encode(&img, Format::Png, 90).expect("png");
    let back = image::load_from_memory(&png).expect("decode png");
    assert_eq!(back.to_rgb8(), img.to_rgb8());
    let jpeg = encode::encode(&img, Format::Jpeg, 90).expect("jpeg");
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
    let back = image::load_from_memory(&jpeg).expect("decode jpeg");
    assert_eq!(back.dimensions(), img.dimensions());
    let gif = encode::encode(&img, Format::Gif, 90).expect("gif");
    assert_eq!(&gif[..3], b"GIF");
}

#[test]
fn every_sample_encoding_renders() {
    for name in [
        "ct_16bit_signed_implicit.dcm",
        "ct_jpegls_lossless.dcm",
        "ct_deflated.dcm",
        "ct_jpeg2000_lossless.dcm",
        "mr_explicit.dcm",
        "mr_rle.dcm",
        "mr_explicit_big_endian.dcm",
        "cr_jpeg_lossless_monochrome1.dcm",
        "sc_rgb_jpeg_baseline.dcm",
        "us_rgb_multiframe.dcm",
    ] {
        let obj = open(name);
        let out = render(&obj, frame_count(&obj), &RenderOptions::new(Format::Jpeg))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(out.len() > 100, "{name}");
    }
}

#[test]
fn out_of_range_frames_and_missing_pixels_are_errors() {
    let ct = open("ct_16bit_signed_implicit.dcm");
    assert!(matches!(
        render_image(&ct, 2, None),
        Err(RenderError::FrameOutOfRange { asked: 2, count: 1 })
    ));
    let mut no_pixels = ct.clone();
    no_pixels.remove_element(tags::PIXEL_DATA);
    assert!(matches!(
        render_image(&no_pixels, 1, None),
        Err(RenderError::NoPixelData)
    ));
}
