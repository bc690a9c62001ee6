//! Several archive nodes on one PostgreSQL database and one S3 bucket (`[index] url`,
//! `[blobs] url`), against a throwaway PostgreSQL and moto on loopback: what one node
//! stores the other serves, searches and lists in its change feed; an instance
//! acknowledged by a node killed with kill -9 is still there; the database or the bucket
//! away gives retryable answers, and the node recovers by itself.

use std::path::{Path, PathBuf};
use std::thread;

use serde_json::Value;

use crate::blobs_s3::{moto, moto_on, objects, s3_tool, start};
use crate::corrections::qido_uids;
use crate::routing::Peer;
use crate::support::*;
use crate::workers::receiver::Receiver;
use pacs_storage::pg::testing::Postgres;

fn node_config(dir: &Path, pg: &Postgres, s3_port: u16, ehr_port: u16) -> PathBuf {
    let config = dir.join("pacs.toml");
    std::fs::write(
        &config,
        format!(
            "stable_after_secs = 1\n\n[index]\nurl = \"{}\"\nmax_connections = 8\n\n\
             [blobs]\nurl = \"s3://pacs-nodes/site\"\nendpoint = \"http://127.0.0.1:{s3_port}\"\n\
             allow_http = true\n\n\
             [workers.ehr]\nurl = \"http://127.0.0.1:{ehr_port}/fhir\"\nbackoff_ms = 100\n",
            pg.url()
        ),
    )
    .expect("config");
    config
}

/// Every instance-level entry of a node's change feed: (sequence, SOP Instance UID).
fn change_feed(server: &Server) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let page = server.json(&format!("/api/changefeed?offset={offset}&limit=500"));
        let entries = page.as_array().expect("array");
        let Some(last) = entries.last() else {
            return out;
        };
        offset = last["sequence"].as_u64().expect("sequence");
        for e in entries {
            if e["action"] == "create" {
                out.push((
                    e["sequence"].as_u64().expect("seq"),
                    e["sopInstanceUid"].as_str().expect("uid").to_string(),
                ));
            }
        }
    }
}

/// Study Instance UID of a Part 10 file.
fn study_of(path: &Path) -> String {
    let out = run(dcmtk("dcmdump").args(["-s", "+P", "0020,000d"]).arg(path));
    let text = String::from_utf8_lossy(&out.stdout);
    text.split('[')
        .nth(1)
        .and_then(|r| r.split(']').next())
        .expect("StudyInstanceUID")
        .to_string()
}

fn instances_in_qido(server: &Server) -> u64 {
    let r = server.json("/dicom-web/studies?limit=1000");
    r.as_array()
        .expect("array")
        .iter()
        .map(|s| {
            s["00201208"]["Value"][0]
                .as_u64()
                .or_else(|| {
                    s["00201208"]["Value"][0]
                        .as_str()
                        .and_then(|v| v.parse().ok())
                })
                .expect("NumberOfStudyRelatedInstances")
        })
        .sum()
}

