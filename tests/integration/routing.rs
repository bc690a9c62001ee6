//! `[[routes]]` against real peers: a CT study from one modality goes to dcmtk storescp by
//! C-STORE (as stored, and decompressed where the route names a syntax), an MR series goes
//! de-identified to a second archive by STOW-RS, studies that do not match are skipped, a
//! route to a node that is down ends as a dead letter, and a de-identified route delivers to
//! Orthanc (Debian's), whose copy re-identifies through the pseudonym table.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::corrections::{fetch, studies};
use crate::security::curl;
use crate::support::*;

pub(crate) use pacs_storage::pg::testing::free_port;

pub(crate) struct Peer(Child);

impl From<Child> for Peer {
    fn from(child: Child) -> Self {
        Peer(child)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn storescp(dir: &Path, port: u16) -> Peer {
    storescp_as(dir, port, "DEST")
}

fn storescp_as(dir: &Path, port: u16, ae: &str) -> Peer {
    std::fs::create_dir_all(dir).expect("mkdir");
    let child = dcmtk("storescp")
        .args(["+xa", "-aet", ae, "-od"])
        .arg(dir)
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("storescp");
    wait_for_port(port, "storescp");
    Peer(child)
}

/// Poll until `check` holds (60 s at most).
pub(crate) fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "not within 60 s: {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

pub(crate) fn deliveries(server: &Server, worker: &str) -> Vec<Value> {
    let r = fetch(server, &format!("/api/events?worker={worker}&limit=100"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
        .as_array()
        .cloned()
        .expect("an array of deliveries")
}

pub(crate) fn states(server: &Server, worker: &str) -> Vec<String> {
    deliveries(server, worker)
        .iter()
        .map(|d| d["state"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// SOP Instance UID and transfer syntax of each received file.
fn received(dir: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = files_under(dir)
        .iter()
        .map(|f| {
            let (sop, ts) = file_uids(f);
            (sop, ts)
        })
        .collect();
    out.sort();
    out
}

fn send_from(server: &Server, calling_ae: &str, files: &[PathBuf]) {
    let out = run(dcmtk("storescu")
        .args(["-aet", calling_ae, "-aec", AE, "127.0.0.1", &server.port()])
        .args(files));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn routes_forward_what_matches_by_c_store_and_stow_and_dead_letter_the_rest() {
    let (tmp, data) = data_dir();
    let (dest_port, raw_port, down_port) = (free_port(), free_port(), free_port());
    let _dest = storescp(&tmp.path().join("dest"), dest_port);
    let (target_tmp, target_data) = data_dir();
    let target = Server::start(&target_data);
    let config = tmp.path().join("pacs.toml");
    std::fs::write(
        &config,
        format!(
            r#"stable_after_secs = 0.5

[[nodes]]
ae_title = "DEST"
host = "127.0.0.1"
port = {dest_port}

[[nodes]]
ae_title = "RAW"
host = "127.0.0.1"
port = {raw_port}

[[nodes]]
ae_title = "DOWN"
host = "127.0.0.1"
port = {down_port}

[[routes]]
name = "ct-from-modality"
to = "DEST"
modality = ["ct"]
calling_ae = ["MODALITY"]

[[routes]]
name = "mr-research"
on = "series-stable"
stow = "http://127.0.0.1:{target_port}/dicom-web"
modality = ["MR"]
profile = "basic"
project = "research"

[[routes]]
name = "flair-uncompressed"
to = "RAW"
tag = {{ SeriesDescription = "*flair*" }}
transfer_syntax = "1.2.840.10008.1.2.1"

[[routes]]
name = "down"
to = "DOWN"
modality = ["CT"]
max_attempts = 2
backoff_ms = 100
"#,
            target_port = target.http_port
        ),
    )
    .expect("config");
    let server = Server::start_with_config(&data, &config);
    // Stored before the RAW destination listens: its route retries until it is up.
    let raw_dir = tmp.path().join("raw");

    // A CT study from MODALITY, the same kind of study from OTHER, an MR series (RLE).
    let ct = small_ct(&tmp.path().join("gen"), 3, "routed");
    let other = small_ct(&tmp.path().join("other"), 2, "other");
    send_from(&server, "MODALITY", &ct);
    send_from(&server, "OTHER", &other);
    let mr = samples().join("mr_rle.dcm");
    storescu(&server, std::slice::from_ref(&mr));
    let _raw = storescp(&raw_dir, raw_port);

    // C-STORE as stored, byte for byte the same data set.
    let mut expected: Vec<(String, String)> = ct.iter().map(|f| file_uids(f)).collect();
    expected.sort();
    eventually("the CT study at DEST", || {
        received(&tmp.path().join("dest")) == expected
    });
    for f in files_under(&tmp.path().join("dest")) {
        let (sop, _) = file_uids(&f);
        let original = ct
            .iter()
            .find(|c| file_uids(c).0 == sop)
            .expect("sent file");
        assert_eq!(dataset_bytes(&f), dataset_bytes(original), "{sop}");
    }
    // The other modality's study was looked at and skipped.
    eventually("skips recorded", || {
        let s = states(&server, "route-ct-from-modality");
        s.iter().filter(|s| *s == "skipped").count() >= 2 && s.contains(&"delivered".into())
    });

    // The MR series: de-identified in the second archive, found again through the pseudonyms.
    let (mr_sop, _) = file_uids(&mr);
    eventually("the MR series in the second archive", || {
        target.statistics()["instances"] == 1
    });
    let copy = studies(&target, "");
    let meta = fetch(&target, &format!("/dicom-web/studies/{}/metadata", copy[0])).json();
    assert_eq!(meta[0]["00120062"]["Value"][0], "YES", "{meta}");
    let new_sop = meta[0]["00080018"]["Value"][0]
        .as_str()
        .expect("sop")
        .to_string();
    assert_ne!(new_sop, mr_sop);
    let back = fetch(
        &server,
        &format!("/api/pseudonyms?project=research&value={new_sop}"),
    )
    .json();
    assert_eq!(back["entries"][0]["original"], mr_sop.as_str(), "{back}");

    // RLE decompressed for the node that wanted explicit VR little endian.
    eventually("the MR at RAW", || !received(&raw_dir).is_empty());
    assert_eq!(
        received(&raw_dir),
        [(mr_sop.clone(), "1.2.840.10008.1.2.1".to_string())]
    );

    // The route to a node that is down: two attempts, then a dead letter naming why.
    eventually("a dead letter", || {
        deliveries(&server, "route-down")
            .iter()
            .any(|d| d["state"] == "dead")
    });
    let dead = deliveries(&server, "route-down");
    let dead = dead.iter().find(|d| d["state"] == "dead").expect("dead");
    assert_eq!(dead["attempts"], 2, "{dead}");
    assert!(
        dead["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot connect"),
        "{dead}"
    );
    // Nothing lost: the node comes back, the dead letter is retried and delivered.
    let down_dir = tmp.path().join("down");
    let _down = storescp_as(&down_dir, down_port, "DOWN");
    let seq = dead["seq"].as_u64().expect("seq");
    let r = curl(
        &format!(
            "http://127.0.0.1:{}/api/events/route-down/{seq}/retry",
            server.http_port
        ),
        "POST",
        None,
        &[],
    );
    assert!(r.status < 300, "{}", r.text());
    eventually("the retried delivery", || {
        deliveries(&server, "route-down")
            .iter()
            .any(|d| d["seq"] == seq && d["state"] == "delivered")
    });
    let study = dead["study_instance_uid"].as_str().expect("study");
    let stored = fetch(&server, &format!("/dicom-web/studies/{study}/instances")).json();
    let mut expected: Vec<String> = stored
        .as_array()
        .expect("instances")
        .iter()
        .map(|i| i["00080018"]["Value"][0].as_str().expect("uid").to_string())
        .collect();
    expected.sort();
    let got: Vec<String> = received(&down_dir)
        .into_iter()
        .map(|(sop, _)| sop)
        .collect();
    assert_eq!(got, expected, "the dead letter's study, whole");
    drop(target_tmp);
}

pub(crate) struct Orthanc {
    _peer: Peer,
    pub http: u16,
    pub dicom: u16,
}

/// Debian's Orthanc on loopback with its own storage in `dir`, knowing `modalities`
/// (its DicomModalities: name -> [AE, host, port]).
pub(crate) fn orthanc(dir: &Path, modalities: Value) -> Orthanc {
    orthanc_on(dir, modalities, free_port())
}

/// As [`orthanc`], its DICOM port given.
pub(crate) fn orthanc_on(dir: &Path, modalities: Value, dicom: u16) -> Orthanc {
    let http = free_port();
    let storage = dir.join("orthanc-storage");
    std::fs::create_dir_all(&storage).expect("mkdir");
    let config = dir.join("orthanc.json");
    let json = serde_json::json!({
        "Name": "pacs-routing-test",
        "StorageDirectory": storage,
        "IndexDirectory": storage,
        "HttpPort": http,
        "DicomPort": dicom,
        "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": false,
        "AuthenticationEnabled": false,
        "DicomCheckCalledAet": false,
        "DicomModalities": modalities,
        "Plugins": [],
    });
    std::fs::write(&config, json.to_string()).expect("orthanc.json");
    let child = std::process::Command::new("/usr/sbin/Orthanc")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("Orthanc (scripts/setup test installs it)");
    let peer = Peer(child);
    wait_for_port(http, "Orthanc HTTP");
    wait_for_port(dicom, "Orthanc DICOM");
    Orthanc {
        _peer: peer,
        http,
        dicom,
    }
}

pub(crate) fn orthanc_get(o: &Orthanc, path: &str) -> Value {
    let r = curl(
        &format!("http://127.0.0.1:{}{path}", o.http),
        "GET",
        None,
        &[],
    );
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.json()
}

#[test]
fn a_de_identified_route_delivers_to_orthanc() {
    let (tmp, data) = data_dir();
    let o = orthanc(tmp.path(), serde_json::json!({}));
    let dicom_port = o.dicom;
    let config = tmp.path().join("pacs.toml");
    std::fs::write(
        &config,
        format!(
            "stable_after_secs = 0.5\n\n[[nodes]]\nae_title = \"ORTHANC\"\nhost = \"127.0.0.1\"\nport = {dicom_port}\n\n\
             [[routes]]\nname = \"teaching\"\nto = \"ORTHANC\"\nprofile = \"basic\"\nproject = \"teaching\"\n"
        ),
    )
    .expect("config");
    let server = Server::start_with_config(&data, &config);
    let files = small_ct(&tmp.path().join("gen"), 4, "orthanc");
    storescu(&server, &files);

    eventually("four instances in Orthanc", || {
        orthanc_get(&o, "/instances").as_array().map(Vec::len) == Some(4)
    });
    let originals: Vec<String> = files.iter().map(|f| file_uids(f).0).collect();
    for id in orthanc_get(&o, "/instances").as_array().expect("ids") {
        let tags = orthanc_get(
            &o,
            &format!("/instances/{}/simplified-tags", id.as_str().expect("id")),
        );
        assert_eq!(tags["PatientIdentityRemoved"], "YES", "{tags}");
        assert_ne!(tags["PatientName"], "LOAD^PATIENT000", "{tags}");
        let sop = tags["SOPInstanceUID"].as_str().expect("sop");
        assert!(!originals.iter().any(|o| o == sop), "UID kept: {sop}");
        let back = fetch(
            &server,
            &format!("/api/pseudonyms?project=teaching&value={sop}"),
        )
        .json();
        let original = back["entries"][0]["original"].as_str().unwrap_or_default();
        assert!(originals.iter().any(|o| o == original), "{back}");
    }
    assert_eq!(states(&server, "route-teaching"), ["delivered"]);
}
