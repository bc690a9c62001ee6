//! The event outbox through the real server: the change feed in commit order with current /
//! deleted states, quiet-period stability events, and durability across kill -9.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

fn start(data: &std::path::Path) -> Server {
    let config = data.parent().expect("parent").join("pacs.toml");
    std::fs::write(&config, "stable_after_secs = 0.5\n").expect("config");
    Server::start_with(
        data,
        ServerOptions {
            extra_args: &["--config", config.to_str().expect("utf-8")],
            ..Default::default()
        },
    )
}

fn outbox(server: &Server, offset: u64) -> Vec<Value> {
    server
        .json(&format!("/api/outbox?offset={offset}&limit=1000"))
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn wait_for_kind(server: &Server, kind: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let all = outbox(server, 0);
        let found: Vec<Value> = all.into_iter().filter(|e| e["kind"] == kind).collect();
        if found.len() >= count {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no {count} {kind} events:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn change_feed_stability_and_deletion_events_survive_kill9() {
    let (_tmp, data) = data_dir();
    let mut server = start(&data);
    let files = sample_files();
    storescu(&server, &files);

    let feed = server.json("/api/changefeed?offset=0&limit=100");
    let feed = feed.as_array().expect("array");
    assert_eq!(feed.len(), files.len());
    let mut last = 0;
    for entry in feed {
        let seq = entry["sequence"].as_u64().expect("sequence");
        assert!(seq > last, "commit order");
        last = seq;
        assert_eq!(entry["action"], "create");
        assert_eq!(entry["state"], "current");
        assert!(entry["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')));
    }
    let mut sent: Vec<String> = files.iter().map(|f| file_uids(f).0).collect();
    let mut listed: Vec<String> = feed
        .iter()
        .map(|e| e["sopInstanceUid"].as_str().unwrap_or_default().to_string())
        .collect();
    sent.sort();
    listed.sort();
    assert_eq!(listed, sent);
    // Paging: offset continues after the given sequence number.
    let page = server.json(&format!(
        "/api/changefeed?offset={}&limit=3",
        feed[2]["sequence"]
    ));
    assert_eq!(page[0]["sequence"], feed[3]["sequence"]);

    // After the quiet period: one SeriesStable per series and one StudyStable per study.
    let studies = wait_for_kind(&server, "StudyStable", 4);
    assert_eq!(studies.len(), 4);
    assert_eq!(wait_for_kind(&server, "SeriesStable", 5).len(), 5);

    // Delete a study over DICOMweb: InstanceDeleted for each, then StudyDeleted; the feed marks
    // the creations deleted.
    let ct = samples().join("ct_16bit_signed_implicit.dcm");
    let rec = server.json(&format!("/api/instances/{}", file_uids(&ct).0));
    let study = rec["study_instance_uid"]
        .as_str()
        .expect("study")
        .to_string();
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
        .arg(format!(
            "http://127.0.0.1:{}/dicom-web/studies/{study}",
            server.http_port
        )));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "204");
    let deleted = wait_for_kind(&server, "StudyDeleted", 1);
    assert_eq!(deleted[0]["study_instance_uid"], study.as_str());
    let feed = server.json("/api/changefeed?offset=0&limit=100");
    let of_study: Vec<&Value> = feed
        .as_array()
        .expect("array")
        .iter()
        .filter(|e| e["studyInstanceUid"] == study.as_str())
        .collect();
    assert_eq!(
        of_study.iter().filter(|e| e["action"] == "delete").count(),
        4
    );
    assert!(of_study
        .iter()
        .filter(|e| e["action"] == "create")
        .all(|e| e["state"] == "deleted"));

    // kill -9: every event is still there and numbering continues without reuse.
    let before = outbox(&server, 0);
    server.kill9();
    let server = start(&data);
    let after = outbox(&server, 0);
    assert_eq!(after, before);
    storescu(&server, std::slice::from_ref(&ct));
    let newest = outbox(
        &server,
        before.last().and_then(|e| e["seq"].as_u64()).unwrap_or(0),
    );
    assert_eq!(newest[0]["kind"], "InstanceStored");
    assert_eq!(
        newest[0]["seq"].as_u64(),
        before.last().and_then(|e| e["seq"].as_u64()).map(|s| s + 1)
    );
}

#[test]
fn change_feed_marks_a_replaced_instance() {
    let (tmp, data) = data_dir();
    let server = Server::start_with(
        &data,
        ServerOptions {
            extra_args: &["--duplicates", "overwrite"],
            ..Default::default()
        },
    );
    let original = samples().join("mr_explicit.dcm");
    let other = samples().join("mr_rle.dcm");
    storescu(&server, &[original.clone(), other.clone()]);
    let (sop, _) = file_uids(&original);
    let (other_sop, _) = file_uids(&other);

    // The same SOP Instance UID again, corrected: the overwrite policy replaces it.
    let changed = tmp.path().join("changed.dcm");
    std::fs::copy(&original, &changed).expect("copy");
    let out = run(dcmtk("dcmodify")
        .args(["-nb", "-m", "SeriesDescription=CORRECTED"])
        .arg(&changed));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    storescu(&server, std::slice::from_ref(&changed));

    let feed = server.json("/api/changefeed?offset=0&limit=100");
    let feed = feed.as_array().expect("array");
    let of = |uid: &str| -> Vec<(String, String)> {
        feed.iter()
            .filter(|e| e["sopInstanceUid"] == uid)
            .map(|e| {
                (
                    e["action"].as_str().unwrap_or("?").to_string(),
                    e["state"].as_str().unwrap_or("?").to_string(),
                )
            })
            .collect()
    };
    let create = |state: &str| ("create".to_string(), state.to_string());
    // The first copy's creation is superseded; the second is the current one.
    assert_eq!(
        of(&sop),
        [create("replaced"), create("current")],
        "{feed:?}"
    );
    assert_eq!(of(&other_sop), [create("current")], "{feed:?}");
    assert_eq!(feed.len(), 3, "{feed:?}");
    assert_eq!(stats_tuple(&server.statistics()), (1, 1, 1, 2));
}
