//! The AI worker in de-identified mode: the series reaches the AI service without the
//! patient's identity and with new UIDs; the SR it stores back by STOW-RS and the flag it
//! posts on the pseudonymous study land on the original study, under the real patient, with
//! the references put back.

use serde_json::Value;

use super::receiver::Receiver;
use super::stow_parts;
use crate::security::{add_user, api_key, curl, get, session};
use crate::support::*;

/// What pydicom reads of a Part 10 file.
fn read(path: &std::path::Path) -> Value {
    let script = r#"
import json, sys
import pydicom
ds = pydicom.dcmread(sys.argv[1], stop_before_pixels=True)
ev = ds.get("CurrentRequestedProcedureEvidenceSequence")
ref = ev[0].ReferencedSeriesSequence[0] if ev else None
print(json.dumps({"pid": str(ds.get("PatientID", "")), "pn": str(ds.get("PatientName", "")),
    "study": ds.StudyInstanceUID, "series": ds.SeriesInstanceUID, "sop": ds.SOPInstanceUID,
    "removed": str(ds.get("PatientIdentityRemoved", "")),
    "ref_series": ref.SeriesInstanceUID if ref else "",
    "ref_sop": ref.ReferencedSOPSequence[0].ReferencedSOPInstanceUID if ref else ""}))
"#;
    let out = run(python().args(["-c", script]).arg(path));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

#[test]
fn a_de_identified_ai_round_trip_comes_back_to_the_original_study() {
    let receiver = Receiver::start(0);
    let (tmp, data) = data_dir();
    let config = tmp.path().join("pacs.toml");
    std::fs::write(
        &config,
        format!(
            "data = {data:?}\nstable_after_secs = 0.5\n[auth]\n[workers.ai]\n\
             url = \"http://127.0.0.1:{}/ai\"\nprofile = \"basic\"\nproject = \"ai-trial\"\n\
             [workers]\nquality = false\n",
            receiver.port
        ),
    )
    .expect("config");
    add_user(&config, "admin", "admin", &[]);
    add_user(&config, "svc", "ai-service", &["--no-password"]);
    let key = api_key(&config, "svc");
    let server = Server::start_with_config(&data, &config);
    let admin = session(&server, "admin");
    let files = small_ct(&tmp.path().join("gen"), 2, "ai");
    storescu(&server, &files);
    let original = read(&files[0]);

    // What the AI service receives: no identity, other UIDs.
    let got = receiver.wait("the series at the AI service", |r| !r.is_empty(), &server);
    let parts = stow_parts(&got[0]);
    assert_eq!(parts.len(), 2);
    let received_dir = tmp.path().join("received");
    std::fs::create_dir_all(&received_dir).expect("mkdir");
    let mut sent = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let path = received_dir.join(format!("{i}.dcm"));
        std::fs::write(&path, p).expect("write");
        sent.push((path.clone(), read(&path)));
    }
    for (_, s) in &sent {
        assert_eq!(s["removed"], "YES", "{s}");
        assert_ne!(s["pid"], original["pid"], "{s}");
        assert_ne!(s["study"], original["study"], "{s}");
    }

    // The AI stores an SR on the pseudonymous study: it lands on the original one.
    let (sent_path, sent_attrs) = &sent[0];
    let result = tmp.path().join("result.dcm");
    let out = run(python()
        .arg(repo().join("tests/support/make_ai_result.py"))
        .arg(sent_path)
        .arg(&result));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sr_sop = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let boundary = "ai-result";
    let mut body = format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").into_bytes();
    body.extend(std::fs::read(&result).expect("read"));
    body.extend(format!("\r\n--{boundary}--\r\n").as_bytes());
    let body_path = tmp.path().join("result.multipart");
    std::fs::write(&body_path, body).expect("write");
    let pseudo_study = sent_attrs["study"].as_str().expect("study");
    let r = curl(
        &format!(
            "http://127.0.0.1:{}/dicom-web/studies/{pseudo_study}",
            server.http_port
        ),
        "POST",
        Some(&key),
        &[
            "-H",
            &format!(
                "Content-Type: multipart/related; type=\"application/dicom\"; boundary={boundary}"
            ),
            "--data-binary",
            &format!("@{}", body_path.display()),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let rec = get(&server, &format!("/api/instances/{sr_sop}"), Some(&admin)).json();
    assert_eq!(rec["study_instance_uid"], original["study"], "{rec}");
    let stored = data.join("blobs").join(rec["blob"].as_str().expect("blob"));
    let back = read(&stored);
    assert_eq!(back["pid"], original["pid"], "{back}");
    assert_eq!(back["pn"], original["pn"], "{back}");
    assert_eq!(back["removed"], "", "{back}");
    let sent_sop = sent_attrs["sop"].as_str().expect("sop");
    let original_sop = files
        .iter()
        .map(|f| read(f))
        .find(|o| {
            let back = get(
                &server,
                &format!("/api/pseudonyms?project=ai-trial&value={sent_sop}"),
                Some(&admin),
            )
            .json();
            back["entries"][0]["original"] == o["sop"]
        })
        .expect("the instance the SR read");
    assert_eq!(back["ref_sop"], original_sop["sop"], "{back}");
    assert_eq!(back["ref_series"], original["series"], "{back}");

    // A flag on the pseudonymous study lands on the original study.
    let flag = format!(
        r#"{{"label":"nodule","score":0.8,"severity":"high","source":"acme-ai","sop_instance_uid":"{sent_sop}"}}"#
    );
    let r = curl(
        &format!(
            "http://127.0.0.1:{}/api/studies/{pseudo_study}/flags",
            server.http_port
        ),
        "POST",
        Some(&key),
        &["-H", "Content-Type: application/json", "--data", &flag],
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let flags = get(
        &server,
        &format!(
            "/api/studies/{}/flags",
            original["study"].as_str().expect("study")
        ),
        Some(&admin),
    )
    .json();
    let f = &flags.as_array().expect("flags")[0];
    assert_eq!(f["sop_instance_uid"], original_sop["sop"], "{flags}");
    // A study that is neither here nor a pseudonym: 404 as before.
    let r = curl(
        &format!(
            "http://127.0.0.1:{}/api/studies/2.25.1/flags",
            server.http_port
        ),
        "POST",
        Some(&key),
        &["-H", "Content-Type: application/json", "--data", &flag],
    );
    assert_eq!(r.status, 404, "{}", r.text());
}
