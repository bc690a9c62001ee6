//! Workers against a real HTTP receiver (an axum app on a loopback port inside the test): what
//! they send, retries when the receiver fails, and delivery after kill -9 with the same
//! idempotency key.

mod ai_deid;
mod clinical;
mod corrections;
mod delivery;
pub(crate) mod receiver;
mod workflow;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;
use receiver::{Received, Receiver};

/// Validate FHIR resources against R4 4.0.1 (tests/support/fhir_check.py: fhir.resources
/// models, plus system URIs on every coding and zones on every dateTime with a time).
fn assert_fhir_r4(resources: &[Value]) {
    assert!(!resources.is_empty(), "no FHIR resources to check");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("resources.json");
    std::fs::write(&file, serde_json::to_vec(resources).expect("JSON")).expect("write");
    let out = run(python()
        .arg(repo().join("tests/support/fhir_check.py"))
        .arg(&file));
    assert!(
        out.status.success(),
        "not valid FHIR R4: {}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        serde_json::to_string_pretty(resources).unwrap_or_default()
    );
}

/// The FHIR bodies among what a receiver got.
fn fhir_bodies(got: &[Received]) -> Vec<Value> {
    got.iter()
        .filter(|r| r.content_type.starts_with("application/fhir+json"))
        .map(Received::json)
        .collect()
}

