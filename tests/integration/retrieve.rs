//! C-MOVE to a dcmtk storescp destination, driven by dcmtk movescu and pynetdicom; C-GET
//! with dcmtk getscu and pynetdicom.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use serde_json::json;

use crate::support::*;

use pacs_storage::pg::testing::free_port;

/// dcmtk storescp as move destination: accepts every transfer syntax, keeps bytes as received.
struct Destination {
    child: Child,
    dir: std::path::PathBuf,
    port: u16,
}

impl Destination {
    fn start(dir: &Path) -> Destination {
        Destination::start_with(dir, "+xa")
    }

    /// `accept` is storescp's transfer syntax option (`+xa` all, `+xi` implicit VR LE only).
    fn start_with(dir: &Path, accept: &str) -> Destination {
        std::fs::create_dir_all(dir).expect("mkdir");
        // The free port may be taken again before storescp binds it (tests beside this one
        // open many connections): then storescp exits, and we try another port.
        for _ in 0..5 {
            let port = free_port();
            let mut child = dcmtk("storescp")
                .args([accept, "+B", "-aet", "DEST", "-od"])
                .arg(dir)
                .arg(port.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("storescp");
            for _ in 0..100 {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Destination {
                        child,
                        dir: dir.to_path_buf(),
                        port,
                    };
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("storescp did not start on any of five ports");
    }

    fn files(&self) -> Vec<std::path::PathBuf> {
        let mut f = files_under(&self.dir);
        f.sort();
        f
    }
}

impl Drop for Destination {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn setup(tmp: &Path, data: &Path, dest_port: u16) -> Server {
    let closed_port = free_port();
    std::fs::write(
        tmp.join("pacs.toml"),
        format!(
            "[[nodes]]\nae_title = \"DEST\"\nhost = \"127.0.0.1\"\nport = {dest_port}\n\n\
             [[nodes]]\nae_title = \"DOWN\"\nhost = \"127.0.0.1\"\nport = {closed_port}\n"
        ),
    )
    .expect("pacs.toml");
    let server = Server::start(data);
    storescu(&server, &sample_files());
    server
}

fn study_of(server: &Server, sample: &str) -> (String, String) {
    let (sop, _) = file_uids(&samples().join(sample));
    let rec = server.json(&format!("/api/instances/{sop}"));
    (
        rec["study_instance_uid"]
            .as_str()
            .expect("study")
            .to_string(),
        rec["series_instance_uid"]
            .as_str()
            .expect("series")
            .to_string(),
    )
}

/// Every received file's data set equals the sample's with the same SOP Instance UID.
fn assert_received_as_stored(dest: &Destination, expected: usize) {
    let files = dest.files();
    assert_eq!(files.len(), expected, "{files:?}");
    for f in files {
        let (sop, _) = file_uids(&f);
        let original = sample_files()
            .into_iter()
            .find(|s| file_uids(s).0 == sop)
            .expect("a sample with this SOP Instance UID");
        assert!(
            dataset_bytes(&f) == dataset_bytes(&original),
            "{} arrived changed",
            original.display()
        );
    }
}

/// The received files by SOP Instance UID; panics unless they are exactly the samples named
/// (one file each), so a loop over them checks every one of those and nothing less.
fn received_exactly(dest: &Destination, samples_expected: &[&str]) -> Vec<(PathBuf, PathBuf)> {
    let files = dest.files();
    let mut want: Vec<(String, PathBuf)> = samples_expected
        .iter()
        .map(|name| {
            let path = samples().join(name);
            (file_uids(&path).0, path)
        })
        .collect();
    want.sort();
    let mut got: Vec<(String, PathBuf)> =
        files.iter().map(|f| (file_uids(f).0, f.clone())).collect();
    got.sort();
    let got_uids: Vec<&String> = got.iter().map(|(u, _)| u).collect();
    let want_uids: Vec<&String> = want.iter().map(|(u, _)| u).collect();
    assert_eq!(
        got_uids, want_uids,
        "received {files:?}, expected {samples_expected:?}"
    );
    want.into_iter()
        .zip(got)
        .map(|((_, original), (_, received))| (original, received))
        .collect()
}

#[test]
fn movescu_moves_a_study_byte_for_byte() {
    let (tmp, data) = data_dir();
    let dest = Destination::start(&tmp.path().join("dest"));
    let server = setup(tmp.path(), &data, dest.port);
    // The CR study: a JPEG lossless CR and a JPEG baseline secondary capture.
    let (study, _) = study_of(&server, "cr_jpeg_lossless_monochrome1.dcm");
    let out = run(dcmtk("movescu").args([
        "-S",
        "-aec",
        AE,
        "-aem",
        "DEST",
        "127.0.0.1",
        &server.port(),
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        &format!("StudyInstanceUID={study}"),
    ]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_received_as_stored(&dest, 2);
}

#[test]
fn pynetdicom_moves_series_and_images_in_both_models() {
    let (tmp, data) = data_dir();
    let dest = Destination::start(&tmp.path().join("dest"));
    let server = setup(tmp.path(), &data, dest.port);

    // Series level, patient root: the MR series (explicit LE, RLE and big endian instances).
    let (study, series) = study_of(&server, "mr_rle.dcm");
    let v = scu(&[
        "move",
        &server.port(),
        "patient",
        "DEST",
        &json!({"QueryRetrieveLevel": "SERIES", "PatientID": "MRN-200871",
                "StudyInstanceUID": study, "SeriesInstanceUID": series})
        .to_string(),
    ]);
    assert_eq!(v["status"], 0, "{v}");
    assert_eq!(v["completed"], 3, "{v}");
    assert_eq!(v["failed"], 0, "{v}");
    assert_eq!(
        v["pending"], 2,
        "a pending response per sub-operation but the last: {v}"
    );
    assert_received_as_stored(&dest, 3);

    // Image level, study root: one CT slice.
    let (ct_sop, _) = file_uids(&samples().join("ct_jpeg2000_lossless.dcm"));
    let (study, series) = study_of(&server, "ct_jpeg2000_lossless.dcm");
    let v = scu(&[
        "move",
        &server.port(),
        "study",
        "DEST",
        &json!({"QueryRetrieveLevel": "IMAGE", "StudyInstanceUID": study,
                "SeriesInstanceUID": series, "SOPInstanceUID": ct_sop})
        .to_string(),
    ]);
    assert_eq!(v["status"], 0, "{v}");
    assert_eq!(v["completed"], 1, "{v}");
    assert_received_as_stored(&dest, 4);

    // Patient level, patient root: everything of DOE^JANE (the 4 CT slices, one already there).
    let v = scu(&[
        "move",
        &server.port(),
        "patient",
        "DEST",
        &json!({"QueryRetrieveLevel": "PATIENT", "PatientID": "MRN-100234"}).to_string(),
    ]);
    assert_eq!(v["completed"], 4, "{v}");
    assert_received_as_stored(&dest, 7);
}

#[test]
fn unknown_or_unreachable_destinations_are_refused() {
    let (tmp, data) = data_dir();
    let dest = Destination::start(&tmp.path().join("dest"));
    let server = setup(tmp.path(), &data, dest.port);
    let (study, _) = study_of(&server, "us_rgb_multiframe.dcm");
    let keys = json!({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study}).to_string();

    let v = scu(&["move", &server.port(), "study", "NOWHERE", &keys]);
    assert_eq!(v["status"], 0xA801, "{v}");
    let v = scu(&["move", &server.port(), "study", "DOWN", &keys]);
    assert_eq!(v["status"], 0xA702, "{v}");
    assert_eq!(v["failed"], 1, "{v}");
    assert!(dest.files().is_empty());

    server.assert_echo();
}

#[test]
fn c_get_returns_instances_on_the_same_association() {
    let (tmp, data) = data_dir();
    let dest = Destination::start(&tmp.path().join("dest"));
    let server = setup(tmp.path(), &data, dest.port);

    // The ultrasound study: one explicit VR little endian instance, retrieved with pynetdicom.
    let (study, _) = study_of(&server, "us_rgb_multiframe.dcm");
    let got = tmp.path().join("got");
    let v = scu(&[
        "get",
        &server.port(),
        "study",
        &got.display().to_string(),
        &json!({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study}).to_string(),
    ]);
    assert_eq!(v["status"], 0, "{v}");
    assert_eq!(v["completed"], 1, "{v}");
    let (sop, _) = file_uids(&samples().join("us_rgb_multiframe.dcm"));
    let raw = std::fs::read(got.join(format!("{sop}.raw"))).expect("received data set");
    assert!(
        raw == dataset_bytes(&samples().join("us_rgb_multiframe.dcm")),
        "bytes differ"
    );

    // The MR series holds RLE and big endian instances too: the requestor proposed only
    // uncompressed little endian, so the big endian one is re-encoded and the RLE one decoded.
    let (study, series) = study_of(&server, "mr_rle.dcm");
    let v = scu(&[
        "get",
        &server.port(),
        "patient",
        &got.display().to_string(),
        &json!({"QueryRetrieveLevel": "SERIES", "PatientID": "MRN-200871",
                "StudyInstanceUID": study, "SeriesInstanceUID": series})
        .to_string(),
    ]);
    assert_eq!(v["status"], 0, "{v}");
    assert_eq!(
        (v["completed"].as_u64(), v["failed"].as_u64()),
        (Some(3), Some(0)),
        "{v}"
    );
    check_get_of_the_mr_series(&v, &got, tmp.path());

    // dcmtk getscu, study level.
    let out_dir = tmp.path().join("getscu");
    let (study, _) = study_of(&server, "us_rgb_multiframe.dcm");
    let files = getscu_study(&server, &study, &out_dir);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(dataset_bytes(&files[0]) == dataset_bytes(&samples().join("us_rgb_multiframe.dcm")));
    server.assert_echo();
}

/// The MR series fetched by C-GET with only uncompressed little endian proposed: each of its
/// three instances arrived in the syntax negotiated for it, the explicit LE one as stored, the
/// big endian one re-encoded exactly as dcmtk's dcmconv re-encodes it, the RLE one decoded to
/// dcmtk's dcmdrle pixels.
fn check_get_of_the_mr_series(v: &serde_json::Value, got: &Path, tmp: &Path) {
    const IMPLICIT: &str = "1.2.840.10008.1.2";
    const EXPLICIT: &str = "1.2.840.10008.1.2.1";
    let received = v["received"].as_object().expect("received syntaxes");
    let ts_of = |name: &str| -> (String, String) {
        let (sop, _) = file_uids(&samples().join(name));
        let ts = received
            .get(&sop)
            .and_then(|t| t.as_str())
            .unwrap_or_else(|| panic!("{name} ({sop}) not received: {v}"))
            .to_string();
        assert!(
            [IMPLICIT, EXPLICIT].contains(&ts.as_str()),
            "{name} arrived in {ts}, which was not proposed"
        );
        (sop, ts)
    };
    let dcmconv_option = |ts: &str| if ts == IMPLICIT { "+ti" } else { "+te" };
    let raw = |sop: &str| std::fs::read(got.join(format!("{sop}.raw"))).expect("received data set");

    let (sop, ts) = ts_of("mr_explicit.dcm");
    let original = samples().join("mr_explicit.dcm");
    let expected = if ts == EXPLICIT {
        dataset_bytes(&original)
    } else {
        let converted = tmp.join(format!("{sop}.dcmconv"));
        let out = run(dcmtk("dcmconv").arg("+ti").arg(&original).arg(&converted));
        assert!(out.status.success());
        dataset_bytes(&converted)
    };
    assert!(
        raw(&sop) == expected,
        "mr_explicit.dcm arrived changed ({ts})"
    );

    let (sop, ts) = ts_of("mr_explicit_big_endian.dcm");
    let converted = tmp.join(format!("{sop}.dcmconv"));
    let out = run(dcmtk("dcmconv")
        .arg(dcmconv_option(&ts))
        .arg(samples().join("mr_explicit_big_endian.dcm"))
        .arg(&converted));
    assert!(out.status.success());
    assert!(
        raw(&sop) == dataset_bytes(&converted),
        "the big endian instance re-encoded to {ts} differs from dcmconv {}'s",
        dcmconv_option(&ts)
    );

    let (sop, ts) = ts_of("mr_rle.dcm");
    let reference = tmp.join(format!("{sop}.dcmdrle"));
    let out = run(dcmtk("dcmdrle")
        .arg(samples().join("mr_rle.dcm"))
        .arg(&reference));
    assert!(out.status.success());
    assert_eq!(
        compare_pixels(&got.join(format!("{sop}.dcm")), &reference),
        (true, 0.0),
        "the RLE instance arrived decoded ({ts}) with dcmdrle's pixels"
    );
    assert_eq!(received.len(), 3, "{v}");
}

#[test]
fn cancel_stops_a_move_and_a_get_between_sub_operations() {
    let (tmp, data) = data_dir();
    let dest = Destination::start(&tmp.path().join("dest"));
    let server = setup(tmp.path(), &data, dest.port);
    // One series of 300 small instances.
    let gen = tmp.path().join("gen");
    generate(
        &gen,
        300,
        &[
            "--rows",
            "16",
            "--cols",
            "16",
            "--per-series",
            "300",
            "--seed",
            "cancel",
        ],
    );
    let v = scu(&["store", &server.port(), &gen.display().to_string()]);
    assert_eq!(v["statuses"]["0x0000"], 300, "{v}");
    let first = files_under(&gen)
        .into_iter()
        .next()
        .expect("a generated file");
    let (sop, _) = file_uids(&first);
    let study = server.json(&format!("/api/instances/{sop}"))["study_instance_uid"].clone();

    let v = scu(&[
        "move",
        &server.port(),
        "study",
        "DEST",
        &json!({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study}).to_string(),
        "--cancel-after",
        "1",
    ]);
    assert_eq!(v["status"], 0xFE00, "{v}");
    let completed = v["completed"].as_u64().unwrap_or(0);
    assert!((1..300).contains(&completed), "cancelled part way: {v}");
    assert_eq!(
        dest.files().len() as u64,
        completed,
        "the destination holds what was completed"
    );

    // The same study by C-GET, cancelled after the first sub-operation.
    let got = tmp.path().join("got");
    let v = scu(&[
        "get",
        &server.port(),
        "study",
        &got.display().to_string(),
        &json!({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study}).to_string(),
        "--cancel-after",
        "1",
    ]);
    assert_eq!(v["status"], 0xFE00, "{v}");
    let completed = v["completed"].as_u64().unwrap_or(0);
    assert!(
        (1..300).contains(&completed),
        "C-GET cancelled part way: {v}"
    );
    server.assert_echo();
}

#[test]
fn native_instances_are_re_encoded_for_an_implicit_only_destination() {
    let (tmp, data) = data_dir();
    let dest = Destination::start_with(&tmp.path().join("dest"), "+xi");
    let server = setup(tmp.path(), &data, dest.port);
    let (study, _) = study_of(&server, "mr_explicit.dcm");
    let v = scu(&[
        "move",
        &server.port(),
        "study",
        "DEST",
        &json!({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study}).to_string(),
    ]);
    // explicit LE and explicit BE are re-encoded, RLE is decoded, all to implicit VR.
    assert_eq!(v["status"], 0, "{v}");
    assert_eq!(v["completed"], 3, "{v}");
    let (rle, _) = file_uids(&samples().join("mr_rle.dcm"));
    let received = received_exactly(
        &dest,
        &[
            "mr_explicit.dcm",
            "mr_explicit_big_endian.dcm",
            "mr_rle.dcm",
        ],
    );
    for (original, f) in received {
        let (sop, ts) = file_uids(&f);
        assert_eq!(
            ts,
            "1.2.840.10008.1.2",
            "{} arrived as implicit VR",
            f.display()
        );
        let converted = tmp.path().join(format!("{sop}.implicit"));
        if sop == rle {
            // dcmtk's RLE decoder gives the reference pixels.
            let out = run(dcmtk("dcmdrle").arg(&original).arg(&converted));
            assert!(out.status.success());
            assert_eq!(
                compare_pixels(&f, &converted),
                (true, 0.0),
                "RLE decode differs"
            );
        } else {
            // Same data set as dcmtk's own conversion of the original to implicit VR.
            let out = run(dcmtk("dcmconv")
                .args(["+ti"])
                .arg(&original)
                .arg(&converted));
            assert!(out.status.success());
            assert!(
                dataset_bytes(&f) == dataset_bytes(&converted),
                "{} re-encoded differently",
                original.display()
            );
        }
    }
}

#[test]
fn compressed_instances_are_decoded_for_an_uncompressed_only_destination() {
    let (tmp, data) = data_dir();
    // storescp's default accepts only uncompressed transfer syntaxes.
    let dest = Destination::start_with(&tmp.path().join("dest"), "+x=");
    let server = setup(tmp.path(), &data, dest.port);

    // CR study: JPEG lossless CR and JPEG baseline secondary capture.
    let (study, _) = study_of(&server, "cr_jpeg_lossless_monochrome1.dcm");
    let v = scu(&[
        "move",
        &server.port(),
        "study",
        "DEST",
        &json!({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study}).to_string(),
    ]);
    assert_eq!(v["status"], 0, "{v}");
    assert_eq!(v["completed"], 2, "{v}");
    let received = received_exactly(
        &dest,
        &[
            "cr_jpeg_lossless_monochrome1.dcm",
            "sc_rgb_jpeg_baseline.dcm",
        ],
    );
    for (original, f) in received {
        let (sop, ts) = file_uids(&f);
        assert!(
            ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"].contains(&ts.as_str()),
            "{ts}"
        );
        // dcmtk's own decoder gives the reference pixels.
        let reference = tmp.path().join(format!("{sop}.dcmdjpeg"));
        let out = run(dcmtk("dcmdjpeg").arg(&original).arg(&reference));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (same_shape, max_diff) = compare_pixels(&f, &reference);
        assert!(same_shape, "{}", original.display());
        let lossless = file_uids(&original).1 == "1.2.840.10008.1.2.4.70";
        let tolerance = if lossless { 0.0 } else { 8.0 };
        assert!(
            max_diff <= tolerance,
            "{}: max diff {max_diff}",
            original.display()
        );
    }

    // CT study: implicit (sent as is), deflated (re-encoded), JPEG 2000 and JPEG-LS (decoded).
    let (study, _) = study_of(&server, "ct_jpegls_lossless.dcm");
    let v = scu(&[
        "move",
        &server.port(),
        "study",
        "DEST",
        &json!({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study}).to_string(),
    ]);
    assert_eq!(v["status"], 0, "{v}");
    assert_eq!(
        (v["completed"].as_u64(), v["failed"].as_u64()),
        (Some(4), Some(0)),
        "{v}"
    );
    received_exactly(
        &dest,
        &[
            "cr_jpeg_lossless_monochrome1.dcm",
            "sc_rgb_jpeg_baseline.dcm",
            "ct_16bit_signed_implicit.dcm",
            "ct_deflated.dcm",
            "ct_jpeg2000_lossless.dcm",
            "ct_jpegls_lossless.dcm",
        ],
    );
    // Lossless JPEG-LS: our decode (CharLS) equals dcmtk's dcmdjpls decode of the original.
    let (jls, _) = file_uids(&samples().join("ct_jpegls_lossless.dcm"));
    let received = dest
        .files()
        .into_iter()
        .find(|f| file_uids(f).0 == jls)
        .expect("JPEG-LS moved");
    let reference = tmp.path().join("jls.dcmdjpls");
    let out = run(dcmtk("dcmdjpls")
        .arg(samples().join("ct_jpegls_lossless.dcm"))
        .arg(&reference));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (same_shape, max_diff) = compare_pixels(&received, &reference);
    assert!(
        same_shape && max_diff == 0.0,
        "JPEG-LS decode differs: {max_diff}"
    );
    let (j2k, _) = file_uids(&samples().join("ct_jpeg2000_lossless.dcm"));
    let received = dest
        .files()
        .into_iter()
        .find(|f| file_uids(f).0 == j2k)
        .expect("J2K moved");
    // Lossless JPEG 2000: our decode equals pydicom's (pylibjpeg-openjpeg) decode of the original.
    let (same_shape, max_diff) =
        compare_pixels(&received, &samples().join("ct_jpeg2000_lossless.dcm"));
    assert!(
        same_shape && max_diff == 0.0,
        "J2K decode differs: {max_diff}"
    );
}
