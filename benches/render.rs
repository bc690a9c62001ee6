//! Criterion benches of the pixel path: decoding each sample encoding, and window + JPEG encode
//! of a 512x512 16-bit CT (the work behind one WADO-RS rendered request).
//!
//! Run: `cargo bench --bench render`

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::PixelDecoder;
use pacs_viewer_api::render::{self, Format, RenderOptions, Window};

fn sample(name: &str) -> DefaultDicomObject {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("sample-dicom")
        .join(name);
    OpenFileOptions::new()
        .open_file(&path)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode frame 1");
    for (label, file) in [
        ("native implicit 512x512x16", "ct_16bit_signed_implicit.dcm"),
        ("deflate 512x512x16", "ct_deflated.dcm"),
        ("JPEG-LS lossless 512x512x16", "ct_jpegls_lossless.dcm"),
        ("JPEG 2000 lossless 512x512x16", "ct_jpeg2000_lossless.dcm"),
        ("RLE 256x256x16", "mr_rle.dcm"),
        ("JPEG lossless SV1", "cr_jpeg_lossless_monochrome1.dcm"),
        ("JPEG baseline RGB", "sc_rgb_jpeg_baseline.dcm"),
    ] {
        let obj = sample(file);
        group.bench_function(label, |b| {
            b.iter(|| obj.decode_pixel_data_frame(0).map(|d| d.data().len()))
        });
    }
    group.finish();
}

fn window_and_encode(c: &mut Criterion) {
    let ct = sample("ct_16bit_signed_implicit.dcm");
    let window = Window {
        center: 40.0,
        width: 400.0,
        function: dicom_pixeldata::VoiLutFunction::Linear,
    };
    let mut group = c.benchmark_group("CT 512x512x16");
    group.bench_function("window to 8 bits", |b| {
        b.iter(|| render::render_image(&ct, 1, Some(&window)).map(|i| i.width()))
    });
    let img = render::render_image(&ct, 1, Some(&window)).expect("render");
    for (label, format) in [
        ("encode JPEG q90", Format::Jpeg),
        ("encode PNG", Format::Png),
    ] {
        group.bench_function(label, |b| {
            b.iter(|| render::encode_image(&img, format, 90).map(|v| v.len()))
        });
    }
    let mut options = RenderOptions::new(Format::Jpeg);
    options.window = Some(window.clone());
    group.bench_function("window + JPEG (rendered)", |b| {
        b.iter(|| render::render(&ct, 1, &options).map(|v| v.len()))
    });
    let bytes = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sample-dicom/ct_16bit_signed_implicit.dcm"),
    )
    .expect("read");
    group.bench_function("parse file + window + JPEG", |b| {
        b.iter(|| {
            let obj = OpenFileOptions::new()
                .read_preamble(dicom_object::file::ReadPreamble::Always)
                .from_reader(&bytes[..])
                .expect("parse");
            render::render(&obj, 1, &options).map(|v| v.len())
        })
    });
    group.finish();
}

criterion_group!(benches, decode, window_and_encode);
criterion_main!(benches);
