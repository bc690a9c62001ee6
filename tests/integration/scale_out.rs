//! Several archive nodes on one PostgreSQL database and one S3 bucket (`[index] url`,
//! `[blobs] url`), against a throwaway PostgreSQL and moto on loopback: what one node
//! stores the other serves, searches and lists in its change feed; an instance
//! acknowledged by a node killed with kill -9 is still there.

use std::path::{Path, PathBuf};
use std::thread;

use serde_json::Value;

use crate::blobs_s3::{moto, s3_tool};
use crate::corrections::qido_uids;
use crate::postgres::Postgres;
use crate::routing::Peer;
use crate::support::*;

fn node_config(dir: &Path, pg: &Postgres, s3_port: u16) -> PathBuf {
    let config = dir.join("pacs.toml");
    std::fs::write(
        &config,
        format!(
            "[index]\nurl = \"{}\"\nmax_connections = 8\n\n\
             [blobs]\nurl = \"s3://pacs-nodes/site\"\nendpoint = \"http://127.0.0.1:{s3_port}\"\n\
             allow_http = true\n",
            pg.url()
        ),
    )
    .expect("config");
    config
}

fn start_node(data: &Path, config: &Path) -> Server {
    Server::start_with(
        data,
        ServerOptions {
            extra_args: &["--config", config.to_str().expect("utf-8")],
            env: &[
                ("AWS_ACCESS_KEY_ID", "test"),
                ("AWS_SECRET_ACCESS_KEY", "test"),
            ],
            ..Default::default()
        },
    )
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
                .or_else(|| s["00201208"]["Value"][0].as_str().and_then(|v| v.parse().ok()))
                .expect("NumberOfStudyRelatedInstances")
        })
        .sum()
}

fn cfind_studies(server: &Server) -> usize {
    let out = run(dcmtk("findscu")
        .args(["-v", "-S", "-aet", "FINDSCU", "-aec", AE])
        .args(["-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID"])
        .args(["127.0.0.1", &server.port()]));
    assert!(out.status.success(), "findscu: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains("Find Response:") && l.contains("Pending"))
        .count()
}

#[test]
fn two_nodes_share_one_database_and_one_bucket() {
    let pg = Postgres::start();
    let (_moto, s3_port): (Peer, u16) = moto();
    s3_tool(s3_port, &["create", "pacs-nodes"]);
    let (tmp_a, data_a) = data_dir();
    let (tmp_b, data_b) = data_dir();
    let config_a = node_config(tmp_a.path(), &pg, s3_port);
    let config_b = node_config(tmp_b.path(), &pg, s3_port);
    let mut a = start_node(&data_a, &config_a);
    let b = start_node(&data_b, &config_b);

    // 200 instances to each node at once (two studies per node).
    let gen = tempfile::tempdir().expect("tmp");
    let to_a = small_ct(&gen.path().join("a"), 200, "node-a");
    let to_b = small_ct(&gen.path().join("b"), 200, "node-b");
    thread::scope(|s| {
        s.spawn(|| storescu(&a, &to_a));
        s.spawn(|| storescu(&b, &to_b));
    });

    for node in [&a, &b] {
        assert_eq!(stats_tuple(&node.statistics()).3, 400, "{}", node.log());
        assert_eq!(instances_in_qido(node), 400);
    }
    let studies = qido_uids(&a, "/dicom-web/studies", "0020000D");
    assert_eq!(qido_uids(&b, "/dicom-web/studies", "0020000D"), studies);
    assert_eq!(cfind_studies(&b), studies.len());

    // The change feed lists every instance once, in the same order on both nodes.
    let feed_a = change_feed(&a);
    assert_eq!(feed_a.len(), 400);
    let mut uids: Vec<&String> = feed_a.iter().map(|(_, u)| u).collect();
    uids.sort();
    uids.dedup();
    assert_eq!(uids.len(), 400, "an instance listed twice");
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

    // Node A killed right after an acknowledged send: node B still serves it.
    let late = small_ct(&gen.path().join("late"), 3, "late");
    storescu(&a, &late);
    a.kill9();
    for f in &late {
        let (study, sop) = (study_of(f), file_uids(f).0);
        let (status, _) = b.http(&format!("/dicom-web/studies/{study}/instances?SOPInstanceUID={sop}"));
        assert_eq!(status, 200, "{}", b.log());
    }
    assert_eq!(stats_tuple(&b.statistics()).3, 403);
    assert_eq!(pg.query("SELECT count(*) FROM instances"), "403");
    let _: Value = b.json("/api/statistics");
}