/// Poll a server route until `pred` holds for its JSON.
fn wait_json(server: &Server, path: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = server.json(path);
        if pred(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {path} gave {v}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Write `pacs.toml` beside the data directory.
fn write_config(data: &Path, text: &str) -> PathBuf {
    let path = data.parent().expect("parent").join("pacs.toml");
    std::fs::write(&path, text).expect("config");
    path
}

/// Run a test-data script (tests/support/NAME OUTDIR); its JSON summary.
fn make(script: &str, dir: &Path) -> Value {
    let out = run(python()
        .arg(repo().join("tests/support").join(script))
        .arg(dir));
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("summary")
}

fn config(data: &Path, receiver_port: u16) -> PathBuf {
    let path = data.parent().expect("parent").join("pacs.toml");
    std::fs::write(
        &path,
        format!(
            "stable_after_secs = 0.5\n\n[workers.ehr]\nurl = \"http://127.0.0.1:{receiver_port}/fhir\"\nbackoff_ms = 100\nmax_backoff_ms = 400\n"
        ),
    )
    .expect("config");
    path
}

fn start(data: &Path, config: &Path) -> Server {
    Server::start_with(
        data,
        ServerOptions {
            extra_args: &["--config", config.to_str().expect("utf-8")],
            ..Default::default()
        },
    )
}

fn ct_study() -> Vec<PathBuf> {
    [
        "ct_16bit_signed_implicit.dcm",
        "ct_jpegls_lossless.dcm",
        "ct_deflated.dcm",
        "ct_jpeg2000_lossless.dcm",
    ]
    .iter()
    .map(|f| samples().join(f))
    .collect()
}

fn delivered(r: &[Received]) -> bool {
    r.iter().any(|x| x.status == 201)
}

#[test]
fn ehr_gets_an_imaging_study_once_the_study_is_stable_retried_until_accepted() {
    let receiver = Receiver::start(2);
    let (_tmp, data) = data_dir();
    let server = start(&data, &config(&data, receiver.port));
    let files = ct_study();
    storescu(&server, &files);
    let got = receiver.wait("an accepted ImagingStudy", delivered, &server);

    // Two refusals, then accepted: three attempts of one delivery, one key.
    assert_eq!(got.len(), 3, "{got:#?}");
    assert_eq!(
        got.iter().map(|r| r.status).collect::<Vec<_>>(),
        [500, 500, 201]
    );
    assert!(got.iter().all(|r| r.key == got[0].key && !r.key.is_empty()));
    let ct = &files[0];
    let rec = server.json(&format!("/api/instances/{}", file_uids(ct).0));
    let study = rec["study_instance_uid"].as_str().expect("study");
    assert_eq!(got[2].method, "PUT");
    assert_eq!(
        got[2].uri,
        format!("/fhir/ImagingStudy?identifier=urn:dicom:uid%7Curn:oid:{study}")
    );
    let r = got[2].json();
    assert_fhir_r4(std::slice::from_ref(&r));
    assert_eq!(r["resourceType"], "ImagingStudy");
    assert_eq!(r["status"], "available");
    assert_eq!(r["identifier"][0]["value"], format!("urn:oid:{study}"));
    let study_rec = server.json(&format!("/api/studies/{study}"));
    let patient_id = study_rec["study"]["attributes"]["00100020"]["values"][0]
        .as_str()
        .expect("PatientID");
    assert_eq!(r["subject"]["identifier"]["value"], patient_id);
    assert_eq!(r["numberOfInstances"], 4);
    assert_eq!(r["numberOfSeries"], 1);
    assert_eq!(r["modality"][0]["code"], "CT");
    assert_eq!(r["series"][0]["numberOfInstances"], 4);
    assert_eq!(r["series"][0]["instance"].as_array().map(Vec::len), Some(4));
    assert!(r["started"].as_str().is_some_and(|s| s.len() >= 10));
    assert_eq!(r["endpoint"][0]["reference"], "#wado");
    assert_eq!(
        r["contained"][0]["address"],
        format!(
            "http://127.0.0.1:{}/dicom-web/studies/{study}",
            server.http_port
        )
    );

    // The delivery record says the same.
    let events = server.json("/api/events?worker=ehr");
    let d = &events[0];
    assert_eq!(d["state"], "delivered", "{events}");
    assert_eq!(d["attempts"], 3);
    assert_eq!(d["idempotency_key"], got[0].key.as_str());
}

#[test]
fn a_delivery_interrupted_by_kill9_completes_after_restart_with_the_same_key() {
    let receiver = Receiver::start(usize::MAX);
    let (_tmp, data) = data_dir();
    let cfg = config(&data, receiver.port);
    let mut server = start(&data, &cfg);
    storescu(&server, &ct_study());
    let failed = receiver.wait("a first attempt", |r| !r.is_empty(), &server);
    server.kill9();
    receiver.set_failures(0);
    let server = start(&data, &cfg);
    let got = receiver.wait("delivery after restart", delivered, &server);
    let ok = got.iter().find(|r| r.status == 201).expect("accepted");
    assert_eq!(
        ok.key, failed[0].key,
        "same idempotency key across the restart"
    );
    assert_eq!(got.iter().filter(|r| r.status == 201).count(), 1);
}

#[test]
fn a_bad_worker_url_stops_the_server_with_a_reason() {
    let (_tmp, data) = data_dir();
    let cfg = data.parent().expect("parent").join("pacs.toml");
    std::fs::write(&cfg, "[workers.ehr]\nurl = \"ftp://ehr\"\n").expect("config");
    let out = run(std::process::Command::new(env!("CARGO_BIN_EXE_pacs"))
        .args(["serve", "--dicom-port", "0", "--http-port", "0", "--config"])
        .arg(&cfg)
        .arg("--data")
        .arg(&data));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("workers.ehr.url"), "{err}");
}

#[test]
fn the_ehr_can_search_imaging_studies_over_fhir() {
    let (_tmp, data) = data_dir();
    let server = Server::start(&data);
    storescu(&server, &sample_files());
    let ct = samples().join("ct_16bit_signed_implicit.dcm");
    let rec = server.json(&format!("/api/instances/{}", file_uids(&ct).0));
    let study = rec["study_instance_uid"]
        .as_str()
        .expect("study")
        .to_string();
    let study_rec = server.json(&format!("/api/studies/{study}"));
    let pid = study_rec["study"]["attributes"]["00100020"]["values"][0]
        .as_str()
        .expect("PatientID")
        .to_string();

    let by_patient = server.json(&format!("/fhir/ImagingStudy?patient={pid}"));
    assert_eq!(by_patient["resourceType"], "Bundle");
    assert_eq!(by_patient["type"], "searchset");
    assert_eq!(by_patient["total"], 1, "{by_patient}");
    let r = &by_patient["entry"][0]["resource"];
    assert_eq!(r["identifier"][0]["value"], format!("urn:oid:{study}"));
    assert_eq!(r["numberOfInstances"], 4);
    let by_uid = server.json(&format!(
        "/fhir/ImagingStudy?identifier=urn:dicom:uid%7Curn:oid:{study}"
    ));
    assert_eq!(by_uid["total"], 1);
    assert_eq!(server.json("/fhir/ImagingStudy?modality=MR")["total"], 1);
    assert_eq!(server.json("/fhir/ImagingStudy")["total"], 4);
    assert_eq!(
        server.json("/fhir/ImagingStudy?started=ge2100-01-01")["total"],
        0
    );
    assert_fhir_r4(&[server.json("/fhir/ImagingStudy")]);
    let (code, body) = server.http("/fhir/ImagingStudy?color=blue");
    assert_eq!(code, 400, "{body}");
}

#[test]
fn billing_charges_or_holds_and_pharmacy_records_contrast_with_allergy_alerts() {
    let receiver = Receiver::start(0);
    let (tmp, data) = data_dir();
    let studies_dir = tmp.path().join("clinical");
    let out = run(python()
        .arg(repo().join("tests/support/make_clinical.py"))
        .arg(&studies_dir));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let uids: Value = serde_json::from_slice(&out.stdout).expect("summary");
    let cfg = data.parent().expect("parent").join("pacs.toml");
    std::fs::write(
        &cfg,
        format!(
            "stable_after_secs = 0.5\n[workers.billing]\nurl = \"http://127.0.0.1:{p}/billing\"\n[workers.pharmacy]\nurl = \"http://127.0.0.1:{p}/pharmacy\"\n",
            p = receiver.port
        ),
    )
    .expect("config");
    let server = start(&data, &cfg);
    storescu(&server, &files_under(&studies_dir));
    let to = |path: &'static str| move |r: &Received| r.uri == path;
    let got = receiver.wait(
        "2 billing and 3 pharmacy transactions",
        |r| {
            r.iter().filter(|x| to("/billing")(x)).count() == 2
                && r.iter().filter(|x| to("/pharmacy")(x)).count() == 3
        },
        &server,
    );
    let bundles = |path: &'static str| -> Vec<Value> {
        got.iter()
            .filter(|r| to(path)(r))
            .map(Received::json)
            .collect()
    };
    assert_fhir_r4(&fhir_bodies(&got));
    let subject_of =
        |b: &Value| b["entry"][0]["resource"]["subject"]["identifier"]["value"].clone();

    // Billing: A charged by its procedure code, C by its requested procedure; B held.
    let billing = bundles("/billing");
    assert!(billing.iter().all(|b| b["type"] == "transaction"));
    let a = billing
        .iter()
        .find(|b| subject_of(b) == "ALLERGY1")
        .expect("A billed");
    let charge = &a["entry"][0]["resource"];
    assert_eq!(charge["resourceType"], "ChargeItem");
    assert_eq!(charge["code"]["coding"][0]["code"], "71260");
    assert_eq!(
        charge["code"]["coding"][0]["system"],
        "http://www.ama-assn.org/go/cpt"
    );
    assert_eq!(charge["identifier"][0]["value"], "ACC-A1-71260");
    assert_eq!(charge["performer"][0]["actor"]["display"], "TECH^TOM");
    assert_eq!(a["entry"][0]["request"]["method"], "PUT");
    let c = billing
        .iter()
        .find(|b| subject_of(b) == "PET3")
        .expect("C billed");
    assert_eq!(
        c["entry"][0]["resource"]["code"]["coding"][0]["code"],
        "78815"
    );
    let held = server.json("/api/events?worker=billing&state=held");
    assert_eq!(held.as_array().map(Vec::len), Some(1), "{held}");
    let reason = held[0]["last_error"].as_str().unwrap_or_default();
    assert!(
        reason.contains("no AccessionNumber") && reason.contains("no procedure code"),
        "{reason}"
    );
    assert_eq!(held[0]["study_instance_uid"], uids["b"]);

    // Pharmacy: three administrations; the iodinated contrast given to the allergic patient
    // comes with a DetectedIssue.
    let pharmacy = bundles("/pharmacy");
    let a = pharmacy
        .iter()
        .find(|b| subject_of(b) == "ALLERGY1")
        .expect("A");
    let admin = &a["entry"][0]["resource"];
    assert_eq!(admin["resourceType"], "MedicationAdministration");
    assert_eq!(admin["medicationCodeableConcept"]["text"], "OMNIPAQUE 350");
    assert_eq!(admin["dosage"]["dose"]["value"], 80.0);
    assert_eq!(admin["dosage"]["route"]["text"], "IV");
    let alert = &a["entry"][1]["resource"];
    assert_eq!(alert["resourceType"], "DetectedIssue");
    assert_eq!(alert["severity"], "high");
    assert_eq!(alert["code"]["coding"][0]["code"], "ALGY", "{alert}");
    assert!(alert["detail"]
        .as_str()
        .is_some_and(|d| d.contains("Iodinated contrast - hives")));
    let b = pharmacy
        .iter()
        .find(|b| subject_of(b) == "NOACC2")
        .expect("B");
    assert_eq!(
        b["entry"].as_array().map(Vec::len),
        Some(1),
        "no allergy, no alert"
    );
    assert_eq!(
        b["entry"][0]["resource"]["medicationCodeableConcept"]["text"],
        "GADAVIST"
    );
    let c = pharmacy
        .iter()
        .find(|b| subject_of(b) == "PET3")
        .expect("C");
    assert_eq!(c["entry"][0]["resource"]["dosage"]["dose"]["unit"], "Bq");
    assert_eq!(
        c["entry"][0]["resource"]["dosage"]["dose"]["value"],
        370_000_000.0
    );
    // Every delivery has its own idempotency key.
    let mut keys: Vec<&str> = got.iter().map(|r| r.key.as_str()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), got.len());
}

