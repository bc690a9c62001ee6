//! Real-world oddities, in files made for this test by tests/support/make_odd_files.py
//! (pydicom, dcmtk, OpenJPEG): UN-encoded standard attributes, no Modality, 1-bit and
//! fractional segmentations, Adobe-marked RGB JPEG, 12-bit JPEG, JPEG 2000 as scanners write
//! it, an invalid UID. What the server answers is compared with pydicom's reading of the same
//! files (tests/support/odd_check.py), and OHIF must still list and show studies with them.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::*;

/// The odd files in `dir`, with their manifest.
fn make_odd_files(dir: &Path) -> PathBuf {
    let odd = dir.join("odd");
    let out = run(python()
        .arg(repo().join("tests/support/make_odd_files.py"))
        .arg(&odd));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    odd
}

fn odd_check(server: &Server, odd: &Path) -> Value {
    let out = run(python()
        .arg(repo().join("tests/support/odd_check.py"))
        .arg(format!("http://127.0.0.1:{}/dicom-web", server.http_port))
        .arg(odd));
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|_| {
        panic!(
            "odd_check.py printed no JSON: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn first<'a>(attrs: &'a Value, tag: &str) -> &'a Value {
    &attrs[tag]["Value"][0]
}

#[test]
fn odd_files_are_stored_found_rendered_as_pydicom_reads_them() {
    let (tmp, data) = data_dir();
    let odd = make_odd_files(tmp.path());
    let server = Server::start(&data);
    let v = odd_check(&server, &odd);
    let file = |name: &str| &v[name];

    // A UID with a letter: refused, with the reason in the failure.
    let bad = file("bad_uid.dcm");
    assert_eq!(bad["stow"]["status"], 409, "{bad}");
    assert_eq!(bad["stow"]["reason"], 0xC000, "{bad}");
    let comment = bad["stow"]["comment"].as_str().unwrap_or("");
    assert!(comment.starts_with("invalid UID in"), "{comment}");

    for (name, entry) in v.as_object().expect("object") {
        if !name.ends_with(".dcm") || name == "bad_uid.dcm" {
            continue;
        }
        assert_eq!(entry["stow"]["status"], 200, "{name}: {entry}");
        if name == "j2k_offset.dcm" {
            // The codestream is larger than Rows x Columns: 406 naming it, not a panic.
            for (status, error) in [
                ("rendered_status", "rendered_error"),
                ("frames_status", "frames_error"),
            ] {
                assert_eq!(entry[status], 406, "{name}: {entry}");
                assert!(
                    entry[error].as_str().unwrap_or("").contains("codestream"),
                    "{name}: {entry}"
                );
            }
            continue;
        }
        assert_eq!(entry["rendered_status"], 200, "{name}: {entry}");
        assert_eq!(entry["frames_status"], 200, "{name}: {entry}");
        // Lossy JPEG: IDCTs may round a sample differently; everything else is exact.
        let lossy_jpeg = name.contains("jpeg");
        let max = entry["max_diff"].as_i64().unwrap_or(i64::MAX);
        assert!(max <= if lossy_jpeg { 4 } else { 0 }, "{name}: {entry}");
        if let Some(d) = entry["rendered_mean_diff"].as_f64() {
            assert!(
                d < 1.0,
                "{name}: rendered differs by {d} on average: {entry}"
            );
        }
    }
    // Colour and 1-bit renderings were compared at all.
    for name in [
        "rgb_jpeg_adobe_ids123.dcm",
        "rgb_jpeg_app14.dcm",
        "seg_binary.dcm",
    ] {
        assert!(file(name)["rendered_mean_diff"].is_number(), "{name}");
    }
    assert_eq!(file("seg_binary.dcm")["frames"], 3);
    assert_eq!(file("j2k_multiframe_fragments.dcm")["frames"], 2);

    // UN-encoded attributes are indexed with their proper values.
    let un = &file("un_encoded.dcm")["qido"][0];
    assert_eq!(first(un, "00100010")["Alphabetic"], "ODD^UN", "{un}");
    assert_eq!(first(un, "00100020"), "ODD-un", "{un}");
    assert_eq!(first(un, "00080061"), "CT", "{un}");
    assert_eq!(first(un, "00081030"), "UN ENCODED STUDY", "{un}");
    assert_eq!(first(un, "00080020"), "20240301", "{un}");
    // The study without Modality is listed; nothing in the list comes without a Value.
    let nomod = &file("no_modality.dcm")["qido"][0];
    assert!(nomod.get("00080061").is_none(), "{nomod}");
    assert_eq!(v["study_list"]["count"], 12, "{}", v["study_list"]);
    assert_eq!(v["study_list"]["without_value"], serde_json::json!([]));

    // dicomweb-client's default frame request gets the frame, uncompressed, as pydicom reads it.
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(odd.join("manifest.json")).expect("manifest"))
            .expect("manifest JSON");
    assert_eq!(
        v["dicomweb_client_frames"]["sha256"],
        manifest["j2k_tiles.dcm"]["sha256"]
    );

    // Over DIMSE the same UID is refused with the reason in the status comment.
    let out = run(dcmtk("storescu")
        .args(["-aec", AE, "127.0.0.1", &server.port()])
        .arg(odd.join("bad_uid.dcm")));
    assert!(!out.status.success());
    assert!(
        server
            .log()
            .contains("invalid UID in AffectedSOPInstanceUID"),
        "{}",
        server.log()
    );

    // A workstation that takes only uncompressed data (getscu's default) gets these JPEGs
    // decoded as pydicom decodes the originals: right colours, all 12 bits.
    for name in [
        "rgb_jpeg_app14.dcm",
        "rgb_jpeg_adobe_ids123.dcm",
        "ct_jpeg12.dcm",
    ] {
        let study = first(&file(name)["qido"][0], "0020000D")
            .as_str()
            .unwrap_or_else(|| panic!("{name} listed"))
            .to_string();
        let sop = file_uids(&odd.join(name)).0;
        let got = getscu_study(&server, &study, &tmp.path().join("get").join(name));
        let got = got
            .into_iter()
            .find(|f| file_uids(f).0 == sop)
            .unwrap_or_else(|| panic!("{name} not retrieved\n{}", server.log()));
        let ts = file_uids(&got).1;
        assert!(
            ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"].contains(&ts.as_str()),
            "{name} arrived as {ts}"
        );
        let (same_shape, max_diff) = compare_pixels(&got, &odd.join(name));
        assert!(same_shape && max_diff <= 4.0, "{name}: max diff {max_diff}");
    }

    // An administrator can name any stored key (even one no valid UID looks like) and delete.
    let study = first(un, "0020000D").as_str().expect("uid").to_string();
    let base = format!("http://127.0.0.1:{}", server.http_port);
    let delete = |path: &str| {
        let out = run(Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                "DELETE",
            ])
            .arg(format!("{base}{path}")));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(delete("/dicom-web/studies/49%5C46%5C50"), "404");
    assert_eq!(delete(&format!("/dicom-web/studies/{study}")), "204");
    let (code, body) = server.http(&format!("/dicom-web/studies?StudyInstanceUID={study}"));
    assert!(code == 200 && !body.contains(&study), "{code} {body}");
}

