//! DICOMweb against the real server: curl for every endpoint (asserting the returned JSON and
//! multipart contents against the stored files), the Python dicomweb-client for a full
//! search/retrieve/metadata/frames/store round, and OHIF in headless Chromium.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::*;

const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const JPEG_LS: &str = "ct_jpegls_lossless.dcm";

/// One HTTP exchange done with curl.
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Parts of a multipart body: (part headers, part bytes).
    fn parts(&self) -> Vec<(String, Vec<u8>)> {
        let ct = self.header("content-type").expect("content-type");
        let boundary = ct
            .split(';')
            .find_map(|p| p.trim().strip_prefix("boundary="))
            .expect("boundary")
            .trim_matches('"');
        split_multipart(&self.body, boundary)
    }
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn split_multipart(body: &[u8], boundary: &str) -> Vec<(String, Vec<u8>)> {
    let delim = format!("--{boundary}");
    let mut out = Vec::new();
    let mut pos = find(body, delim.as_bytes(), 0).expect("first boundary");
    loop {
        let after = pos + delim.len();
        if body.get(after..after + 2) == Some(b"--") {
            return out;
        }
        let head_end = find(body, b"\r\n\r\n", after).expect("part headers");
        let headers = String::from_utf8_lossy(&body[after..head_end]).into_owned();
        let next =
            find(body, format!("\r\n{delim}").as_bytes(), head_end + 4).expect("closing boundary");
        out.push((headers, body[head_end + 4..next].to_vec()));
        pos = next + 2;
    }
}

fn curl(args: &[&str]) -> Resp {
    let dir = tempfile::tempdir().expect("tempdir");
    let (h, b) = (dir.path().join("h"), dir.path().join("b"));
    let out = run(Command::new("curl")
        .args(["-sS", "--max-time", "60", "-w", "%{http_code}", "-D"])
        .arg(&h)
        .arg("-o")
        .arg(&b)
        .args(args));
    let status = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let raw = std::fs::read_to_string(&h).unwrap_or_default();
    // With Expect: 100-continue there are two header blocks; keep the last.
    let last = raw
        .split("\r\n\r\n")
        .filter(|b| !b.trim().is_empty())
        .last()
        .unwrap_or("");
    let headers = last
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: std::fs::read(&b).unwrap_or_default(),
    }
}

fn url(server: &Server, path: &str) -> String {
    format!("http://127.0.0.1:{}/dicom-web{path}", server.http_port)
}

fn get(server: &Server, path: &str, accept: &str) -> Resp {
    curl(&["-H", &format!("Accept: {accept}"), &url(server, path)])
}

fn first(v: &Value, tag: &str) -> Value {
    v[tag]["Value"][0].clone()
}

fn str_of(v: &Value, tag: &str) -> String {
    first(v, tag).as_str().unwrap_or_default().to_string()
}

fn sample(name: &str) -> PathBuf {
    samples().join(name)
}

/// Path of an instance's resource from its file.
fn instance_path(file: &Path) -> String {
    let attrs = dcmdump_values(file, &["0020,000d", "0020,000e", "0008,0018"]);
    format!(
        "/studies/{}/series/{}/instances/{}",
        attrs[0], attrs[1], attrs[2]
    )
}