/// The parts of a STOW-RS request (multipart/related; type="application/dicom"), parsed with
/// multer; each must say it is application/dicom.
pub(super) fn stow_parts(r: &Received) -> Vec<Vec<u8>> {
    assert!(
        r.content_type
            .starts_with("multipart/related; type=\"application/dicom\""),
        "{}",
        r.content_type
    );
    // (multer::parse_boundary accepts multipart/form-data only.)
    let boundary = r
        .content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .expect("boundary")
        .trim_matches('"')
        .to_string();
    let body = axum::body::Bytes::from(r.body.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let stream = futures_util::stream::iter([Ok::<_, std::io::Error>(body)]);
        let mut multipart = multer::Multipart::new(stream, boundary);
        let mut parts = Vec::new();
        while let Some(field) = multipart.next_field().await.expect("a well-formed part") {
            assert_eq!(
                field.content_type().map(|m| m.essence_str().to_string()),
                Some("application/dicom".to_string())
            );
            parts.push(field.bytes().await.expect("part body").to_vec());
        }
        parts
    })
}

/// The SOP Instance UID of a Part 10 file in memory (parsed by dicom-object).
fn sop_instance_uid(file: &[u8]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("part.dcm");
    std::fs::write(&path, file).expect("write");
    let obj = dicom_object::open_file(&path).expect("a DICOM Part 10 file");
    obj.element(dicom_dictionary_std::tags::SOP_INSTANCE_UID)
        .expect("SOP Instance UID")
        .to_str()
        .expect("text")
        .trim_end_matches('\0')
        .to_string()
}

