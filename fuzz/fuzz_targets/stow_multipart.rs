//! STOW-RS request bodies: the Content-Type check of stow.rs (`boundary_of`), then multer's
//! `multipart/related` parsing with the same size constraint, each part's Content-Type read
//! and its chunks drained, as `store` and `store_part` do. The header line is also parsed as an Accept header
//! (`parse_accept`, `require_json`).
//!
//! Input: byte 0 picks the body chunk size and the size limit, then the header value up to
//! the first `\n`, then the body.
#![no_main]

use std::sync::OnceLock;

use axum::http::{header, HeaderMap, HeaderValue};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use pacs_viewer_api::dicomweb::boundary_of;
use pacs_viewer_api::dicomweb::media::{parse_accept, require_json};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("tokio runtime")
    })
}

const CHUNK: [usize; 4] = [1, 3, 512, usize::MAX];
/// A small limit reaches multer's size errors; the large one lets whole bodies through.
const LIMIT: [u64; 2] = [256, 1 << 30];

fuzz_target!(|data: &[u8]| {
    let [sel, rest @ ..] = data else {
        return;
    };
    let (line, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    // What a header value can be: axum hands the handlers `to_str()` of a HeaderValue.
    let Ok(value) = HeaderValue::from_bytes(line) else {
        return;
    };
    let Ok(ct) = value.to_str() else {
        return;
    };
    let _ = parse_accept(Some(ct));
    let mut headers = HeaderMap::new();
    headers.insert(header::ACCEPT, value.clone());
    let _ = require_json(&headers, "fuzz");

    headers.insert(header::CONTENT_TYPE, value.clone());
    let Ok(boundary) = boundary_of(&headers) else {
        return;
    };
    let chunk = CHUNK[usize::from(sel & 3)];
    let limit = LIMIT[usize::from((sel >> 2) & 1)];
    let chunks: Vec<Result<Bytes, std::io::Error>> = body
        .chunks(chunk.min(body.len().max(1)))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let stream = futures_util::stream::iter(chunks);
    let constraints =
        multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(limit));
    let mut multipart = multer::Multipart::with_constraints(stream, boundary, constraints);
    runtime().block_on(async {
        // Bounded like the rest of the harness: a body of N bytes has fewer than N parts.
        for _ in 0..=body.len() {
            let mut field = match multipart.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) | Err(_) => return,
            };
            let _ = field
                .content_type()
                .map(|m| m.essence_str().to_ascii_lowercase());
            loop {
                match field.chunk().await {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => return,
                }
            }
        }
    });
});
