//! Query/retrieve against another archive (Debian's Orthanc): studies found by C-FIND through
//! `/api/remote`, one moved here by C-MOVE, the priors worker fetching the patient's earlier
//! study of the same body part when a new study arrives (and not the others, and nothing
//! more from what it fetched), and a de-identified export to the node by C-STORE.

use std::collections::BTreeMap;

use serde_json::json;

use crate::corrections::{fetch, send, studies};
use crate::routing::{eventually, free_port, orthanc_get, states};
use crate::support::*;

/// Study UIDs by name, as make_priors.py printed them.
fn make_priors(dir: &std::path::Path, specs: &[&str]) -> BTreeMap<String, String> {
    let out = run(python()
        .arg(repo().join("tests/support/make_priors.py"))
        .arg(dir)
        .args(specs));
    assert!(
        out.status.success(),
        "make_priors.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, u)| (n.to_string(), u.to_string()))
        .collect()
}

#[test]
fn other_archives_are_queried_retrieved_from_and_searched_for_priors() {
    let (tmp, data) = data_dir();
    let orthanc_dicom = free_port();
    let config = tmp.path().join("pacs.toml");
    std::fs::write(
        &config,
        format!(
            "stable_after_secs = 0.5\n\n[[nodes]]\nae_title = \"ORTHANC\"\nhost = \"127.0.0.1\"\nport = {orthanc_dicom}\n\n\
             [priors]\nfrom = \"ORTHANC\"\nmax_studies = 2\nbackoff_ms = 200\n"
        ),
    )
    .expect("config");
    let server = Server::start_with_config(&data, &config);
    // Orthanc knows us as PACS (move destination) and listens on the port we were told.
    let o = crate::routing::orthanc_on(
        tmp.path(),
        json!({"pacs": [AE, "127.0.0.1", server.dicom_port]}),
        orthanc_dicom,
    );

    // The old archive's history of PRIORS1 (and someone else).
    let history = tmp.path().join("history");
    let uids = make_priors(
        &history,
        &[
            "headct2020:PRIORS1:20200110:CT:HEAD",
            "chestct2021:PRIORS1:20210315:CT:CHEST",
            "headmr2019:PRIORS1:20190704:MR:HEAD",
            "other:SOMEONE:20220101:CT:HEAD",
        ],
    );
    let out = run(dcmtk("storescu")
        .args([
            "-aet",
            "LOADER",
            "-aec",
            "ORTHANC",
            "127.0.0.1",
            &o.dicom.to_string(),
        ])
        .args(files_under(&history)));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        orthanc_get(&o, "/studies").as_array().map(Vec::len),
        Some(4)
    );

    // C-FIND through the API.
    let found = fetch(&server, "/api/remote/ORTHANC/studies?PatientID=PRIORS1").json();
    let mut found_uids: Vec<&str> = found
        .as_array()
        .expect("matches")
        .iter()
        .map(|m| m["0020000D"]["Value"][0].as_str().expect("uid"))
        .collect();
    found_uids.sort();
    let mut expected: Vec<&str> = ["headct2020", "chestct2021", "headmr2019"]
        .iter()
        .map(|n| uids[*n].as_str())
        .collect();
    expected.sort();
    assert_eq!(found_uids, expected, "{found}");
    let one = fetch(
        &server,
        "/api/remote/ORTHANC/studies?PatientID=PRIORS1&limit=1",
    )
    .json();
    assert_eq!(one.as_array().map(Vec::len), Some(1), "{one}");
    assert_eq!(fetch(&server, "/api/remote/NOWHERE/studies").status, 404);
    assert_eq!(
        fetch(&server, "/api/remote/ORTHANC/studies?Nonsense=1").status,
        400
    );

    // C-MOVE through the API: the 2020 head CT comes here.
    let r = send(
        &server,
        "POST",
        "/api/remote/ORTHANC/retrieve",
        &json!({"study": uids["headct2020"]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["completed"], 2, "{}", r.text());
    assert_eq!(
        studies(&server, &format!("StudyInstanceUID={}", uids["headct2020"])),
        [uids["headct2020"].clone()]
    );

    // A new head CT of PRIORS1: the priors worker fetches the head MR (same body part), not
    // the chest CT; the 2020 head CT is here already.
    let new_study = tmp.path().join("new");
    let new = make_priors(&new_study, &["today:PRIORS1:20261206:CT:HEAD"]);
    storescu(&server, &files_under(&new_study));
    eventually("the head MR fetched as a prior", || {
        !studies(&server, &format!("StudyInstanceUID={}", uids["headmr2019"])).is_empty()
    });
    eventually("the priors search recorded", || {
        states(&server, "priors").contains(&"delivered".to_string())
    });
    assert!(
        studies(
            &server,
            &format!("StudyInstanceUID={}", uids["chestct2021"])
        )
        .is_empty(),
        "the chest CT is not a prior of a head CT"
    );
    // What came from the old archive starts no search of its own.
    eventually("fetched studies skipped", || {
        states(&server, "priors")
            .iter()
            .filter(|s| *s == "skipped")
            .count()
            >= 2
    });
    assert_eq!(
        states(&server, "priors")
            .iter()
            .filter(|s| *s == "delivered")
            .count(),
        1
    );

    // A de-identified export of the new study to the node by C-STORE.
    let r = send(
        &server,
        "POST",
        &format!(
            "/api/studies/{}/export?profile=basic&project=share",
            new["today"]
        ),
        &json!({"to": "ORTHANC"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["stored"], 2, "{}", r.text());
    let orthanc_studies = orthanc_get(&o, "/studies");
    assert_eq!(orthanc_studies.as_array().map(Vec::len), Some(5));
    let r = send(
        &server,
        "POST",
        &format!("/api/studies/{}/export", new["today"]),
        &json!({"to": "NOWHERE"}),
    );
    assert_eq!(r.status, 404, "{}", r.text());
}
