//! Bad input gets a clear answer, nothing is stored, and the server keeps serving.

use std::process::Stdio;

use crate::support::*;

const A_ABORT: u64 = 0x07;

#[test]
fn random_bytes_and_broken_pdus_get_an_abort() {
    let (_tmp, data) = data_dir();
    let server = Server::start(&data);
    for kind in ["http", "bad-rq", "pdata-first"] {
        let v = scu(&["raw", &server.port(), kind]);
        assert_eq!(v["reply"].as_u64(), Some(A_ABORT), "{kind}: {v}");
        assert_eq!(
            v["closed"], true,
            "{kind}: connection closed after the abort: {v}"
        );
        server.assert_echo();
    }
    let v = scu(&["raw", &server.port(), "mid-association"]);
    assert_eq!(v["aborted"], true, "{v}");
    server.assert_echo();
}

#[test]
fn unreadable_or_inconsistent_datasets_are_refused_and_nothing_is_stored() {
    let (_tmp, data) = data_dir();
    let server = Server::start(&data);
    let cases = [
        ("missing-study-uid", 0xA900, "StudyInstanceUID"),
        ("uid-mismatch", 0xA900, "SOPInstanceUID"),
        ("class-mismatch", 0xA900, "SOPClassUID"),
        ("garbage-dataset", 0xC000, "parse"),
    ];
    for (kind, status, comment) in cases {
        let v = scu(&["bad", &server.port(), kind]);
        assert_eq!(v["status"].as_u64(), Some(status), "{kind}: {v}");
        let got = v["comment"].as_str().unwrap_or("");
        assert!(
            got.contains(comment),
            "{kind}: error comment {got:?} should name {comment}"
        );
        server.assert_echo();
    }
    assert_eq!(stats_tuple(&server.statistics()), (0, 0, 0, 0));
    let leftovers = files_under(&data.join("blobs"));
    assert!(
        leftovers.is_empty(),
        "staged files of refused instances are removed: {leftovers:?}"
    );
}

#[test]
fn a_failed_write_is_out_of_resources_and_half_of_nothing_is_indexed() {
    let (tmp, data) = data_dir();
    let big = tmp.path().join("big");
    // 1400x1400x2 bytes = 3.9 MB, over the 3 MB file size limit the server runs under.
    generate(
        &big,
        1,
        &["--rows", "1400", "--cols", "1400", "--seed", "big"],
    );
    let server = Server::start_with(
        &data,
        ServerOptions {
            file_size_limit: Some(3_000_000),
            ..Default::default()
        },
    );
    let v = scu(&["store", &server.port(), &big.display().to_string()]);
    assert_eq!(v["statuses"]["0xA700"], 1, "{v}");
    assert_eq!(stats_tuple(&server.statistics()), (0, 0, 0, 0));
    server.assert_echo();

    let v = scu(&[
        "store",
        &server.port(),
        &samples().join("mr_explicit.dcm").display().to_string(),
    ]);
    assert_eq!(v["statuses"]["0x0000"], 1, "{v}");
    assert_eq!(stats_tuple(&server.statistics()), (1, 1, 1, 1));
}

#[test]
fn associations_over_the_cap_are_rejected_transiently() {
    let (_tmp, data) = data_dir();
    let server = Server::start_with(
        &data,
        ServerOptions {
            extra_args: &["--max-associations", "1"],
            ..Default::default()
        },
    );
    let mut holder = python()
        .arg(repo().join("tests/support/scu.py"))
        // Held far longer than the test needs, so a slow machine cannot release it early.
        .args(["hold", &server.port(), "60"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("hold");
    let mut line = String::new();
    let stdout = holder.stdout.take().expect("stdout");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).expect("read");
    assert!(line.contains("true"), "holder associated: {line}");

    let v = scu(&["echo", &server.port()]);
    // rejected-transient, service-provider (presentation), local-limit-exceeded
    assert_eq!(
        v["rejected"]["result"],
        2,
        "{v}\nserver log:\n{}",
        server.log()
    );
    assert_eq!(v["rejected"]["source"], 3, "{v}");
    assert_eq!(v["rejected"]["reason"], 2, "{v}");
    let _ = holder.kill();
    let _ = holder.wait();
    // The freed slot serves again once the server has seen the holder's connection close.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let v = scu(&["echo", &server.port()]);
        if v["status"] == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "slot never freed: {v}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
