//! Pixel data through the real server: every encoding and photometric interpretation of the
//! generated corpus decoded (WADO-RS frames) and rendered (rendered, thumbnail) and compared
//! with independent decoders, a reference renderer and dcmtk's dcm2pnm
//! (tests/support/pixel_check.py); broken pixel data answered with a clear error while the
//! server keeps serving.

use std::process::Command;

use crate::support::*;

/// Encodings our codecs cannot decode yet: they must fail clearly, naming the syntax.
const UNSUPPORTED: &str = "rle_u32";

#[test]
fn corpus_decodes_and_renders_like_the_reference_decoders() {
    let (tmp, data) = data_dir();
    let corpus = tmp.path().join("corpus");
    let out = run(python()
        .arg(repo().join("tests/support/make_pixel_corpus.py"))
        .arg(&corpus));
    assert!(
        out.status.success(),
        "corpus: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = Server::start(&data);
    let out = run(python()
        .arg(repo().join("tests/support/pixel_check.py"))
        .arg("--url")
        .arg(format!("http://127.0.0.1:{}/dicom-web", server.http_port))
        .arg("--corpus")
        .arg(&corpus)
        .args(["--unsupported", UNSUPPORTED]));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pixel_check failed:\n{text}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    for kind in [
        "frames:",
        "render:",
        "window:",
        "viewport:",
        "thumbnail",
        "broken:",
        "multiframe:",
        "dcm2pnm:",
    ] {
        assert!(
            text.contains(&format!("PASS  {kind}")),
            "no {kind} checks:\n{text}"
        );
    }
    assert!(!text.contains("FAIL"), "{text}");
    // A check that could not run proves nothing: every one must apply.
    let skipped: Vec<&str> = text.lines().filter(|l| l.starts_with("SKIP")).collect();
    assert!(skipped.is_empty(), "skipped checks: {skipped:#?}");
    server.assert_echo();
}

#[test]
fn thumbnails_are_cached_and_go_with_the_instance() {
    let (_tmp, data) = data_dir();
    let server = Server::start(&data);
    let ct = samples().join("ct_16bit_signed_implicit.dcm");
    storescu(&server, std::slice::from_ref(&ct));
    let (sop, _) = file_uids(&ct);
    let rec = server.json(&format!("/api/instances/{sop}"));
    let path = format!(
        "/dicom-web/studies/{}/series/{}/instances/{sop}",
        rec["study_instance_uid"].as_str().expect("study"),
        rec["series_instance_uid"].as_str().expect("series")
    );
    let fetch = |p: &str| -> (u16, Vec<u8>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let body = dir.path().join("b");
        let out = run(Command::new("curl")
            .args(["-sS", "--max-time", "30", "-w", "%{http_code}", "-o"])
            .arg(&body)
            .arg(format!("http://127.0.0.1:{}{p}", server.http_port)));
        let code = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        (code, std::fs::read(&body).unwrap_or_default())
    };
    let (code, first) = fetch(&format!("{path}/thumbnail"));
    assert_eq!(code, 200);
    assert_eq!(&first[..2], &[0xFF, 0xD8], "a JPEG");
    let (_, again) = fetch(&format!("{path}/thumbnail"));
    assert_eq!(first, again, "the cached thumbnail is the same image");
    let (code, small) = fetch(&format!("{path}/thumbnail?viewport=32,32"));
    assert_eq!(code, 200);
    assert_ne!(small, first, "another viewport is another thumbnail");
    // Deleting the instance takes its thumbnails with it.
    let out = run(Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "DELETE",
        ])
        .arg(format!("http://127.0.0.1:{}{path}", server.http_port)));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "204");
    assert_eq!(fetch(&format!("{path}/thumbnail")).0, 404);
}