#[test]
fn ohif_lists_and_shows_studies_beside_odd_ones() {
    let dist = repo().join(".cache/ohif/dist");
    assert!(
        dist.join("index.html").is_file(),
        "OHIF is not installed: run tests/ohif/setup.sh (scripts/setup test does)"
    );
    let (tmp, data) = data_dir();
    let odd = make_odd_files(tmp.path());
    let server = Server::start_with(
        &data,
        ServerOptions {
            extra_args: &["--viewer-dir", dist.to_str().expect("utf-8")],
            ..Default::default()
        },
    );
    storescu(&server, &[samples().join("ct_16bit_signed_implicit.dcm")]);
    let v = odd_check(&server, &odd);
    assert_eq!(v["study_list"]["without_value"], serde_json::json!([]));
    let shots = repo().join("target/test-artifacts/ohif-odd");
    let uid_of = |name: &str| {
        first(&v[name]["qido"][0], "0020000D")
            .as_str()
            .unwrap_or_else(|| panic!("{name} listed: {}", v[name]))
            .to_string()
    };
    let (ct_study, _) =
        server.parents_of(&file_uids(&samples().join("ct_16bit_signed_implicit.dcm")).0);
    // The list loads with the UN-encoded, modality-less and segmentation studies in it, and
    // images show: a CT, the UN-encoded study, and the lossy JPEG 2000 CR.
    for (label, patient, study) in [
        ("ct", "DOE^JANE^M", ct_study),
        ("un", "ODD^UN", uid_of("un_encoded.dcm")),
        ("j2k-cr", "ODD^J2K_LOSSY_CR", uid_of("j2k_lossy_cr.dcm")),
    ] {
        let dir = shots.join(label);
        std::fs::create_dir_all(&dir).expect("artifact dir");
        let out = run(Command::new("node")
            .arg(repo().join("tests/ohif/e2e.mjs"))
            .args(["--base", &format!("http://127.0.0.1:{}", server.http_port)])
            .args(["--patient-name", patient, "--study-uid", &study, "--strict"])
            .arg("--screenshot-dir")
            .arg(&dir));
        let summary = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "OHIF with odd studies, {label}:\n{summary}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = summary
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .expect("summary");
        let s: Value = serde_json::from_str(line).expect("summary JSON");
        assert_eq!(s["patientFound"], true, "{label}: {s}");
        assert!(
            s["nonblankFraction"].as_f64().unwrap_or(0.0) > 0.01,
            "{label}: {s}"
        );
    }
}
