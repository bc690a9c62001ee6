//! Encryption at rest across restarts: the archive's blobs are sealed; a restart with another
//! blob key, or with none, is refused with the reason and changes nothing; with the right key
//! everything reads back as stored.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::security::{get, pacs};
use crate::support::*;

const KEY: &str = "6b1e2f3a4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7";
const OTHER_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// `pacs serve` on `data` that must stop by itself (a refusal to start): its exit status
/// and log. Killed, and the test failed, if it is still running after 30 s.
fn serve_expecting_refusal(data: &Path, key: Option<&str>) -> (std::process::ExitStatus, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pacs"));
    cmd.args([
        "serve",
        "--dicom-bind",
        "127.0.0.1",
        "--dicom-port",
        "0",
        "--http-port",
        "0",
        "--data",
    ])
    .arg(data)
    .env_remove("PACS_BLOB_KEY")
    .current_dir(data.parent().unwrap_or(data))
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    if let Some(k) = key {
        cmd.env("PACS_BLOB_KEY", k);
    }
    let mut child = cmd.spawn().expect("start pacs");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "pacs serve started with key {key:?}:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("output");
    (status, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Every blob file with its bytes, sorted.
fn blob_files(data: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = files_under(&data.join("blobs"))
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).expect("read blob");
            (p, bytes)
        })
        .collect();
    files.sort();
    files
}

fn start_with_key(data: &Path, key: &str) -> Server {
    Server::start_with(
        data,
        ServerOptions {
            env: &[("PACS_BLOB_KEY", key)],
            ..Default::default()
        },
    )
}

#[test]
fn a_restart_with_a_wrong_or_missing_blob_key_is_refused() {
    let (_tmp, data) = data_dir();
    let mut server = start_with_key(&data, KEY);
    let files = [
        samples().join("mr_explicit.dcm"),
        samples().join("ct_16bit_signed_implicit.dcm"),
    ];
    storescu(&server, &files);
    assert!(server.terminate().success());
    let sealed = blob_files(&data);
    assert_eq!(sealed.len(), 2);
    for (path, bytes) in &sealed {
        assert_eq!(&bytes[..8], b"PACSAES1", "{} is sealed", path.display());
    }

    for (key, reason) in [
        (Some(OTHER_KEY), "not the key"),
        (None, "no blob key is configured"),
    ] {
        let (status, log) = serve_expecting_refusal(&data, key);
        assert!(!status.success(), "{key:?}: {status:?}\n{log}");
        assert!(log.contains(reason), "{key:?}: the log says why:\n{log}");
        assert!(
            !log.contains("listening on"),
            "{key:?}: nothing served:\n{log}"
        );
        assert_eq!(
            blob_files(&data),
            sealed,
            "{key:?}: the blobs are untouched"
        );
    }
    // The other commands that open the archive refuse a wrong key too.
    let out = run(pacs()
        .args(["verify", "--data"])
        .arg(&data)
        .env("PACS_BLOB_KEY", OTHER_KEY));
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("not the key"), "pacs verify: {text}");
    let out = run(pacs()
        .args(["import", "--data"])
        .arg(&data)
        .arg(samples().join("us_rgb_multiframe.dcm"))
        .env_remove("PACS_BLOB_KEY"));
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("no blob key is configured"),
        "pacs import: {text}"
    );
    assert_eq!(blob_files(&data), sealed, "nothing imported in plaintext");

    // The right key: everything reads back as stored.
    let server = start_with_key(&data, KEY);
    assert_eq!(stats_tuple(&server.statistics()), (2, 2, 2, 2));
    for f in &files {
        let (sop, _) = file_uids(f);
        let (study, series) = server.parents_of(&sop);
        let body = std::env::temp_dir().join(format!("pacs-enc-{sop}.multipart"));
        let out = run(Command::new("curl")
            .args(["-sS", "--max-time", "20", "-o"])
            .arg(&body)
            .args(["-w", "%{http_code}"])
            .arg(format!(
                "http://127.0.0.1:{}/dicom-web/studies/{study}/series/{series}/instances/{sop}?transfer-syntax=*",
                server.http_port
            ))
            .args(["-H", "Accept: multipart/related; type=\"application/dicom\"; transfer-syntax=*"]));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
        let got = std::fs::read(&body).expect("body");
        let _ = std::fs::remove_file(&body);
        let want = dataset_bytes(f);
        assert!(
            got.windows(want.len()).any(|w| w == want.as_slice()),
            "{} comes back as stored",
            f.display()
        );
    }
    drop(server);
    let out = run(pacs()
        .args(["verify", "--data"])
        .arg(&data)
        .env("PACS_BLOB_KEY", KEY));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn blobs_encrypted_at_rest_read_back_through_every_path() {
    let (_tmp, data) = data_dir();
    let key = "5a".repeat(32);
    let server = Server::start_with(
        &data,
        ServerOptions {
            env: &[("PACS_BLOB_KEY", key.as_str())],
            ..Default::default()
        },
    );
    let sample = samples().join("mr_explicit.dcm");
    storescu(&server, std::slice::from_ref(&sample));
    let (sop, _) = file_uids(&sample);
    // On disk: sealed, no DICOM preamble, no patient name in the clear.
    let blob = server.blob_path(&sop);
    let raw = std::fs::read(&blob).expect("blob");
    assert_eq!(&raw[..8], b"PACSAES1");
    assert!(!raw.windows(4).any(|w| w == b"DICM"), "plaintext on disk");
    // Through WADO-RS, C-GET and the renderer: the instance as sent.
    let (study, series) = server.parents_of(&sop);
    let path = format!("/dicom-web/studies/{study}/series/{series}/instances/{sop}");
    let r = get(&server, &format!("{path}/rendered"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(&r.body[..2], &[0xFF, 0xD8], "JPEG");
    let out_dir = data.parent().expect("parent").join("got");
    let files = getscu_study(&server, &study, &out_dir);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        dataset_bytes(&files[0]) == dataset_bytes(&sample),
        "C-GET returned other bytes"
    );
    assert!(
        files_under(&data.join("tmp")).is_empty(),
        "decrypted temporary copies left behind"
    );
    // pacs verify checks the plaintext's SHA-256 through the key; a flipped byte is caught.
    let mut server = server;
    server.terminate();
    let verify = |env_key: Option<&str>| {
        let mut cmd = pacs();
        cmd.args(["verify", "--data"]).arg(&data);
        if let Some(k) = env_key {
            cmd.env("PACS_BLOB_KEY", k);
        }
        run(&mut cmd)
    };
    assert!(verify(Some(&key)).status.success());
    let mut altered = raw.clone();
    let mid = altered.len() / 2;
    altered[mid] ^= 0x01;
    std::fs::write(&blob, &altered).expect("write");
    let out = verify(Some(&key));
    assert!(!out.status.success(), "a flipped byte was not caught");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&sop),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