fn cfind_studies(server: &Server) -> usize {
    let out = run(dcmtk("findscu")
        .args(["-v", "-S", "-aet", "FINDSCU", "-aec", AE])
        .args(["-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID"])
        .args(["127.0.0.1", &server.port()]));
    assert!(
        out.status.success(),
        "findscu: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains("Find Response:") && l.contains("Pending"))
        .count()
}

/// ImagingStudy deliveries accepted by the EHR, per study: (study UID, idempotency key).
fn imaging_studies(receiver: &Receiver) -> Vec<(String, String)> {
    receiver
        .received()
        .into_iter()
        .filter(|r| r.status == 201 && r.uri.starts_with("/fhir/ImagingStudy"))
        .map(|r| {
            let study = r.uri.rsplit("urn:oid:").next().unwrap_or("").to_string();
            (study, r.key)
        })
        .collect()
}

/// storescu of `files` to `server`, killed with kill -9 once `seen` instances of them are
/// on `other`; the SOP Instance UIDs the killed node acknowledged.
fn send_and_kill(
    server: &mut Server,
    files: &[PathBuf],
    other: &Server,
    seen: usize,
) -> Vec<String> {
    let child = dcmtk("storescu")
        .args([
            "-v",
            "-aet",
            "STORESCU",
            "-aec",
            AE,
            "127.0.0.1",
            &server.port(),
        ])
        .args(files)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("storescu");
    let study = study_of(&files[0]);
    crate::routing::eventually("instances of the send on the other node", || {
        let r = other.http(&format!("/dicom-web/studies/{study}/instances"));
        r.0 == 200
            && serde_json::from_str::<Value>(&r.1)
                .ok()
                .and_then(|v| v.as_array().map(Vec::len))
                .is_some_and(|n| n >= seen)
    });
    server.kill9();
    let out = child.wait_with_output().expect("storescu");
    let log = String::from_utf8_lossy(&out.stderr);
    let acknowledged = store_response_statuses(&log)
        .iter()
        .take_while(|s| *s == "Success")
        .count();
    assert!(
        acknowledged >= seen && acknowledged < files.len(),
        "{acknowledged} acknowledged:\n{log}"
    );
    files[..acknowledged]
        .iter()
        .map(|f| file_uids(f).0)
        .collect()
}

#[test]
fn two_nodes_share_one_database_and_one_bucket() {
    let pg = Postgres::start();
    let (_moto, s3_port): (Peer, u16) = moto();
    s3_tool(s3_port, &["create", "pacs-nodes"]);
    let ehr = Receiver::start(0);
    let (tmp_a, data_a) = data_dir();
    let (tmp_b, data_b) = data_dir();
    let config_a = node_config(tmp_a.path(), &pg, s3_port, ehr.port);
    let config_b = node_config(tmp_b.path(), &pg, s3_port, ehr.port);
    let mut a = start(&data_a, &config_a);
    // Node A first: it runs the EHR worker, node B stands by.
    a.wait_for_log("job=worker ehr");
    let b = start(&data_b, &config_b);
    b.wait_for_log("another node runs this job; standing by job=worker ehr");

    // 200 instances to each node at once (a study of two series per node, one patient),
    // and a third study whose halves go to both nodes at the same time.
    let gen = tempfile::tempdir().expect("tmp");
    let to_a = small_ct(&gen.path().join("a"), 200, "node-a");
    let to_b = small_ct(&gen.path().join("b"), 200, "node-b");
    let split = small_ct(&gen.path().join("split"), 40, "split");
    let split_a: Vec<PathBuf> = split.iter().step_by(2).cloned().collect();
    let split_b: Vec<PathBuf> = split.iter().skip(1).step_by(2).cloned().collect();
    thread::scope(|s| {
        s.spawn(|| storescu(&a, &to_a));
        s.spawn(|| storescu(&b, &to_b));
        s.spawn(|| storescu(&a, &split_a));
        s.spawn(|| storescu(&b, &split_b));
    });

    for node in [&a, &b] {
        assert_eq!(
            stats_tuple(&node.statistics()),
            (1, 3, 5, 440),
            "{}",
            node.log()
        );
        assert_eq!(instances_in_qido(node), 440);
    }
    let studies = qido_uids(&a, "/dicom-web/studies", "0020000D");
    assert_eq!(studies.len(), 3);
    assert_eq!(qido_uids(&b, "/dicom-web/studies", "0020000D"), studies);
    assert_eq!(cfind_studies(&b), studies.len());
    // The study written by both nodes at once kept every instance and series.
    let split_study = study_of(&split[0]);
    let rec = a.json(&format!(
        "/dicom-web/studies?StudyInstanceUID={split_study}"
    ));
    assert_eq!(rec[0]["00201208"]["Value"][0].as_u64(), Some(40), "{rec}");
    assert_eq!(rec[0]["00201206"]["Value"][0].as_u64(), Some(1), "{rec}");

    // The change feed lists every instance once, in the same order on both nodes.
    let feed_a = change_feed(&a);
    assert_eq!(feed_a.len(), 440);
    let mut uids: Vec<&String> = feed_a.iter().map(|(_, u)| u).collect();
    uids.sort();
    uids.dedup();
    assert_eq!(uids.len(), 440, "an instance listed twice");
    assert!(feed_a.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(change_feed(&b), feed_a);

    // What node A stored, node B returns byte for byte (C-GET).
    let study_a = study_of(&to_a[0]);
    let got = tempfile::tempdir().expect("tmp");
    let files = getscu_study(&b, &study_a, got.path());
    assert_eq!(files.len(), 200, "{}", b.log());
    let by_uid: std::collections::HashMap<String, &PathBuf> =
        to_a.iter().map(|f| (file_uids(f).0, f)).collect();
    for f in &files {
        let sent = by_uid[&file_uids(f).0];
        assert_eq!(dataset_bytes(f), dataset_bytes(sent), "{}", f.display());
    }

    // A research link made on node A opens on node B (one signing secret for the site).
    let made = crate::security::curl(
        &format!(
            "http://127.0.0.1:{}/api/studies/{study_a}/share?profile=basic&project=nodes&hours=1",
            a.http_port
        ),
        "POST",
        None,
        &[],
    );
    assert_eq!(made.status, 200, "{}", made.text());
    let url = made.json()["url"].as_str().expect("url").to_string();
    let path = &url[url.find("/api/research/").expect("research path")..];
    let (status, _) = b.http(path);
    assert_eq!(status, 200, "a link made on A, opened on B");

    // The EHR hears of each study once, from one of the nodes.
    ehr.wait(
        "an ImagingStudy per study",
        |_| imaging_studies(&ehr).len() >= 3,
        &b,
    );
    thread::sleep(std::time::Duration::from_secs(3));
    let mut delivered = imaging_studies(&ehr);
    delivered.sort();
    assert_eq!(
        delivered.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>(),
        studies,
        "{delivered:?}"
    );
    let mut keys: Vec<&String> = delivered.iter().map(|(_, k)| k).collect();
    keys.dedup();
    assert_eq!(keys.len(), 3);

    // Node A killed with kill -9 in the middle of a send: every instance it acknowledged is
    // in the database and the bucket, served by node B; the EHR still hears of the study
    // (from B, whichever node held the worker before).
    let late = small_ct(&gen.path().join("late"), 200, "late");
    let acknowledged = send_and_kill(&mut a, &late, &b, 20);
    let late_study = study_of(&late[0]);
    let served = qido_uids(
        &b,
        &format!("/dicom-web/studies/{late_study}/instances"),
        "00080018",
    );
    for uid in &acknowledged {
        assert!(
            served.contains(uid),
            "{uid} acknowledged by A, not served by B"
        );
    }
    let in_db: usize = pg
        .query(&format!("SELECT count(*) FROM instances i JOIN series s ON i.series_uid = s.uid WHERE s.study_uid = '{late_study}'"))
        .parse()
        .expect("count");
    assert!(in_db >= acknowledged.len());
    let one = &acknowledged[acknowledged.len() - 1];
    let (status, _) = b.http(&format!(
        "/dicom-web/studies/{late_study}/series/{}/instances/{one}",
        b.parents_of(one).1
    ));
    assert_eq!(status, 200);
    b.wait_for_log("this node runs the job job=worker ehr");
    ehr.wait(
        "the late study delivered after node A died",
        |_| imaging_studies(&ehr).iter().any(|(s, _)| *s == late_study),
        &b,
    );

    // An object no record names (as a node dying between upload and commit leaves): `pacs
    // verify --sweep-orphans-older-than` removes it, and only it and its like.
    s3_tool(s3_port, &["put", "pacs-nodes", "site/zz/orphan.dcm"]);
    let out = run(crate::security::pacs()
        .args(["verify", "--config"])
        .arg(&config_b)
        .arg("--data")
        .arg(&data_b)
        .args(["--sweep-orphans-older-than", "0"])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test"));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed.contains("orphan removed: zz/orphan.dcm"),
        "{printed}"
    );
    let left = objects(s3_port, "pacs-nodes", "site/");
    assert!(!left.iter().any(|k| k.ends_with("orphan.dcm")));
    assert_eq!(
        left.len().to_string(),
        pg.query("SELECT count(*) FROM instances")
    );
}

/// `storescu -v` of `files`; the status text of each C-STORE response.
fn store_statuses(server: &Server, files: &[PathBuf]) -> Vec<String> {
    let out = run(dcmtk("storescu")
        .args([
            "-v",
            "-aet",
            "STORESCU",
            "-aec",
            AE,
            "127.0.0.1",
            &server.port(),
        ])
        .args(files));
    store_response_statuses(&String::from_utf8_lossy(&out.stderr))
}

/// The database is reached as a site's would be: over TLS, verify-full, with a client
/// certificate (the cluster takes nothing else), also when the node reconnects.
#[test]
fn a_node_refuses_for_now_while_the_database_is_away_and_recovers_by_itself() {
    let pg = Postgres::start_tls();
    let (tmp, data) = data_dir();
    let config = tmp.path().join("pacs.toml");
    std::fs::write(&config, format!("[index]\nurl = \"{}\"\n", pg.url())).expect("config");
    let server = Server::start_with_config(&data, &config);
    let gen = tempfile::tempdir().expect("tmp");
    let files = small_ct(gen.path(), 6, "away");
    storescu(&server, &files[..2]);

    pg.stop();
    // C-STORE: refused with a status that says "out of resources" (0xA700), which a
    // modality retries; nothing half-written.
    let statuses = store_statuses(&server, &files[2..3]);
    assert_eq!(statuses.len(), 1, "{}", server.log());
    assert_ne!(statuses[0], "Success");
    assert!(
        statuses[0].contains("OutOfResources") || statuses[0].contains("A700"),
        "{statuses:?}"
    );
    // HTTP: 503 with Retry-After, not 500.
    let r = crate::corrections::fetch(&server, "/dicom-web/studies");
    assert_eq!(r.status, 503, "{}", r.text());
    let (status, _) = server.http("/api/statistics");
    assert_eq!(status, 503);

    pg.restart();
    // The node reconnects by itself: the refused instance can be sent again, and what was
    // acknowledged before is all there.
    crate::routing::eventually("the node answering again", || {
        server.http("/api/statistics").0 == 200
    });
    storescu(&server, &files[2..]);
    assert_eq!(stats_tuple(&server.statistics()).3, 6);
    let study = study_of(&files[0]);
    let sops = qido_uids(
        &server,
        &format!("/dicom-web/studies/{study}/instances"),
        "00080018",
    );
    let mut sent: Vec<String> = files.iter().map(|f| file_uids(f).0).collect();
    sent.sort();
    assert_eq!(sops, sent);
}

#[test]
fn a_node_refuses_for_now_while_the_bucket_is_away() {
    let pg = Postgres::start();
    let (moto_peer, s3_port) = moto();
    s3_tool(s3_port, &["create", "pacs-nodes"]);
    let (tmp, data) = data_dir();
    let ehr = Receiver::start(0);
    let config = node_config(tmp.path(), &pg, s3_port, ehr.port);
    let server = start(&data, &config);
    let gen = tempfile::tempdir().expect("tmp");
    let files = small_ct(gen.path(), 4, "bucket-away");
    storescu(&server, &files[..1]);
    let sop = file_uids(&files[0]).0;
    let study = study_of(&files[0]);
    let series = server.parents_of(&sop).1;

    drop(moto_peer);
    // C-STORE: 0xA700 within the retry limit, and nothing of the instance indexed.
    let statuses = store_statuses(&server, &files[1..2]);
    assert_eq!(statuses.len(), 1, "{}", server.log());
    assert!(statuses[0].contains("OutOfResources"), "{statuses:?}");
    assert_eq!(stats_tuple(&server.statistics()).3, 1);
    // Searches still answer (the index is up); a retrieve of the file is 503, not 500.
    assert_eq!(
        qido_uids(&server, "/dicom-web/studies", "0020000D"),
        std::slice::from_ref(&study)
    );
    let r = crate::corrections::fetch(
        &server,
        &format!("/dicom-web/studies/{study}/series/{series}/instances/{sop}"),
    );
    assert_eq!(r.status, 503, "{}", r.text());
    let r = crate::corrections::fetch(
        &server,
        &format!("/dicom-web/studies/{study}/series/{series}/instances/{sop}"),
    );
    assert_eq!(r.status, 503, "{}", r.text());

    // The bucket is back (moto starts empty): the node stores again by itself.
    let _moto = moto_on(s3_port);
    s3_tool(s3_port, &["create", "pacs-nodes"]);
    storescu(&server, &files[1..]);
    assert_eq!(stats_tuple(&server.statistics()).3, 4);
    assert_eq!(objects(s3_port, "pacs-nodes", "site/").len(), 3);
}
