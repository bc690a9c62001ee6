//! Corrections against the real server: a study's attributes patched (QIDO, metadata and the
//! served file show it; the original stays retrievable as a prior version), two patients
//! merged, a series moved, a study split; the refusals leave nothing changed; the change feed
//! and the audit trail record each correction.

use serde_json::{json, Value};

use crate::security::{curl, import_two_patients, Reply};
use crate::support::*;

pub(crate) fn send(server: &Server, method: &str, path: &str, body: &Value) -> Reply {
    curl(
        &format!("http://127.0.0.1:{}{path}", server.http_port),
        method,
        None,
        &[
            "-H",
            "Content-Type: application/json",
            "--data",
            &body.to_string(),
        ],
    )
}

pub(crate) fn fetch(server: &Server, path: &str) -> Reply {
    curl(
        &format!("http://127.0.0.1:{}{path}", server.http_port),
        "GET",
        None,
        &[],
    )
}

/// Study UIDs of a QIDO study search, sorted.
pub(crate) fn studies(server: &Server, query: &str) -> Vec<String> {
    qido_uids(server, &format!("/dicom-web/studies?{query}"), "0020000D")
}

/// The `tag` UID of each match of a QIDO search at `path`, sorted.
pub(crate) fn qido_uids(server: &Server, path: &str, tag: &str) -> Vec<String> {
    let r = fetch(server, path);
    if r.status == 204 {
        return Vec::new();
    }
    assert_eq!(r.status, 200, "{}", r.text());
    let mut v: Vec<String> = r
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s[tag]["Value"][0].as_str().expect("uid").to_string())
        .collect();
    v.sort();
    v
}

fn first_text(obj: &Value, tag: &str) -> String {
    let v = &obj[tag]["Value"][0];
    v["Alphabetic"]
        .as_str()
        .or(v.as_str())
        .unwrap_or_default()
        .to_string()
}

