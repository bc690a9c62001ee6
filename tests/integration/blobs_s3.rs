//! Blobs on S3-compatible storage (`[blobs] url = "s3://bucket/prefix"`) against a real S3
//! server on loopback (moto): every stored instance is an object in the bucket and nothing
//! under the data folder's blobs; C-GET returns the stored data sets byte for byte; frames
//! (range reads) and rendered images are served from the bucket; an instance acknowledged
//! just before kill -9 is there after the restart; `pacs verify` reads the objects; a DELETE
//! removes them.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::routing::{eventually, free_port, wait_for_port, Peer};
use crate::security::{curl, pacs};
use crate::support::*;

pub(crate) fn moto() -> (Peer, u16) {
    let port = free_port();
    (moto_on(port), port)
}

/// moto on `port` (again, after a simulated outage: it starts empty).
pub(crate) fn moto_on(port: u16) -> Peer {
    // Beside the test Python (PACS_TEST_PYTHON's venv).
    let python = std::env::var_os("PACS_TEST_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"));
    let child = Command::new(python.with_file_name("moto_server"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server (scripts/setup test installs it in the venv)");
    let peer = Peer::from(child);
    wait_for_port(port, "moto_server");
    peer
}

/// tests/support/s3_tool.py against the S3 server (signed requests, as boto3 makes them).
pub(crate) fn s3_tool(port: u16, args: &[&str]) -> String {
    let out = run(python()
        .arg(repo().join("tests/support/s3_tool.py"))
        .arg(format!("http://127.0.0.1:{port}"))
        .args(args));
    assert!(
        out.status.success(),
        "s3_tool.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Object keys under `prefix` in the bucket.
pub(crate) fn objects(port: u16, bucket: &str, prefix: &str) -> Vec<String> {
    s3_tool(port, &["list", bucket, prefix])
        .lines()
        .map(str::to_string)
        .collect()
}

pub(crate) fn start(data: &Path, config: &Path) -> Server {
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

#[test]
fn instances_live_in_the_bucket_and_come_back_byte_for_byte() {
    let (_moto, port) = moto();
    s3_tool(port, &["create", "pacs-test"]);
    let (tmp, data) = data_dir();
    let config = tmp.path().join("pacs.toml");
    std::fs::write(
        &config,
        format!(
            "[blobs]\nurl = \"s3://pacs-test/site1\"\nendpoint = \"http://127.0.0.1:{port}\"\nallow_http = true\n"
        ),
    )
    .expect("config");
    let mut server = start(&data, &config);
    let mut files = sample_files();
    let plain = small_ct(&tmp.path().join("plain"), 3, "s3-plain");
    files.extend(plain.iter().cloned());
    storescu(&server, &files);

    // Every instance an object under the prefix; no blob files here.
    let stored = objects(port, "pacs-test", "site1/");
    assert_eq!(stored.len(), files.len(), "{stored:?}");
    assert!(files_under(&data.join("blobs")).is_empty());

    // C-GET sends the stored data sets: byte for byte the files sent.
    let (sop, _) = file_uids(&plain[0]);
    let (study, _) = server.parents_of(&sop);
    let got = getscu_study(&server, &study, &tmp.path().join("got"));
    assert_eq!(got.len(), plain.len());
    for f in &got {
        let (sop, _) = file_uids(f);
        let original = plain
            .iter()
            .find(|o| file_uids(o).0 == sop)
            .expect("a sent file");
        assert!(dataset_bytes(f) == dataset_bytes(original), "{sop} differs");
    }

    // Frames (range reads) and rendered images from the bucket.
    let multi = samples().join("us_rgb_multiframe.dcm");
    let (msop, _) = file_uids(&multi);
    let (mstudy, mseries) = server.parents_of(&msop);
    let base = format!("/dicom-web/studies/{mstudy}/series/{mseries}/instances/{msop}");
    let (st, _) = server.http(&format!("{base}/frames/2"));
    assert_eq!(st, 200, "frame 2");
    let (st, _) = server.http(&format!("{base}/rendered"));
    assert_eq!(st, 200, "rendered");

    // Acknowledged, then kill -9: in the bucket and the index after the restart.
    let extra = tmp.path().join("extra");
    let late = small_ct(&extra, 1, "s3-late");
    storescu(&server, &late);
    server.kill9();
    let server = start(&data, &config);
    let (late_sop, _) = file_uids(&late[0]);
    let (late_study, _) = server.parents_of(&late_sop);
    let again = getscu_study(&server, &late_study, &tmp.path().join("again"));
    assert_eq!(again.len(), 1);
    assert!(
        dataset_bytes(&again[0]) == dataset_bytes(&late[0]),
        "late instance differs"
    );

    // verify reads every object.
    let out = run(pacs()
        .args(["verify", "--config"])
        .arg(&config)
        .args(["--data"])
        .arg(&data)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test"));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed.contains(&format!("checked {} instances", files.len() + 1)),
        "{printed}"
    );

    // DELETE takes the objects away.
    let before = objects(port, "pacs-test", "site1/").len();
    let r = curl(
        &format!(
            "http://127.0.0.1:{}/dicom-web/studies/{late_study}",
            server.http_port
        ),
        "DELETE",
        None,
        &[],
    );
    assert_eq!(r.status, 204, "{}", r.text());
    eventually("the object deleted", || {
        objects(port, "pacs-test", "site1/").len() == before - 1
    });
}
