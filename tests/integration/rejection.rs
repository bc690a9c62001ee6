//! IHE IOCM rejection notes against the real server: a KOS titled "Rejected for Quality
//! Reasons" sent by dcmtk storescu hides what it names from QIDO, C-FIND, C-GET, C-MOVE,
//! WADO-RS, WADO-URI, metadata, rendered and the counts; notes naming unknown instances or
//! the wrong study are refused (over C-STORE and STOW-RS) and hide nothing; a rejected
//! instance sent again is refused; an administrator lists, restores and purges; the purge
//! after the configured delay runs by itself; `pacs verify` checks hidden files too.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::corrections::{fetch, qido_uids, send, studies};
use crate::security::{curl, pacs, Reply};
use crate::support::*;

fn make_note(out: &Path, code: &str, files: &[&PathBuf], extra: &[&str]) -> String {
    let o = run(python()
        .arg(repo().join("tests/support/make_rejection.py"))
        .arg(out)
        .arg(code)
        .args(files)
        .args(extra));
    assert!(
        o.status.success(),
        "make_rejection.py: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn post(server: &Server, path: &str, body: &Value) -> Reply {
    send(server, "POST", path, body)
}

fn stow_file(server: &Server, file: &Path) -> Reply {
    let boundary = "rejection-test-boundary";
    let mut body = format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").into_bytes();
    body.extend(std::fs::read(file).expect("read"));
    body.extend(format!("\r\n--{boundary}--\r\n").as_bytes());
    let path = file.with_extension("multipart");
    std::fs::write(&path, body).expect("write body");
    curl(
        &format!("http://127.0.0.1:{}/dicom-web/studies", server.http_port),
        "POST",
        None,
        &[
            "-H",
            &format!(
                "Content-Type: multipart/related; type=\"application/dicom\"; boundary={boundary}"
            ),
            "-H",
            "Accept: application/dicom+json",
            "--data-binary",
            &format!("@{}", path.display()),
        ],
    )
}

/// storescu's C-STORE statuses for these files (one association).
fn storescu_statuses(server: &Server, files: &[&PathBuf]) -> (Vec<String>, String) {
    let out = run(dcmtk("storescu")
        .args([
            "-v",
            "-aet",
            "MODALITY",
            "-aec",
            AE,
            "127.0.0.1",
            &server.port(),
        ])
        .args(files));
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    (store_response_statuses(&log), log)
}

/// SOP Instance UIDs of a QIDO instance search in a study, sorted.
fn qido_instances(server: &Server, study: &str) -> Vec<String> {
    qido_uids(
        server,
        &format!("/dicom-web/studies/{study}/instances"),
        "00080018",
    )
}

/// SOP Instance UIDs C-FIND answers in a study (series by series, as the hierarchical
/// model asks), sorted.
fn find_images(server: &Server, study: &str) -> Vec<String> {
    let find = |keys: Value, key: &str| -> Vec<String> {
        let v = scu(&["find", &server.port(), "study", &keys.to_string()]);
        assert_eq!(v["status"], 0, "{v}");
        v["matches"]
            .as_array()
            .expect("matches")
            .iter()
            .map(|m| m[key].as_str().expect("uid").to_string())
            .collect()
    };
    let mut uids = Vec::new();
    let series = find(
        json!({"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": study, "SeriesInstanceUID": ""}),
        "SeriesInstanceUID",
    );
    for s in series {
        uids.extend(find(
            json!({"QueryRetrieveLevel": "IMAGE", "StudyInstanceUID": study,
                   "SeriesInstanceUID": s, "SOPInstanceUID": ""}),
            "SOPInstanceUID",
        ));
    }
    uids.sort();
    uids
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    out.sort();
    out
}

fn rejected_list(server: &Server, query: &str) -> Vec<Value> {
    let r = fetch(server, &format!("/api/rejected?{query}"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["instances"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn rejection_notes_hide_instances_everywhere_until_restored_or_purged() {
    let (tmp, data) = data_dir();
    let dest = tmp.path().join("dest");
    std::fs::create_dir_all(&dest).expect("mkdir");
    let dest_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    std::fs::write(
        tmp.path().join("pacs.toml"),
        format!("[[nodes]]\nae_title = \"DEST\"\nhost = \"127.0.0.1\"\nport = {dest_port}\n"),
    )
    .expect("pacs.toml");
    let mut storescp = dcmtk("storescp")
        .args(["+xa", "-aet", "DEST", "-od"])
        .arg(&dest)
        .arg(dest_port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("storescp");
    let server = Server::start_with_config(&data, &tmp.path().join("pacs.toml"));

    // One study: series A (3 CT), series B (3 CT).
    let gen = tmp.path().join("gen");
    generate(
        &gen,
        6,
        &[
            "--rows",
            "64",
            "--cols",
            "64",
            "--per-series",
            "3",
            "--patients",
            "1",
        ],
    );
    let mut files = files_under(&gen);
    files.sort();
    storescu(&server, &files);
    let uid = |f: &PathBuf| file_uids(f).0;
    let all: Vec<String> = files.iter().map(uid).collect();
    let (study, series_a) = server.parents_of(&all[0]);
    let (_, series_b) = server.parents_of(&all[3]);
    let blob_b0 = server.blob_path(&all[3]);
    assert!(blob_b0.exists());

    // The note: series B whole and the first image of series A.
    let notes = tmp.path().join("notes");
    std::fs::create_dir_all(&notes).expect("mkdir");
    let note = notes.join("quality.dcm");
    let rejected_files = [&files[0], &files[3], &files[4], &files[5]];
    let note_uid = make_note(&note, "113001", &rejected_files, &[]);
    let (statuses, log) = storescu_statuses(&server, &[&note]);
    assert_eq!(statuses, ["Success"], "{log}");
    let rejected: Vec<String> = rejected_files.iter().map(|f| uid(f)).collect();
    let live = sorted(&[&all[1], &all[2], &note_uid]);

    // Hidden from QIDO (instances and series), C-FIND, the counts.
    assert_eq!(qido_instances(&server, &study), live);
    let series = fetch(&server, &format!("/dicom-web/studies/{study}/series")).json();
    let series_uids: Vec<&str> = series
        .as_array()
        .expect("series")
        .iter()
        .map(|s| s["0020000E"]["Value"][0].as_str().expect("uid"))
        .collect();
    assert!(
        !series_uids.contains(&series_b.as_str()) && series_uids.contains(&series_a.as_str()),
        "{series_uids:?}"
    );
    assert_eq!(find_images(&server, &study), live);
    let qido_study = fetch(
        &server,
        &format!("/dicom-web/studies?StudyInstanceUID={study}"),
    )
    .json();
    assert_eq!(qido_study[0]["00201208"]["Value"][0], 3, "{qido_study}");
    assert_eq!(stats_tuple(&server.statistics()).3, 3);

    // Hidden from every retrieve.
    for (i, sop) in rejected.iter().enumerate() {
        let series = if i == 0 { &series_a } else { &series_b };
        let (st, _) = server.http(&format!(
            "/dicom-web/studies/{study}/series/{series}/instances/{sop}"
        ));
        assert_eq!(st, 404, "WADO-RS {sop}");
        let (st, _) = server.http(&format!(
            "/wado?requestType=WADO&studyUID={study}&seriesUID={series}&objectUID={sop}&contentType=application/dicom"
        ));
        assert_eq!(st, 404, "WADO-URI {sop}");
    }
    let (st, _) = server.http(&format!(
        "/dicom-web/studies/{study}/series/{series_a}/instances/{}/rendered",
        all[0]
    ));
    assert_eq!(st, 404, "rendered of a rejected instance");
    let (st, _) = server.http(&format!(
        "/dicom-web/studies/{study}/series/{series_b}/metadata"
    ));
    assert_eq!(st, 404, "metadata of a rejected series");
    let meta = fetch(&server, &format!("/dicom-web/studies/{study}/metadata")).json();
    let mut in_meta: Vec<String> = meta
        .as_array()
        .expect("metadata")
        .iter()
        .map(|i| i["00080018"]["Value"][0].as_str().expect("uid").to_string())
        .collect();
    in_meta.sort();
    assert_eq!(in_meta, live, "study metadata");
    let got = scu(&[
        "get",
        &server.port(),
        "study",
        tmp.path().join("got").to_str().expect("utf-8"),
        &json!({"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": study, "SeriesInstanceUID": series_a})
            .to_string(),
    ]);
    let mut received: Vec<String> = got["received"]
        .as_object()
        .expect("received")
        .keys()
        .cloned()
        .collect();
    received.sort();
    assert_eq!(received, sorted(&[&all[1], &all[2]]), "C-GET: {got}");
    let moved = scu(&[
        "move",
        &server.port(),
        "study",
        "DEST",
        &json!({"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": study, "SeriesInstanceUID": series_b})
            .to_string(),
    ]);
    assert_eq!(
        moved["completed"].as_u64().unwrap_or(0),
        0,
        "C-MOVE of a rejected series: {moved}"
    );
    assert!(files_under(&dest).is_empty());

    // A rejected instance sent again stays out: refused with 0xA771.
    let (statuses, log) = storescu_statuses(&server, &[&files[3]]);
    // dcmtk names the 0xA7xx range "Refused: OutOfResources"; the comment says why.
    assert_eq!(statuses, ["Refused: OutOfResources"], "{log}");
    server.wait_for_log("was rejected (113001 Rejected for Quality Reasons)");
    assert_eq!(stats_tuple(&server.statistics()).3, 3);

    // A note naming an instance the archive does not hold: refused whole over C-STORE and
    // STOW-RS, nothing hidden.
    let bad = notes.join("unknown.dcm");
    make_note(&bad, "113037", &[&files[1]], &["--unknown", "2.25.1234567"]);
    let (statuses, log) = storescu_statuses(&server, &[&bad]);
    assert_eq!(statuses, ["Refused: OutOfResources"], "{log}");
    server.wait_for_log("not in the archive");
    let r = stow_file(&server, &bad);
    assert_eq!(r.status, 409, "{}", r.text());
    let reason = &r.json()["00081198"]["Value"][0]["00081197"]["Value"][0];
    assert_eq!(reason, 0xA772, "{}", r.text());
    // One naming a stored instance under another study: refused too.
    let wrong = notes.join("wrong-study.dcm");
    make_note(
        &wrong,
        "113001",
        &[&files[1]],
        &["--claim-study", "2.25.999"],
    );
    let r = stow_file(&server, &wrong);
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("rejection note refused"), "{}", r.text());
    server.wait_for_log("holds it in study");
    assert_eq!(qido_instances(&server, &study), live);

    // The administrator's view, a restore, a purge.
    let listed = rejected_list(&server, &format!("study={study}"));
    assert_eq!(listed.len(), 4, "{listed:?}");
    assert!(listed.iter().all(|r| r["reason"]["code"] == "113001"
        && r["note"] == note_uid.as_str()
        && r["rejected_by"] == "MODALITY"));
    let r = post(
        &server,
        "/api/rejected/restore",
        &json!({"instances": [all[0]]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["restored"], 1);
    assert_eq!(
        find_images(&server, &study),
        sorted(&[&all[0], &all[1], &all[2], &note_uid])
    );
    let (st, _) = server.http(&format!(
        "/dicom-web/studies/{study}/series/{series_a}/instances/{}/rendered",
        all[0]
    ));
    assert_eq!(st, 200, "restored instance renders again");
    let r = post(&server, "/api/rejected/restore", &json!({}));
    assert_eq!(r.status, 400, "{}", r.text());
    let r = post(&server, "/api/rejected/purge", &json!({"note": note_uid}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["purged"], 3);
    assert!(!blob_b0.exists(), "purged file deleted");
    assert!(rejected_list(&server, "").is_empty());
    // Forgotten: the same instance is an ordinary new instance again.
    storescu(&server, &[files[3].clone()]);
    assert_eq!(stats_tuple(&server.statistics()).3, 5);

    // The audit trail names each step.
    for action in ["instance.reject", "instance.restore", "instance.purge"] {
        let a = fetch(&server, &format!("/api/audit?limit=100&action={action}")).json();
        let records = a["records"].as_array().cloned().unwrap_or_default();
        assert!(!records.is_empty(), "{action}: {a}");
        if action == "instance.reject" {
            let detail = records[0]["detail"].as_str().unwrap_or_default();
            assert!(detail.contains("4 instances hidden"), "{detail}");
        }
    }
    let _ = storescp.kill();
    let _ = storescp.wait();
    assert_eq!(
        studies(&server, &format!("StudyInstanceUID={study}")),
        std::slice::from_ref(&study)
    );

    // Deleting the study takes what is hidden in it too.
    let last = notes.join("last.dcm");
    make_note(&last, "113037", &[&files[1]], &[]);
    let (statuses, log) = storescu_statuses(&server, &[&last]);
    assert_eq!(statuses, ["Success"], "{log}");
    assert_eq!(rejected_list(&server, "").len(), 1);
    let r = curl(
        &format!(
            "http://127.0.0.1:{}/dicom-web/studies/{study}",
            server.http_port
        ),
        "DELETE",
        None,
        &[],
    );
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(rejected_list(&server, "").is_empty());
    assert!(studies(&server, &format!("StudyInstanceUID={study}")).is_empty());
    assert_eq!(stats_tuple(&server.statistics()), (0, 0, 0, 0));
}

#[test]
fn hidden_instances_are_purged_after_the_configured_delay_and_verified_until_then() {
    let (tmp, data) = data_dir();
    let config = tmp.path().join("pacs.toml");
    // 0.00005 days = 4.3 s.
    std::fs::write(&config, "[rejection_notes]\npurge_after_days = 0.00005\n").expect("config");
    let mut server = Server::start_with_config(&data, &config);
    let files = small_ct(&tmp.path().join("gen"), 2, "purge");
    storescu(&server, &files);
    let hidden_blob = server.blob_path(&file_uids(&files[0]).0);
    let note = tmp.path().join("retention.dcm");
    make_note(&note, "113039", &[&files[0]], &[]);
    let r = stow_file(&server, &note);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(rejected_list(&server, "").len(), 1);

    // verify reads the hidden file too (and passes).
    let out = run(pacs().args(["verify", "--data"]).arg(&data));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("checked 3 instances"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    while !rejected_list(&server, "").is_empty() {
        assert!(Instant::now() < deadline, "not purged within 60 s");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(!hidden_blob.exists());
    assert_eq!(
        stats_tuple(&server.statistics()).3,
        2,
        "the other CT and the note"
    );
    let a = fetch(&server, "/api/audit?limit=10&action=instance.purge").json();
    assert!(
        a["records"][0]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("1 rejected instances deleted"),
        "{a}"
    );
    assert!(server.terminate().success());
}