fn metadata(server: &Server, study: &str) -> Vec<Value> {
    let r = fetch(server, &format!("/dicom-web/studies/{study}/metadata"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json().as_array().expect("array").clone()
}

fn series_of(server: &Server, study: &str) -> Vec<String> {
    let r = fetch(server, &format!("/api/studies/{study}"));
    assert_eq!(r.status, 200, "{}", r.text());
    let mut v: Vec<String> = r.json()["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(|s| s.as_str().expect("uid").to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn corrections_are_versioned_atomic_and_propagated() {
    let (_tmp, data) = data_dir();
    import_two_patients(&data, 16);
    let server = Server::start(&data);
    let a = studies(&server, "PatientID=PAT00000");
    let b = studies(&server, "PatientID=PAT00001");
    assert_eq!((a.len(), b.len()), (1, 1));
    let (a, b) = (a[0].clone(), b[0].clone());
    let sop = first_text(&metadata(&server, &a)[0], "00080018");

    // Patch patient and study attributes of study A (a name outside ASCII on purpose).
    let patch = json!({
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Müller^Jürgen"}]},
        "00081030": {"vr": "LO", "Value": ["CORRECTED DESCRIPTION"]},
        "00080050": {"vr": "SH", "Value": ["ACC-FIXED"]},
    });
    let r = send(&server, "PATCH", &format!("/api/studies/{a}"), &patch);
    assert_eq!(r.status, 200, "{}", r.text());
    let answer = r.json();
    assert_eq!(answer["instances"], 4, "{answer}");
    assert_eq!(answer["after"]["StudyDescription"], "CORRECTED DESCRIPTION");
    assert_eq!(
        answer["study"]["attributes"]["00081030"]["values"][0],
        "CORRECTED DESCRIPTION"
    );
    // QIDO (the index), metadata (the files) and the served file all show it at once.
    assert_eq!(
        studies(&server, "AccessionNumber=ACC-FIXED"),
        vec![a.clone()]
    );
    let qido = fetch(&server, &format!("/dicom-web/studies?StudyInstanceUID={a}"));
    assert_eq!(
        first_text(&qido.json()[0], "00100010"),
        "Müller^Jürgen",
        "{}",
        qido.text()
    );
    for m in metadata(&server, &a) {
        assert_eq!(first_text(&m, "00081030"), "CORRECTED DESCRIPTION");
        assert_eq!(first_text(&m, "00100010"), "Müller^Jürgen");
    }
    let current = fetch(&server, &format!("/wado?requestType=WADO&studyUID={a}&seriesUID={}&objectUID={sop}&contentType=application%2Fdicom", server.parents_of(&sop).1));
    assert_eq!(current.status, 200);
    let contains = |body: &[u8], s: &str| body.windows(s.len()).any(|w| w == s.as_bytes());
    assert!(contains(&current.body, "CORRECTED DESCRIPTION"));
    // The original is kept and retrievable, unchanged.
    let v = fetch(&server, &format!("/api/instances/{sop}/versions")).json();
    assert_eq!(v["versions"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["versions"][0]["reason"], "study.update");
    let original = fetch(&server, &format!("/api/instances/{sop}/versions/1"));
    assert_eq!(original.status, 200);
    assert!(original.headers.contains("application/dicom"));
    assert!(!contains(&original.body, "CORRECTED DESCRIPTION"));
    assert!(contains(&original.body, "DICM"));
    assert_eq!(
        fetch(&server, &format!("/api/instances/{sop}/versions/2")).status,
        404
    );

    // Refusals change nothing.
    let before = server.statistics();
    for (body, expected) in [
        (
            json!({"00100010": {"vr": "LO", "Value": ["x"]}}),
            "VR LO given",
        ),
        (json!({"0020000D": {"vr": "UI", "Value": ["1.2.3"]}}), "UID"),
        (
            json!({"00100030": {"vr": "DA", "Value": ["20230231"]}}),
            "not a date",
        ),
        (
            json!({"00080060": {"vr": "CS", "Value": ["MR"]}}),
            "not a patient or study",
        ),
    ] {
        let r = send(&server, "PATCH", &format!("/api/studies/{a}"), &body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(r.text().contains(expected), "{}", r.text());
    }
    let r = send(&server, "PATCH", "/api/studies/1.2.3.4", &patch);
    assert_eq!(r.status, 404, "{}", r.text());
    let r = send(
        &server,
        "POST",
        "/api/patients/merge",
        &json!({"from": "PAT00000", "into": "NOBODY"}),
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("NOBODY"), "{}", r.text());
    let r = send(
        &server,
        "POST",
        "/api/patients/merge",
        &json!({"from": "PAT00000", "into": "PAT00000"}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(server.statistics(), before);
    let v = fetch(&server, &format!("/api/instances/{sop}/versions")).json();
    assert_eq!(v["versions"].as_array().map(Vec::len), Some(1));

    // Merge PAT00000 into PAT00001: one patient with both studies.
    let r = send(
        &server,
        "POST",
        "/api/patients/merge",
        &json!({"from": "PAT00000", "into": "PAT00001"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(studies(&server, "PatientID=PAT00000").is_empty());
    let mut both = vec![a.clone(), b.clone()];
    both.sort();
    assert_eq!(studies(&server, "PatientID=PAT00001"), both);
    assert_eq!(server.statistics()["patients"], 1);
    for m in metadata(&server, &a) {
        assert_eq!(first_text(&m, "00100020"), "PAT00001");
        // The study's own correction survives the merge.
        assert_eq!(first_text(&m, "00081030"), "CORRECTED DESCRIPTION");
    }

    // Move a series of A into B, then split it off B again into a new study.
    let series_a = series_of(&server, &a);
    let moved = series_a[0].clone();
    let r = send(
        &server,
        "POST",
        &format!("/api/series/{moved}/move"),
        &json!({"study": b}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(series_of(&server, &b).contains(&moved));
    assert_eq!(series_of(&server, &a).len(), series_a.len() - 1);
    for m in metadata(&server, &b) {
        assert_eq!(first_text(&m, "0020000D"), b);
    }
    let r = send(
        &server,
        "POST",
        &format!("/api/studies/{b}/split"),
        &json!({"series": [moved]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let split = r.json()["studies"][0]
        .as_str()
        .expect("new study")
        .to_string();
    assert_eq!(series_of(&server, &split), vec![moved.clone()]);
    assert!(!series_of(&server, &b).contains(&moved));
    let all = series_of(&server, &b);
    let r = send(
        &server,
        "POST",
        &format!("/api/studies/{b}/split"),
        &json!({"series": all}),
    );
    assert_eq!(r.status, 400, "splitting off everything: {}", r.text());
    assert_eq!(server.statistics()["instances"], 8);
    assert_eq!(server.statistics()["studies"], 3);

    // The change feed carries each correction; the audit trail says what changed.
    let feed = fetch(&server, "/api/outbox?limit=1000").json();
    let kinds: Vec<String> = feed
        .as_array()
        .expect("outbox")
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or_default().to_string())
        .collect();
    for kind in ["StudyUpdated", "PatientsMerged", "SeriesMoved"] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
    }
    let audit = |action: &str| -> Vec<Value> {
        let r = fetch(&server, &format!("/api/audit?limit=10000&action={action}"));
        assert_eq!(r.status, 200, "{}", r.text());
        // Refused requests are audited too (as failures); these are the corrections made.
        r.json()["records"]
            .as_array()
            .expect("records")
            .iter()
            .filter(|r| r["outcome"] == "success")
            .cloned()
            .collect()
    };
    let records = audit("patient.merge");
    assert_eq!(records.len(), 1, "{records:?}");
    let detail = records[0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("PAT00000") && detail.contains("PAT00001"),
        "{detail}"
    );
    let records = audit("study.update");
    assert!(
        records.iter().any(|r| r["detail"]
            .as_str()
            .is_some_and(|d| d.contains("CORRECTED DESCRIPTION"))),
        "{records:?}"
    );

    // Deleting an instance removes its prior versions' files too.
    let blobs = data.join("blobs");
    let count = || walkdir_count(&blobs);
    let files_before = count();
    let r = curl(
        &format!(
            "http://127.0.0.1:{}/dicom-web/studies/{split}",
            server.http_port
        ),
        "DELETE",
        None,
        &[],
    );
    assert_eq!(r.status, 204, "{}", r.text());
    // The split series' 2 instances had 4 versions each by now (patch, merge, move, split).
    assert_eq!(files_before - count(), 2 * 5);
}

fn walkdir_count(dir: &std::path::Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("blobs").flatten() {
        let p = entry.path();
        if p.is_dir() {
            n += walkdir_count(&p);
        } else if p.extension().is_some_and(|e| e == "dcm") {
            n += 1;
        }
    }
    n
}
