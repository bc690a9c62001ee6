//! What an unauthenticated outsider can throw at the listeners, and what the archive does
//! about it: deeply nested data sets, floods of half-sent A-ASSOCIATE-RQs, trickling DIMSE
//! and HTTP connections. Each reproduces a defect of the hardening issue with a raw-socket
//! client (tests/support/hostile.py) and asserts on what came back.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// Run hostile.py to its end; its last JSON line.
pub fn hostile(args: &[&str]) -> Value {
    let out = run(python()
        .arg(repo().join("tests/support/hostile.py"))
        .args(args));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or("");
    serde_json::from_str(line).unwrap_or_else(|_| {
        panic!(
            "hostile.py {args:?} printed no JSON: stdout={stdout} stderr={}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// hostile.py in the background, its stdout read line by line.
struct Background {
    child: Child,
    lines: BufReader<ChildStdout>,
}

impl Background {
    fn start(args: &[&str]) -> Background {
        let mut child = python()
            .arg(repo().join("tests/support/hostile.py"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start hostile.py");
        let lines = BufReader::new(child.stdout.take().expect("stdout"));
        Background { child, lines }
    }

    fn next(&mut self) -> Value {
        let mut line = String::new();
        self.lines.read_line(&mut line).expect("read hostile.py");
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("hostile.py said {line:?}"))
    }

    /// A trickler's last line: when the server closed each connection (never: infinity).
    fn closed_times(&mut self) -> Vec<f64> {
        let v = self.next();
        v["closed"]
            .as_array()
            .unwrap_or_else(|| panic!("no closing times: {v}"))
            .iter()
            .map(|t| t.as_f64().unwrap_or(f64::INFINITY))
            .collect()
    }

    /// A line on stdin (flood: close the connections).
    fn tell(&mut self) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin.write_all(b"go\n").expect("write");
        stdin.flush().expect("flush");
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(data: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = data.parent().expect("parent").join("pacs.toml");
    std::fs::write(&path, text).expect("config");
    path
}

#[test]
fn deeply_nested_sequences_are_refused_over_dimse_and_stow() {
    let (_tmp, data) = data_dir();
    let server = Server::start(&data);
    let port = server.port();
    // 30,000 deep (about 1 MB) aborted the whole process every time, both ways.
    for depth in ["2000", "30000"] {
        let v = hostile(&["deep-dimse", &port, depth]);
        assert_eq!(v["status"], 0xC000, "{depth} deep over C-STORE: {v}");
        let comment = v["comment"].as_str().unwrap_or("");
        assert!(comment.contains("nested more than 64 deep"), "{comment}");
        server.assert_echo();
    }
    let stow = format!("http://127.0.0.1:{}/dicom-web/studies", server.http_port);
    for depth in ["2000", "30000"] {
        let v = hostile(&["deep-stow", &stow, depth]);
        assert_eq!(v["http"], 409, "{depth} deep over STOW-RS: {v}");
        let body = v["body"].as_str().unwrap_or("");
        assert!(body.contains("nested more than 64 deep"), "{body}");
    }
    server.assert_echo();
    // At the limit, the data set is an ordinary instance: stored and read back whole.
    let v = hostile(&["deep-dimse", &port, "64"]);
    assert_eq!(v["status"], 0, "64 deep: {v}");
    // (Counted in the text: 64 levels are deeper than serde_json parses by default.)
    let (code, meta) = server.http("/dicom-web/studies/1.2.826.0.1.3680043.10.999.2/metadata");
    assert_eq!(code, 200, "{meta}");
    assert_eq!(
        meta.matches("\"00101002\"").count(),
        64,
        "metadata keeps every level"
    );
    assert_eq!(stats_tuple(&server.statistics()), (1, 1, 1, 1));
}

#[test]
fn half_sent_associate_requests_cost_bounded_memory_and_it_is_returned() {
    let (_tmp, data) = data_dir();
    let server = Server::start(&data);
    let baseline = server.memory_kib("VmRSS");
    // 1,000 connections from 8 addresses, each sending 999,000 bytes of an A-ASSOCIATE-RQ that
    // declares 1,000,000: 1.2 GB of resident memory before the fix, never returned.
    let mut flood =
        Background::start(&["flood", &server.port(), "1000", "999000", "127.0.0.2", "8"]);
    let held = flood.next();
    assert!(held["holding"].is_object(), "{held}");
    std::thread::sleep(Duration::from_secs(1));
    let peak = server.memory_kib("VmHWM");
    let during = server.memory_kib("VmRSS");
    server.assert_echo();
    flood.tell();
    assert_eq!(flood.next()["done"], true);
    // Memory goes back once the connections are gone. mimalloc returns freed pages to the
    // system lazily, when the threads that freed them next allocate: a server in use does,
    // so this one is kept in use (C-ECHO, HTTP) while we wait.
    // What may stay: 32 MB, or a third of what the flood took when that is more (allocator
    // caches scale with the peak; CI saw 47 → 182 → 80 MB). Held per connection, as before the
    // fix, it would be all of it.
    let allowance = (32 * 1024).max((peak.saturating_sub(baseline)) / 3);
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut after = server.memory_kib("VmRSS");
    while after > baseline + allowance && Instant::now() < deadline {
        for _ in 0..5 {
            server.assert_echo();
            server.http("/api/statistics");
        }
        std::thread::sleep(Duration::from_millis(500));
        after = server.memory_kib("VmRSS");
    }
    eprintln!(
        "RSS: {} MB before, {} MB holding 1,000 connections (peak {} MB), {} MB after",
        baseline / 1024,
        during / 1024,
        peak / 1024,
        after / 1024
    );
    assert!(peak < 300 * 1024, "peak RSS {} MB", peak / 1024);
    assert!(
        after <= baseline + allowance,
        "RSS stayed at {} MB (baseline {} MB, allowed {} MB more)",
        after / 1024,
        baseline / 1024,
        allowance / 1024
    );
    let log = server.log();
    let refusals = log.matches("connection refused (count").count();
    assert!(
        (1..=20).contains(&refusals),
        "the flood was refused, in a few log lines ({refusals}): {log}"
    );
}

#[test]
fn trickling_connections_neither_lock_modalities_out_nor_stay() {
    let (_tmp, data) = data_dir();
    let cfg = config(
        &data,
        "[limits]\nartim_timeout_secs = 4\nhttp_header_timeout_secs = 3\n\
         http_max_connections_per_address = 20\n",
    );
    let server = Server::start_with(
        &data,
        ServerOptions {
            extra_args: &[
                "--max-associations",
                "4",
                "--config",
                cfg.to_str().expect("utf-8"),
            ],
            ..Default::default()
        },
    );
    // 4 x max_associations trickling one byte a second from one address, and more than its
    // share from another: with the permit taken at accept, echoscu was refused for as long as
    // they trickled.
    let mut near = Background::start(&["trickle", &server.port(), "16", "30", "127.0.0.2"]);
    let mut far = Background::start(&["trickle", &server.port(), "60", "30", "127.0.0.3"]);
    assert_eq!(near.next()["started"], 16);
    assert_eq!(far.next()["started"], 60);
    std::thread::sleep(Duration::from_secs(2));
    for _ in 0..3 {
        let started = Instant::now();
        let out = run(dcmtk("echoscu").args(["-aec", AE, "127.0.0.1", &server.port()]));
        let took = started.elapsed();
        assert!(
            out.status.success(),
            "echoscu while connections trickle: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("echoscu answered in {took:?} while 76 connections trickled");
        assert!(took < Duration::from_secs(1), "echoscu took {took:?}");
    }
    // The ARTIM timer is a deadline for the whole A-ASSOCIATE-RQ: every trickler is closed
    // soon after 4 s, whatever it keeps sending.
    for (name, bg) in [("near", &mut near), ("far", &mut far)] {
        let times = bg.closed_times();
        let latest = times.iter().cloned().fold(0.0, f64::max);
        assert!(latest <= 10.0, "{name}: tricklers closed at {times:?}");
    }

    // HTTP: header bytes trickling are cut off by the header deadline.
    let mut slow = Background::start(&[
        "http-trickle",
        &server.http_port.to_string(),
        "15",
        "30",
        "127.0.0.2",
    ]);
    assert_eq!(slow.next()["started"], 15);
    let (code, _) = server.http("/api/statistics");
    assert_eq!(code, 200, "the API answers while headers trickle");
    let times = slow.closed_times();
    assert!(
        times.iter().all(|t| *t <= 8.0),
        "trickling HTTP connections closed at {times:?}"
    );
    // One address cannot take every connection: past its 20 it gets 503 at once, and
    // everyone else is still served.
    let v = hostile(&[
        "http-hold",
        &server.http_port.to_string(),
        "40",
        "127.0.0.4",
    ]);
    assert_eq!(v["open"], 20, "{v}");
    assert_eq!(v["busy"], 20, "{v}");
    let (code, _) = server.http("/api/statistics");
    assert_eq!(code, 200);
    // Headers cannot fill memory either: 100 KB of them are refused.
    let big = format!("X-Filler: {}", "a".repeat(100_000));
    let out = run(std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", &big])
        .arg(format!(
            "http://127.0.0.1:{}/api/statistics",
            server.http_port
        )));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "431");
}