#[test]
fn quality_flags_ai_results_and_the_worklist() {
    let receiver = Receiver::start(0);
    let (tmp, data) = data_dir();
    let dir = tmp.path().join("quality");
    let out = run(python()
        .arg(repo().join("tests/support/make_quality.py"))
        .arg(&dir));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let uids: Value = serde_json::from_slice(&out.stdout).expect("summary");
    let (gap, clean) = (
        uids["gap"].as_str().expect("gap").to_string(),
        uids["clean"].as_str().expect("clean").to_string(),
    );
    let cfg = data.parent().expect("parent").join("pacs.toml");
    std::fs::write(
        &cfg,
        format!(
            "stable_after_secs = 0.5\n[workers.ai]\nurl = \"http://127.0.0.1:{}/ai\"\n",
            receiver.port
        ),
    )
    .expect("config");
    let server = start(&data, &cfg);
    storescu(&server, &files_under(&dir));

    // The AI service receives each stable series by STOW-RS.
    let got = receiver.wait("two series sent to the AI", |r| r.len() >= 2, &server);
    assert!(got
        .iter()
        .all(|r| r.method == "POST" && r.uri == "/ai/studies"));
    // Each body is one whole series: every part a DICOM file, byte for byte as stored.
    let mut sizes = Vec::new();
    for r in &got {
        let parts = stow_parts(r);
        let sops: Vec<String> = parts.iter().map(|p| sop_instance_uid(p)).collect();
        let (_, series) = server.parents_of(&sops[0]);
        let listed = server.json(&format!("/api/series/{series}"))["instances"].clone();
        let mut expected: Vec<String> = serde_json::from_value(listed).expect("UIDs");
        let mut sent = sops.clone();
        expected.sort();
        sent.sort();
        assert_eq!(sent, expected, "one series per request, all of it, once");
        for (sop, part) in sops.iter().zip(&parts) {
            let stored = std::fs::read(server.blob_path(sop)).expect("blob");
            assert!(stored == *part, "{sop}: the part is not the stored file");
        }
        sizes.push(parts.len());
    }
    sizes.sort();
    assert_eq!(sizes, [4, 5]);

    // The built-in analyzers flag the gap, the blank and the saturated image; not the clean one.
    let deadline = Instant::now() + Duration::from_secs(20);
    let flags = loop {
        let f = server.json(&format!("/api/studies/{gap}/flags"));
        if f.as_array().map(Vec::len).unwrap_or(0) >= 3 {
            break f;
        }
        assert!(Instant::now() < deadline, "flags: {f}\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    };
    let labels: Vec<String> = flags
        .as_array()
        .expect("array")
        .iter()
        .map(|f| f["label"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        labels
            .iter()
            .any(|l| l.starts_with("missing slices: about 1 ")),
        "{labels:?}"
    );
    assert!(labels.iter().any(|l| l == "blank image"), "{labels:?}");
    assert!(
        labels.iter().any(|l| l.starts_with("saturated image")),
        "{labels:?}"
    );
    assert!(flags
        .as_array()
        .expect("array")
        .iter()
        .all(|f| f["source"] == "pacs-quality"));
    assert_eq!(
        server.json(&format!("/api/studies/{clean}/flags")),
        serde_json::json!([])
    );

    // An AI result posted back; malformed ones are refused with a reason.
    let post = |study: &str, body: &str| -> (u16, String) {
        let out = run(std::process::Command::new("curl")
            .args([
                "-sS",
                "-w",
                "\n%{http_code}",
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "--data",
                body,
            ])
            .arg(format!(
                "http://127.0.0.1:{}/api/studies/{study}/flags",
                server.http_port
            )));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (b, c) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (c.trim().parse().unwrap_or(0), b.to_string())
    };
    let (code, body) = post(
        &clean,
        r#"{"label":"suspected pneumothorax","score":0.93,"severity":"critical","source":"acme-ai"}"#,
    );
    assert_eq!(code, 201, "{body}");
    for bad in [
        r#"{"label":"x","score":1.5,"severity":"high","source":"a"}"#,
        r#"{"label":"x","score":0.5,"severity":"urgent","source":"a"}"#,
        r#"{"score":0.5,"severity":"high","source":"a"}"#,
        "not json",
    ] {
        let (code, body) = post(&clean, bad);
        assert_eq!(code, 400, "{bad}: {body}");
    }
    assert_eq!(
        post(
            "1.2.3.999",
            r#"{"label":"x","score":0.5,"severity":"high","source":"a"}"#
        )
        .0,
        404
    );

    // Worklist: the critical AI finding first, then the quality-flagged study; read ones leave.
    let wl = server.json("/api/worklist");
    assert_eq!(wl[0]["study_instance_uid"], clean.as_str(), "{wl}");
    assert_eq!(wl[0]["highest_severity"], "critical");
    assert_eq!(wl[1]["study_instance_uid"], gap.as_str());
    let out = run(std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .arg(format!(
            "http://127.0.0.1:{}/api/studies/{clean}/read",
            server.http_port
        )));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "204");
    let wl = server.json("/api/worklist");
    assert_eq!(wl[0]["study_instance_uid"], gap.as_str(), "{wl}");
    assert!(wl
        .as_array()
        .expect("array")
        .iter()
        .all(|s| s["study_instance_uid"] != clean.as_str()));
}

#[test]
fn the_portal_link_opens_its_study_only_and_expires() {
    let receiver = Receiver::start(0);
    let (_tmp, data) = data_dir();
    let cfg = write_config(
        &data,
        &format!(
            "stable_after_secs = 0.3\nshare_link_hours = 2\n[workers.portal]\nurl = \"http://127.0.0.1:{}/portal/notices\"\n",
            receiver.port
        ),
    );
    let server = start(&data, &cfg);
    storescu(&server, &ct_study());
    let got = receiver.wait("a portal notice", |r| !r.is_empty(), &server);
    let notice = got[0].json();
    assert_eq!(notice["type"], "results-available");
    assert_eq!(notice["modalities"], serde_json::json!(["CT"]));
    let study = notice["study_instance_uid"]
        .as_str()
        .expect("study")
        .to_string();
    let link = notice["link"].as_str().expect("link").to_string();
    let prefix = format!("http://127.0.0.1:{}/api/share/", server.http_port);
    assert!(link.starts_with(&prefix), "{link}");
    let token = &link[prefix.len()..];

    let get = |path: &str| -> (u16, Vec<u8>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let body = dir.path().join("b");
        let out = run(std::process::Command::new("curl")
            .args(["-sS", "--max-time", "20", "-w", "%{http_code}", "-o"])
            .arg(&body)
            .arg(path));
        let code = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        (code, std::fs::read(&body).unwrap_or_default())
    };
    let (code, body) = get(&link);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let summary: Value = serde_json::from_slice(&body).expect("summary");
    assert_eq!(summary["study_instance_uid"], study.as_str());
    assert_eq!(summary["series"].as_array().map(Vec::len), Some(1));
    let (code, thumb) = get(summary["thumbnail"].as_str().expect("thumbnail"));
    assert_eq!(code, 200);
    assert_eq!(&thumb[..2], &[0xFF, 0xD8]);
    // The token opens nothing else: a series of another study is not found through it, and an
    // altered token is refused.
    let mr = samples().join("mr_explicit.dcm");
    storescu(&server, std::slice::from_ref(&mr));
    let other = server.json(&format!("/api/instances/{}", file_uids(&mr).0));
    let other_series = other["series_instance_uid"].as_str().expect("series");
    assert_eq!(
        get(&format!("{link}/series/{other_series}/thumbnail")).0,
        404
    );
    let mut forged = token.to_string();
    forged.replace_range(0..1, if forged.starts_with('A') { "B" } else { "A" });
    assert_eq!(get(&format!("{prefix}{forged}")).0, 403);
    // The link lives share_link_hours from the event that announced the study (so a retried
    // notice carries the same link), and the server refuses it after that. Time is the
    // token's: links signed with the server's key expiring a second ago and in an hour
    // stand for the same link after and before its end, without waiting for a clock.
    let portal = server.json("/api/events?worker=portal");
    let seq = portal[0]["seq"].as_u64().expect("seq");
    let event = &server.json(&format!("/api/outbox?offset={}&limit=1", seq - 1))[0];
    let event_secs = event["time_ms"].as_u64().expect("time") / 1000;
    assert_eq!(notice["expires"].as_u64(), Some(event_secs + 2 * 3600));
    let key = std::fs::read(data.join("share.key")).expect("share key");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let signed =
        |expires: u64| format!("{prefix}{}", pacs_auth::share::sign(&key, &study, expires));
    assert_eq!(get(&signed(now + 3600)).0, 200);
    let (code, body) = get(&signed(now - 1));
    assert_eq!(code, 403);
    assert!(String::from_utf8_lossy(&body).contains("expired"));
}

#[test]
fn dead_letters_wait_for_a_retry_and_a_receiver_that_was_down_gets_its_delivery() {
    // A port nobody listens on yet: the EHR is down when the study becomes stable.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let billing = Receiver::start(usize::MAX);
    let (_tmp, data) = data_dir();
    let cfg = data.parent().expect("parent").join("pacs.toml");
    std::fs::write(
        &cfg,
        format!(
            "stable_after_secs = 0.3\n[workers.ehr]\nurl = \"http://127.0.0.1:{port}/fhir\"\nbackoff_ms = 200\nmax_backoff_ms = 400\n[workers.billing]\nurl = \"http://127.0.0.1:{}/billing\"\nmax_attempts = 2\nbackoff_ms = 100\n",
            billing.port
        ),
    )
    .expect("config");
    let server = start(&data, &cfg);
    let clinical = {
        let dir = data.parent().expect("parent").join("clinical");
        let out = run(python()
            .arg(repo().join("tests/support/make_clinical.py"))
            .arg(&dir));
        assert!(out.status.success());
        dir.join("a_ct_contrast_allergy.dcm")
    };
    storescu(&server, std::slice::from_ref(&clinical));

    // Billing refuses twice: the delivery is dead and waits.
    let deadline = Instant::now() + Duration::from_secs(20);
    let dead = loop {
        let d = server.json("/api/events?worker=billing&state=dead");
        if d.as_array().is_some_and(|a| !a.is_empty()) {
            break d;
        }
        assert!(
            Instant::now() < deadline,
            "no dead letter\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(dead[0]["attempts"], 2);
    assert!(dead[0]["last_error"]
        .as_str()
        .is_some_and(|e| e.contains("500")));
    assert_eq!(billing.received().len(), 2);

    // The EHR comes up: its delivery goes through on a later attempt, unaffected by billing.
    let ehr = Receiver::start_on(port, 0);
    let got = ehr.wait("the delayed ImagingStudy", delivered, &server);
    assert_eq!(got.len(), 1);
    let ehr_events = server.json("/api/events?worker=ehr");
    assert_eq!(ehr_events[0]["state"], "delivered");
    assert!(
        ehr_events[0]["attempts"].as_u64().unwrap_or(0) >= 2,
        "{ehr_events}"
    );

    // A retry of the dead letter, once billing accepts: delivered, same key.
    billing.set_failures(0);
    let seq = dead[0]["seq"].as_u64().expect("seq");
    let out = run(std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .arg(format!(
            "http://127.0.0.1:{}/api/events/billing/{seq}/retry",
            server.http_port
        )));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    let got = billing.wait("the retried charge", delivered, &server);
    assert!(got.iter().all(|r| r.key == got[0].key));
    let after = server.json("/api/events?worker=billing");
    assert_eq!(after[0]["state"], "delivered", "{after}");

    // Paging every worker's deliveries one at a time: the cursor names the worker too and
    // the pages add up to the whole list; a bare sequence number means nothing across
    // workers and is refused.
    let all = server.json("/api/events");
    let mut paged = Vec::new();
    let mut after = String::new();
    loop {
        let page = server.json(&format!("/api/events?limit=1{after}"));
        let Some(d) = page.as_array().and_then(|a| a.first()).cloned() else {
            break;
        };
        after = format!(
            "&after={}:{}",
            d["worker"].as_str().expect("worker"),
            d["seq"]
        );
        paged.push(d);
        assert!(
            paged.len() <= 100,
            "paging does not advance: {:?}",
            &paged[..3]
        );
    }
    let ids = |v: &[Value]| -> Vec<(String, u64)> {
        v.iter()
            .map(|d| {
                (
                    d["worker"].as_str().unwrap_or("").to_string(),
                    d["seq"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    };
    assert_eq!(ids(&paged), ids(all.as_array().expect("array")));
    let workers: Vec<&str> = paged.iter().filter_map(|d| d["worker"].as_str()).collect();
    assert!(
        workers.contains(&"billing") && workers.contains(&"ehr"),
        "{workers:?}"
    );
    let first = &paged;
    let (code, body) = server.http(&format!("/api/events?after={}", first[0]["seq"]));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("WORKER:SEQ"), "{body}");
}
