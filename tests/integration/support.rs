//! Test harness: start/stop the server, run the peers, read the HTTP API.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const AE: &str = "PACS";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn samples() -> PathBuf {
    repo().join("sample-dicom")
}

/// The sample files, sorted.
pub fn sample_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(samples())
        .expect("sample-dicom")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    v.sort();
    v
}

/// The test venv's Python (made by scripts/test); PACS_TEST_PYTHON overrides.
pub fn python() -> Command {
    let py = std::env::var_os("PACS_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"));
    assert!(
        py.exists(),
        "{} missing: run ./scripts/test, which creates the test venv",
        py.display()
    );
    Command::new(py)
}

/// A pynetdicom SCU run (tests/support/scu.py); returns its JSON line.
pub fn scu(args: &[&str]) -> Value {
    let out = python()
        .arg(repo().join("tests/support/scu.py"))
        .args(args)
        .output()
        .expect("run scu.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or("");
    serde_json::from_str(line).unwrap_or_else(|_| {
        panic!(
            "scu.py {args:?} printed no JSON: stdout={stdout} stderr={}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Generate `count` CT instances into `dir` (tests/support/gen_instances.py).
pub fn generate(dir: &Path, count: usize, extra: &[&str]) {
    let status = python()
        .arg(repo().join("tests/support/gen_instances.py"))
        .arg(dir)
        .arg(count.to_string())
        .args(extra)
        .status()
        .expect("run gen_instances.py");
    assert!(status.success(), "gen_instances.py failed");
}

/// `count` small (32x32) CT instances of one patient, one study, generated into `dir` from
/// `seed`; the files, sorted.
pub fn small_ct(dir: &Path, count: usize, seed: &str) -> Vec<PathBuf> {
    generate(
        dir,
        count,
        &[
            "--rows",
            "32",
            "--cols",
            "32",
            "--patients",
            "1",
            "--seed",
            seed,
        ],
    );
    let mut files = files_under(dir);
    files.sort();
    files
}

/// A dcmtk tool from Debian (not the venv's pynetdicom tools of the same name).
pub fn dcmtk(tool: &str) -> Command {
    let mut c = Command::new(format!("/usr/bin/{tool}"));
    c.env("TCP_NODELAY", "1");
    c
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

pub struct Server {
    child: Option<Child>,
    pub data: PathBuf,
    pub dicom_port: u16,
    pub http_port: u16,
    /// DICOM TLS port, when `[tls]` is configured.
    pub dicom_tls_port: u16,
    /// HL7 MLLP port, when `[hl7]` or `--hl7-port` turns it on (logged before the others).
    pub hl7_port: u16,
    log: Arc<Mutex<String>>,
}

#[derive(Default)]
pub struct ServerOptions<'a> {
    pub extra_args: &'a [&'a str],
    pub env: &'a [(&'a str, &'a str)],
    /// Run under `prlimit --fsize=N` to make writes past N bytes fail.
    pub file_size_limit: Option<u64>,
}

impl Server {
    pub fn start(data: &Path) -> Server {
        Server::start_with(data, ServerOptions::default())
    }

    /// The server with `--config FILE`.
    pub fn start_with_config(data: &Path, config: &Path) -> Server {
        let config = config.to_str().expect("a UTF-8 config path");
        Server::start_with(
            data,
            ServerOptions {
                extra_args: &["--config", config],
                ..Default::default()
            },
        )
    }

    pub fn start_with(data: &Path, opts: ServerOptions<'_>) -> Server {
        let bin = env!("CARGO_BIN_EXE_pacs");
        let mut cmd = match opts.file_size_limit {
            Some(limit) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--fsize={limit}")).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.args([
            "serve",
            "--dicom-bind",
            "127.0.0.1",
            "--dicom-port",
            "0",
            "--http-port",
            "0",
        ])
        .arg("--data")
        .arg(data)
        .args(opts.extra_args)
        .env("PACS_LOG", "info")
        .env_remove("PACS_AE_TITLE")
        .envs(opts.env.iter().copied())
        .current_dir(data.parent().unwrap_or(data))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start pacs");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let addr = addr.split_whitespace().next().unwrap_or("");
                    let port: u16 = addr
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(0);
                    let kind = if line.contains("HL7") {
                        3
                    } else if line.contains("DICOM-TLS") {
                        2
                    } else if line.contains("DICOM") {
                        0
                    } else {
                        1
                    };
                    let _ = tx.send((kind, port));
                }
                let mut l = log2.lock().expect("log");
                l.push_str(&line);
                l.push('\n');
            }
        });
        let (mut dicom_port, mut http_port, mut dicom_tls_port, mut hl7_port) = (0, 0, 0, 0);
        let deadline = Instant::now() + Duration::from_secs(60);
        while dicom_port == 0 || http_port == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((0, p)) => dicom_port = p,
                Ok((2, p)) => dicom_tls_port = p,
                Ok((3, p)) => hl7_port = p,
                Ok((_, p)) => http_port = p,
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("server did not start; log:\n{}", log.lock().expect("log"))
                }
            }
        }
        Server {
            child: Some(child),
            data: data.to_path_buf(),
            dicom_port,
            http_port,
            dicom_tls_port,
            hl7_port,
            log,
        }
    }

    pub fn port(&self) -> String {
        self.dicom_port.to_string()
    }

    /// The server process's id (to read its memory use from /proc).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// A line of /proc/PID/status in KiB (VmRSS: resident now, VmHWM: the peak).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("/proc status of the server");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    pub fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }

    /// GET a path of the HTTP API with curl; returns (status, body).
    pub fn http(&self, path: &str) -> (u16, String) {
        let out = run(Command::new("curl")
            .args(["-sS", "--max-time", "20", "-w", "\n%{http_code}"])
            .arg(format!("http://127.0.0.1:{}{path}", self.http_port)));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    pub fn json(&self, path: &str) -> Value {
        let (code, body) = self.http(path);
        assert_eq!(code, 200, "GET {path} gave {code}: {body}");
        serde_json::from_str(&body).expect("JSON body")
    }

    pub fn statistics(&self) -> Value {
        self.json("/api/statistics")
    }

    /// Study and series UIDs of a stored instance, from its index record.
    pub fn parents_of(&self, sop_instance_uid: &str) -> (String, String) {
        let rec = self.json(&format!("/api/instances/{sop_instance_uid}"));
        let uid = |k: &str| {
            rec[k]
                .as_str()
                .unwrap_or_else(|| panic!("{k} in {rec}"))
                .to_string()
        };
        (uid("study_instance_uid"), uid("series_instance_uid"))
    }

    /// The stored blob of an instance, from its index record.
    pub fn blob_path(&self, sop_instance_uid: &str) -> PathBuf {
        let rec = self.json(&format!("/api/instances/{sop_instance_uid}"));
        let key = rec["blob"].as_str().expect("blob key");
        self.data.join("blobs").join(key)
    }

    /// C-ECHO with dcmtk must succeed (the server is still serving).
    pub fn assert_echo(&self) {
        let out = run(dcmtk("echoscu").args(["-aec", AE, "127.0.0.1", &self.port()]));
        assert!(
            out.status.success(),
            "echoscu failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.send_sigterm();
        self.wait_exit()
    }

    /// SIGTERM without waiting for the server to stop.
    pub fn send_sigterm(&self) {
        let pid = self.pid();
        assert_ne!(pid, 0, "the server is not running");
        // procps's kill (scripts/setup test installs it): a missing tool or a refused signal
        // must fail here, not pass as a server that stopped by itself.
        let out = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .output()
            .unwrap_or_else(|e| panic!("cannot run kill (package procps): {e}"));
        assert!(
            out.status.success(),
            "kill -TERM {pid} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Wait (at most 60 s) for the server to exit; its exit status.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = c.try_wait().expect("wait") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "server did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait (at most 30 s) until the server's log has a line containing `text`.
    pub fn wait_for_log(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.log().contains(text) {
            assert!(
                Instant::now() < deadline,
                "no {text:?} in the log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A fresh data dir inside a temp dir (kept alive by the returned guard).
pub fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    (tmp, data)
}

/// The data set bytes of a Part 10 file (everything after the File Meta Information).
pub fn dataset_bytes(path: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert_eq!(
        &bytes[128..132],
        b"DICM",
        "{} is not Part 10",
        path.display()
    );
    let group_len = u32::from_le_bytes([bytes[140], bytes[141], bytes[142], bytes[143]]) as usize;
    bytes.split_off(144 + group_len)
}

/// SOP Instance UID and transfer syntax of a Part 10 file, read with dcmdump.
pub fn file_uids(path: &Path) -> (String, String) {
    let out = run(dcmtk("dcmdump")
        .args(["-s", "-Un", "+P", "0002,0003", "+P", "0002,0010"])
        .arg(path));
    let text = String::from_utf8_lossy(&out.stdout);
    let vals: Vec<String> = text
        .lines()
        .map(|l| {
            l.split('[')
                .nth(1)
                .and_then(|r| r.split(']').next())
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(vals.len(), 2, "dcmdump of {}: {text}", path.display());
    (vals[0].clone(), vals[1].clone())
}

pub fn stats_tuple(v: &Value) -> (u64, u64, u64, u64) {
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
    (n("patients"), n("studies"), n("series"), n("instances"))
}

/// dcmtk storescu proposes one compressed transfer syntax per run: the option for each.
fn storescu_proposal(transfer_syntax: &str) -> &'static str {
    match transfer_syntax {
        "1.2.840.10008.1.2.4.50" => "-xy",
        "1.2.840.10008.1.2.4.51" => "-xx",
        "1.2.840.10008.1.2.4.57" | "1.2.840.10008.1.2.4.70" => "-xs",
        "1.2.840.10008.1.2.4.90" => "-xv",
        "1.2.840.10008.1.2.4.91" => "-xw",
        "1.2.840.10008.1.2.4.80" => "-xt",
        "1.2.840.10008.1.2.4.81" => "-xu",
        "1.2.840.10008.1.2.5" => "-xr",
        "1.2.840.10008.1.2.1.99" => "-xd",
        "1.2.840.10008.1.2.2" => "-xb",
        "1.2.840.10008.1.2" => "-xi",
        _ => "-x=",
    }
}

/// Send files with dcmtk storescu (calling AE STORESCU), one association per proposal kind,
/// each file in its own transfer syntax. Panics if storescu fails or if any C-STORE response
/// is not Success (0x0000): storescu itself exits 0 after refused or warned stores.
pub fn storescu(server: &Server, files: &[PathBuf]) {
    let mut groups: std::collections::BTreeMap<&str, Vec<&PathBuf>> = Default::default();
    for f in files {
        groups
            .entry(storescu_proposal(&file_uids(f).1))
            .or_default()
            .push(f);
    }
    for (option, group) in groups {
        let out = run(dcmtk("storescu")
            .args([
                "-v",
                option,
                "-aet",
                "STORESCU",
                "-aec",
                AE,
                "127.0.0.1",
                &server.port(),
            ])
            .args(&group));
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "storescu {option}: {log}");
        let statuses = store_response_statuses(&log);
        assert!(
            statuses.len() == group.len() && statuses.iter().all(|s| s == "Success"),
            "storescu {option}: {} files, C-STORE responses {statuses:?}:\n{log}",
            group.len()
        );
    }
}

/// The status of every "Received Store Response (...)" line of a `storescu -v` log, in order.
pub fn store_response_statuses(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.split("Received Store Response (").nth(1))
        .map(|rest| rest.strip_suffix(')').unwrap_or(rest).to_string())
        .collect()
}

/// C-GET a whole study with dcmtk getscu into `out_dir`; the files that arrived.
pub fn getscu_study(server: &Server, study: &str, out_dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(out_dir).expect("mkdir");
    let out = run(dcmtk("getscu")
        .args(["-S", "-aec", AE, "127.0.0.1", &server.port(), "-od"])
        .arg(out_dir)
        .args([
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            &format!("StudyInstanceUID={study}"),
        ]));
    assert!(
        out.status.success(),
        "getscu: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    files_under(out_dir)
}

/// Every file below `dir` (none when it does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Pixel comparison by pydicom/numpy: (same shape, max |a-b|).
pub fn compare_pixels(a: &Path, b: &Path) -> (bool, f64) {
    let out = run(python()
        .arg(repo().join("tests/support/compare_pixels.py"))
        .arg(a)
        .arg(b));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("compare_pixels: {}", String::from_utf8_lossy(&out.stderr)));
    (
        v["same_shape"] == true,
        v["max_diff"].as_f64().unwrap_or(f64::INFINITY),
    )
}