/// Values of tags as dcmdump prints them (strings without brackets).
fn dcmdump_values(file: &Path, tags: &[&str]) -> Vec<String> {
    tags.iter()
        .map(|t| {
            let out = run(dcmtk("dcmdump").args(["-s", "+P", t]).arg(file));
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.split('[')
                .nth(1)
                .and_then(|s| s.split(']').next())
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

fn stow(server: &Server, path: &str, parts: &[(&str, &[u8])]) -> Resp {
    let dir = tempfile::tempdir().expect("tempdir");
    let body = dir.path().join("body");
    let boundary = "pacs-test-boundary-7d3f";
    let mut bytes = Vec::new();
    for (ct, data) in parts {
        bytes.extend_from_slice(format!("--{boundary}\r\nContent-Type: {ct}\r\n\r\n").as_bytes());
        bytes.extend_from_slice(data);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    std::fs::write(&body, bytes).expect("write body");
    curl(&[
        "-X",
        "POST",
        "-H",
        &format!(
            "Content-Type: multipart/related; type=\"application/dicom\"; boundary={boundary}"
        ),
        "-H",
        "Accept: application/dicom+json",
        "--data-binary",
        &format!("@{}", body.display()),
        &url(server, path),
    ])
}

#[test]
fn dicomweb_client_searches_retrieves_and_stores() {
    let (_tmp, data) = data_dir();
    let server = Server::start(&data);
    let files = sample_files();
    let out = run(python()
        .arg(repo().join("tests/support/dicomweb_check.py"))
        .arg("--url")
        .arg(url(&server, ""))
        .arg("--files")
        .args(&files));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "dicomweb_check failed:\n{text}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    // The checks really ran: every kind, and nothing failed.
    for kind in ["stow:", "qido:", "wado:", "metadata:", "frames:", "errors:"] {
        assert!(
            text.contains(&format!("PASS  {kind}")),
            "no {kind} checks:\n{text}"
        );
    }
    assert!(!text.contains("FAIL"), "{text}");
    assert_eq!(stats_tuple(&server.statistics()).3, files.len() as u64);
}

#[test]
fn qido_answers_with_json_pages_includefield_and_warnings() {
    let (_tmp, data) = data_dir();
    let server = Server::start(&data);
    storescu(&server, &sample_files());

    let all = get(&server, "/studies", "application/dicom+json");
    assert_eq!(all.status, 200);
    assert_eq!(all.header("content-type"), Some("application/dicom+json"));
    let studies = all.json();
    let studies = studies.as_array().expect("array");
    assert_eq!(studies.len(), 4);
    let ct = sample("ct_16bit_signed_implicit.dcm");
    let [study_uid, description, name] = <[String; 3]>::try_from(dcmdump_values(
        &ct,
        &["0020,000d", "0008,1030", "0010,0010"],
    ))
    .expect("three values");
    let doe = studies
        .iter()
        .find(|s| str_of(s, "0020000D") == study_uid)
        .expect("CT study listed");
    assert_eq!(doe["00100010"]["vr"], "PN");
    assert_eq!(first(doe, "00100010")["Alphabetic"], name.as_str());
    assert_eq!(first(doe, "00201208"), 4, "{doe}");
    assert_eq!(
        str_of(doe, "00081190"),
        url(&server, &format!("/studies/{study_uid}"))
    );
    // Not a default attribute: returned only when asked for (OHIF's includefield).
    assert!(doe.get("00081030").is_none());
    let with = get(
        &server,
        &format!("/studies?StudyInstanceUID={study_uid}&includefield=00081030,00080060"),
        "application/dicom+json",
    )
    .json();
    assert_eq!(str_of(&with[0], "00081030"), description);
    assert_eq!(
        str_of(&with[0], "00080060"),
        "CT",
        "Modality from the study's series"
    );

    // Paging with limit/offset walks the same list without overlap.
    let mut paged = Vec::new();
    for offset in 0..5 {
        let page = get(
            &server,
            &format!("/studies?limit=1&offset={offset}"),
            "application/json",
        );
        assert_eq!(page.status, 200);
        paged.extend(
            page.json()
                .as_array()
                .expect("array")
                .iter()
                .map(|s| str_of(s, "0020000D")),
        );
    }
    let listed: Vec<String> = studies.iter().map(|s| str_of(s, "0020000D")).collect();
    assert_eq!(paged, listed);

    // Keys by keyword or tag, wildcards, fuzzy names, relational series search.
    let by_tag = get(&server, "/studies?00100010=DOE*", "*/*").json();
    assert_eq!(by_tag.as_array().map(Vec::len), Some(1));
    assert_eq!(str_of(&by_tag[0], "0020000D"), study_uid);
    let fuzzy = get(
        &server,
        "/studies?PatientName=smi&fuzzymatching=true",
        "*/*",
    )
    .json();
    assert_eq!(first(&fuzzy[0], "00100010")["Alphabetic"], "SMITH^JOHN");
    let mr = get(&server, "/series?Modality=MR", "*/*").json();
    assert_eq!(mr.as_array().map(Vec::len), Some(1), "{mr}");
    assert_eq!(first(&mr[0], "00201209"), 3);
    assert!(
        mr[0].get("00100010").is_some(),
        "study attributes in /series"
    );
    let instances = get(
        &server,
        &format!("/studies/{study_uid}/instances?includefield=all"),
        "*/*",
    )
    .json();
    assert_eq!(instances.as_array().map(Vec::len), Some(4));
    assert!(instances[0].get("00280010").is_some());
    let none = get(&server, "/studies?PatientID=NOBODY", "*/*");
    assert_eq!((none.status, none.json()), (200, serde_json::json!([])));

    // Warnings for what is applied differently than asked; 400 with a reason for bad input.
    let capped = get(&server, "/studies?limit=5000", "*/*");
    assert_eq!(capped.status, 200);
    assert!(
        capped
            .headers_named("warning")
            .iter()
            .any(|w| w.starts_with("299 ")),
        "{:?}",
        capped.headers
    );
    let seq = get(&server, "/studies?ReferencedStudySequence=1", "*/*");
    assert_eq!(seq.status, 200);
    assert!(seq
        .header("warning")
        .is_some_and(|w| w.contains("sequence")));
    for bad in [
        "/studies?limit=abc",
        "/studies?limit=99999999999999999999999",
        "/studies?NoSuchKeyword=1",
        "/studies?StudyDate=yesterday",
        "/studies?fuzzymatching=sometimes",
        "/studies/..%2F..%2Fetc/series",
    ] {
        let r = get(&server, bad, "*/*");
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert!(r.json()["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    let xml = get(&server, "/studies", "application/dicom+xml");
    assert_eq!(xml.status, 406);
}

#[test]
fn wado_retrieves_stored_files_transcodes_and_caches() {
    let (_tmp, data) = data_dir();
    let server = Server::start(&data);
    storescu(&server, &sample_files());
    let ct = sample("ct_16bit_signed_implicit.dcm");
    let path = instance_path(&ct);
    let sop = path.rsplit('/').next().expect("sop").to_string();

    // As stored: the part is the stored file, byte for byte.
    let stored = get(
        &server,
        &path,
        "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
    );
    assert_eq!(stored.status, 200);
    let parts = stored.parts();
    assert_eq!(parts.len(), 1);
    assert!(
        parts[0].0.contains("transfer-syntax=1.2.840.10008.1.2\r")
            || parts[0].0.ends_with("transfer-syntax=1.2.840.10008.1.2")
    );
    let blob = std::fs::read(server.blob_path(&sop)).expect("blob");
    assert!(parts[0].1 == blob, "as-stored part differs from the blob");

    // Default: Explicit VR Little Endian, same data set values.
    let default = get(&server, &path, "multipart/related; type=application/dicom");
    let parts = default.parts();
    assert!(parts[0].0.contains(EXPLICIT_LE), "{}", parts[0].0);
    let dir = tempfile::tempdir().expect("tempdir");
    let got = dir.path().join("got.dcm");
    std::fs::write(&got, &parts[0].1).expect("write");
    let dump = run(dcmtk("dcmdump").args(["-s", "+P", "0002,0010"]).arg(&got));
    assert!(String::from_utf8_lossy(&dump.stdout).contains("LittleEndianExplicit"));
    assert_eq!(dataset_pixels(&got), dataset_pixels(&ct));

    // Caching: a strong ETag per representation, 304 when it matches.
    let tag = default.header("etag").expect("etag").to_string();
    assert!(default
        .header("cache-control")
        .is_some_and(|c| c.contains("private")));
    let again = curl(&[
        "-H",
        "Accept: multipart/related; type=application/dicom",
        "-H",
        &format!("If-None-Match: {tag}"),
        &url(&server, &path),
    ]);
    assert_eq!(again.status, 304);

    // A study: one part per instance, each with its Content-Location.
    let study = path.split("/series").next().expect("study path");
    let whole = get(
        &server,
        study,
        "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
    );
    assert_eq!(whole.parts().len(), 4);
    assert!(whole
        .parts()
        .iter()
        .all(|(h, _)| h.contains("Content-Location: http://127.0.0.1:")));
    // JPEG-LS is decoded (CharLS) for the default syntax; as stored it is sent untouched.
    let ls = instance_path(&sample(JPEG_LS));
    let decoded = get(&server, &ls, "multipart/related; type=application/dicom");
    assert_eq!(decoded.status, 200);
    assert!(decoded.parts()[0].0.contains(EXPLICIT_LE));
    let raw = get(
        &server,
        &ls,
        "multipart/related; type=application/dicom; transfer-syntax=*",
    );
    assert!(raw.parts()[0].0.contains("1.2.840.10008.1.2.4.80"));
    // Unknown UIDs and UIDs not under the path are 404.
    assert_eq!(get(&server, "/studies/1.2.3.4", "*/*").status, 404);
    let wrong_study = path.replacen(&study["/studies/".len()..], "1.2.3", 1);
    assert_eq!(get(&server, &wrong_study, "*/*").status, 404);
    assert_eq!(get(&server, &path, "image/png").status, 406);
}

/// Pixel Data values of a file, through the test venv's pydicom (independent of our reader).
fn dataset_pixels(file: &Path) -> String {
    let out = run(python().args([
        "-c",
        "import sys,hashlib,pydicom; d=pydicom.dcmread(sys.argv[1]); print(hashlib.sha256(d.pixel_array.tobytes()).hexdigest())",
    ]).arg(file));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn metadata_frames_and_bulk_data_links_resolve() {
    let (_tmp, data) = data_dir();
    let server = Server::start(&data);
    storescu(&server, &sample_files());
    let us = sample("us_rgb_multiframe.dcm");
    let path = instance_path(&us);

    let meta = curl(&[
        "-H",
        "Accept: application/dicom+json",
        "-H",
        "Accept-Encoding: gzip",
        "--compressed",
        &url(&server, &format!("{path}/metadata")),
    ]);
    assert_eq!(meta.status, 200);
    assert_eq!(meta.header("content-encoding"), Some("gzip"));
    let m = meta.json();
    assert_eq!(first(&m[0], "00280008"), 4, "NumberOfFrames as a number");
    let bulk = m[0]["7FE00010"]["BulkDataURI"]
        .as_str()
        .expect("pixel data link")
        .to_string();
    assert!(bulk.starts_with(&url(&server, &path)), "{bulk}");
    // The link resolves as given: the whole native Pixel Data (4 frames of 160x120 RGB).
    let px = curl(&[
        "-H",
        "Accept: multipart/related; type=application/octet-stream",
        &bulk,
    ]);
    assert_eq!(px.status, 200);
    assert_eq!(px.parts()[0].1.len(), 4 * 160 * 120 * 3);

    // Frames: the second frame equals the second quarter of the bulk data.
    let f2 = get(
        &server,
        &format!("{path}/frames/2"),
        "multipart/related; type=\"application/octet-stream\"",
    );
    assert_eq!(f2.status, 200);
    let parts = f2.parts();
    assert!(
        parts[0].0.contains("transfer-syntax=1.2.840.10008.1.2.1"),
        "{}",
        parts[0].0
    );
    let frame = 160 * 120 * 3;
    assert!(
        parts[0].1 == px.parts()[0].1[frame..2 * frame],
        "frame 2 bytes"
    );
    let three = get(&server, &format!("{path}/frames/1,3,4"), "*/*");
    assert_eq!(three.parts().len(), 3);
    for bad in ["frames/5", "frames/0", "frames/x"] {
        assert_eq!(
            get(&server, &format!("{path}/{bad}"), "*/*").status,
            400,
            "{bad}"
        );
    }
    // Compressed frames as stored, labelled with their syntax (what OHIF asks for).
    let cr = instance_path(&sample("cr_jpeg_lossless_monochrome1.dcm"));
    let raw = get(
        &server,
        &format!("{cr}/frames/1"),
        "multipart/related; type=application/octet-stream; transfer-syntax=*",
    );
    let parts = raw.parts();
    assert!(
        parts[0].0.contains("1.2.840.10008.1.2.4.70"),
        "{}",
        parts[0].0
    );
    assert_eq!(&parts[0].1[..2], &[0xFF, 0xD8], "a JPEG stream");

    // Behind a proxy the links follow X-Forwarded-*.
    let proxied = curl(&[
        "-H",
        "X-Forwarded-Proto: https",
        "-H",
        "X-Forwarded-Host: pacs.example.org",
        &url(&server, &format!("{path}/metadata")),
    ])
    .json();
    assert!(proxied[0]["7FE00010"]["BulkDataURI"]
        .as_str()
        .is_some_and(|u| u.starts_with("https://pacs.example.org/dicom-web/studies/")));
}

#[test]
fn stow_stores_reports_failures_and_survives_kill9() {
    let (_tmp, data) = data_dir();
    let mut server = Server::start(&data);
    let ct = std::fs::read(sample("ct_16bit_signed_implicit.dcm")).expect("read");
    let mr = std::fs::read(sample("mr_explicit.dcm")).expect("read");

    // One good, one unreadable, one not DICOM at all: 202 with a reason per failure.
    let r = stow(
        &server,
        "/studies",
        &[
            ("application/dicom", &ct),
            ("application/dicom", b"this is not DICOM"),
            ("application/pdf", b"%PDF-1.4"),
        ],
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let body = r.json();
    let referenced = body["00081199"]["Value"].as_array().expect("referenced");
    assert_eq!(referenced.len(), 1);
    let retrieve = str_of(&referenced[0], "00081190");
    assert!(
        retrieve.starts_with(&url(&server, "/studies/")),
        "{retrieve}"
    );
    let failed = body["00081198"]["Value"].as_array().expect("failed");
    assert_eq!(failed.len(), 2);
    assert!(failed.iter().all(|f| first(f, "00081197") == 0xC000));

    // The study in the URL must match: 409, nothing stored.
    let before = stats_tuple(&server.statistics());
    let r = stow(&server, "/studies/1.2.3.4", &[("application/dicom", &mr)]);
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(first(&r.json()["00081198"]["Value"][0], "00081197"), 0xA900);
    assert_eq!(stats_tuple(&server.statistics()), before);

    // Wrong media type and broken bodies: 4xx, nothing half-stored, still serving.
    let json = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data",
        "{}",
        &url(&server, "/studies"),
    ]);
    assert_eq!(json.status, 415);
    let broken = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: multipart/related; type=\"application/dicom\"; boundary=xyz",
        "--data-binary",
        "--xyz\r\nContent-Type: application/dicom\r\n\r\nDICM-truncated-without-end",
        &url(&server, "/studies"),
    ]);
    assert_eq!(broken.status, 400, "{}", broken.text());
    assert_eq!(stats_tuple(&server.statistics()), before);
    assert!(files_under(&data.join("blobs"))
        .iter()
        .all(|f| f.extension().is_some_and(|e| e == "dcm")));

    // Acknowledged means durable: kill -9 right after the 200, then read it back.
    let r = stow(&server, "/studies", &[("application/dicom", &mr)]);
    assert_eq!(r.status, 200, "{}", r.text());
    server.kill9();
    let server = Server::start(&data);
    let mr_path = instance_path(&sample("mr_explicit.dcm"));
    let back = get(
        &server,
        &mr_path,
        "multipart/related; type=application/dicom; transfer-syntax=*",
    );
    assert_eq!(back.status, 200);
    assert_eq!(
        dataset_bytes_of(&back.parts()[0].1),
        dataset_bytes(&sample("mr_explicit.dcm"))
    );
}

/// The data set of Part 10 bytes (after the File Meta Information).
fn dataset_bytes_of(part10: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("x.dcm");
    std::fs::write(&f, part10).expect("write");
    dataset_bytes(&f)
}

#[test]
fn stow_body_limit_and_delete() {
    let (_tmp, data) = data_dir();
    let config = data.parent().expect("parent").join("pacs.toml");
    std::fs::write(&config, "max_stow_bytes = 200000\n").expect("config");
    let server = Server::start_with_config(&data, &config);
    let ct = std::fs::read(sample("ct_16bit_signed_implicit.dcm")).expect("read");
    let r = stow(&server, "/studies", &[("application/dicom", &ct)]);
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(stats_tuple(&server.statistics()).3, 0);

    storescu(&server, &sample_files());
    let ct_path = instance_path(&sample("ct_16bit_signed_implicit.dcm"));
    let sop = ct_path.rsplit('/').next().expect("sop").to_string();
    let blob = server.blob_path(&sop);
    assert!(blob.exists());
    let study = ct_path.split("/series").next().expect("study").to_string();
    let series = ct_path
        .split("/instances")
        .next()
        .expect("series")
        .to_string();

    let study_uid = study["/studies/".len()..].to_string();
    let count = |server: &Server| -> Option<u64> {
        let q = get(
            server,
            &format!("/studies?StudyInstanceUID={study_uid}"),
            "*/*",
        )
        .json();
        q.get(0).map(|s| first(s, "00201208").as_u64().unwrap_or(0))
    };
    assert_eq!(count(&server), Some(4));

    // Delete one instance: its record and file go; the study counts follow.
    let del = curl(&["-X", "DELETE", &url(&server, &ct_path)]);
    assert_eq!(del.status, 204, "{}", del.text());
    assert!(!blob.exists(), "blob file removed");
    assert_eq!(get(&server, &ct_path, "*/*").status, 404);
    assert_eq!(count(&server), Some(3));
    // Delete the series (the study's only one): the study goes with it.
    assert_eq!(curl(&["-X", "DELETE", &url(&server, &series)]).status, 204);
    assert_eq!(count(&server), None);
    assert_eq!(get(&server, &study, "*/*").status, 404);
    assert_eq!(curl(&["-X", "DELETE", &url(&server, &study)]).status, 404);
    let stats = stats_tuple(&server.statistics());
    assert_eq!(stats.1, 3, "three studies left: {stats:?}");
}

#[test]
fn cors_and_static_viewer_are_served() {
    let (_tmp, data) = data_dir();
    let root = data.parent().expect("parent").to_path_buf();
    let viewer = root.join("viewer");
    std::fs::create_dir_all(viewer.join("assets")).expect("mkdir");
    std::fs::write(viewer.join("index.html"), "<html>viewer</html>").expect("write");
    std::fs::write(viewer.join("assets/app.js"), "console.log(1)").expect("write");
    let config = root.join("pacs.toml");
    std::fs::write(&config, "cors_origins = [\"http://viewer.example\"]\n").expect("config");
    let server = Server::start_with(
        &data,
        ServerOptions {
            extra_args: &[
                "--config",
                config.to_str().expect("utf-8"),
                "--viewer-dir",
                viewer.to_str().expect("utf-8"),
            ],
            ..Default::default()
        },
    );
    let base = format!("http://127.0.0.1:{}", server.http_port);
    let pre = curl(&[
        "-X",
        "OPTIONS",
        "-H",
        "Origin: http://viewer.example",
        "-H",
        "Access-Control-Request-Method: GET",
        &format!("{base}/dicom-web/studies"),
    ]);
    assert_eq!(
        pre.header("access-control-allow-origin"),
        Some("http://viewer.example")
    );
    let other = curl(&[
        "-H",
        "Origin: http://evil.example",
        &format!("{base}/dicom-web/studies"),
    ]);
    assert_eq!(other.header("access-control-allow-origin"), None);

    let index = curl(&[&format!("{base}/viewer/")]);
    assert_eq!(
        (index.status, index.text()),
        (200, "<html>viewer</html>".to_string())
    );
    let route = curl(&[&format!("{base}/viewer/viewer?StudyInstanceUIDs=1.2.3")]);
    assert_eq!(
        (route.status, route.text()),
        (200, "<html>viewer</html>".to_string())
    );
    let js = curl(&[&format!("{base}/viewer/assets/app.js")]);
    assert_eq!(js.status, 200);
    assert!(js
        .header("content-type")
        .is_some_and(|c| c.contains("javascript")));
    assert_eq!(
        curl(&[&format!("{base}/viewer/assets/missing.js")]).status,
        404
    );
    assert_eq!(
        curl(&[&format!("{base}/viewer/..%2Fpacs.toml")]).status,
        404
    );
}

#[test]
fn ohif_lists_and_displays_a_stored_study() {
    let dist = repo().join(".cache/ohif/dist");
    assert!(
        dist.join("index.html").is_file(),
        "OHIF is not installed: run tests/ohif/setup.sh (scripts/setup test does)"
    );
    let (_tmp, data) = data_dir();
    let server = Server::start_with(
        &data,
        ServerOptions {
            extra_args: &["--viewer-dir", dist.to_str().expect("utf-8")],
            ..Default::default()
        },
    );
    let ct = sample("ct_16bit_signed_implicit.dcm");
    storescu(&server, &sample_files());
    let study = dcmdump_values(&ct, &["0020,000d"]).remove(0);
    let shots = repo().join("target/test-artifacts/ohif");
    std::fs::create_dir_all(&shots).expect("artifact dir");
    let out = run(Command::new("node")
        .arg(repo().join("tests/ohif/e2e.mjs"))
        .args(["--base", &format!("http://127.0.0.1:{}", server.http_port)])
        .args([
            "--patient-name",
            "DOE^JANE^M",
            "--study-uid",
            &study,
            "--strict",
        ])
        .arg("--screenshot-dir")
        .arg(&shots));
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "OHIF e2e failed:\n{summary}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let line = summary
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .expect("summary line");
    let v: Value = serde_json::from_str(line).expect("summary JSON");
    assert_eq!(v["patientFound"], true);
    assert!(v["nonblankFraction"].as_f64().unwrap_or(0.0) > 0.01, "{v}");
    assert!(shots.join("viewer.png").is_file());
}
