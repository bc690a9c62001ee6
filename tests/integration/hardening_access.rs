//! What a low-privilege insider or a certificate holder could do before the hardening issue:
//! erase a login lock-out by spraying names, become another account through a CN hidden in a
//! certificate, skip a password and TOTP with a certificate, see another issuer's patient,
//! ask for one frame thousands of times, and be served a blob changed on disk.

use std::path::Path;
use std::process::Command;

use crate::hardening::hostile;
use crate::security::{add_user, curl, get, pacs, session, studies_of, test_pki, PASSWORD};
use crate::support::*;

/// A config with `[auth]` (and `extra` after it) for the server on `data`: `pacs user`
/// reads the data folder, and so the accounts file, from it.
fn auth_config(data: &Path, extra: &str) -> std::path::PathBuf {
    let config = data.parent().expect("parent").join("pacs.toml");
    std::fs::write(&config, format!("data = {data:?}\n[auth]\n{extra}")).expect("config");
    config
}

fn start(data: &Path, config: &Path) -> Server {
    Server::start_with(
        data,
        ServerOptions {
            extra_args: &["--config", config.to_str().expect("utf-8")],
            ..Default::default()
        },
    )
}

#[test]
fn a_login_lockout_survives_a_spray_and_addresses_are_locked_too() {
    let (_tmp, data) = data_dir();
    let config = auth_config(&data, "");
    add_user(&config, "alice", "radiologist", &[]);
    add_user(&config, "bob", "radiologist", &[]);
    let server = start(&data, &config);
    let v = hostile(&[
        "spray",
        &server.http_port.to_string(),
        "alice",
        PASSWORD,
        "bob",
        PASSWORD,
        "10050",
    ]);
    assert_eq!(
        v["wrong"],
        serde_json::json!([401, 401, 401, 401, 401]),
        "{v}"
    );
    assert_eq!(v["locked_right_password"], 429, "{v}");
    assert_eq!(v["spray"]["401"], 10050, "every sprayed name refused: {v}");
    // Before the fix the table was cleared at 10,000 names and this logged in.
    assert_eq!(v["after_spray_right_password"], 429, "{v}");
    let guesses = v["guesses"].as_array().expect("guesses");
    assert!(guesses[..30].iter().all(|c| c == 401), "{v}");
    assert_eq!(guesses[30], 429, "the 31st guess from one address: {v}");
    assert_eq!(v["guesser_right_password"], 429, "{v}");
    assert_eq!(v["elsewhere_right_password"], 200, "{v}");
}

#[test]
fn client_certificates_name_their_subject_and_only_marked_accounts() {
    let (_tmp, data) = data_dir();
    let root = data.parent().expect("parent").to_path_buf();
    let certs = test_pki(&root);
    let c = |f: &str| certs.join(f).to_string_lossy().into_owned();
    let config = auth_config(
        &data,
        &format!(
            "[tls]\ncert = {:?}\nkey = {:?}\ndicom = false\nhttp_client_ca = {:?}\n",
            c("server.pem"),
            c("server.key"),
            c("ca.pem")
        ),
    );
    let service = ["--no-password", "--client-certificate"];
    add_user(&config, "svc-tech", "technologist", &service);
    add_user(&config, "svc-admin", "admin", &service);
    add_user(&config, "alice", "admin", &["--totp"]);
    // A certificate would skip alice's second factor: she cannot be marked for it.
    let refused = run(pacs()
        .args(["user", "certificate", "alice", "--config"])
        .arg(&config));
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("TOTP"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let server = start(&data, &config);
    let whoami = |cert: &str| {
        let url = format!("https://127.0.0.1:{}/api/whoami", server.http_port);
        let (pem, key) = (c(&format!("{cert}.pem")), c(&format!("{cert}.key")));
        curl(
            &url,
            "GET",
            None,
            &["--cacert", &c("ca.pem"), "--cert", &pem, "--key", &key],
        )
    };
    // CN=svc-tech with CN=svc-admin in a subjectAltName directoryName: svc-tech, technologist.
    let tech = whoami("tech");
    assert_eq!(tech.status, 200, "{}", tech.text());
    assert_eq!(tech.json()["user"], "svc-tech", "{}", tech.text());
    assert_eq!(tech.json()["role"], "technologist");
    // CN=alice names an admin with password + TOTP: no access with the certificate alone.
    let alice = whoami("alice");
    assert_eq!(alice.status, 401, "{}", alice.text());
    assert!(
        alice.text().contains("certificate login"),
        "{}",
        alice.text()
    );
    // A service account stops answering to its certificate once unmarked.
    let out = run(pacs()
        .args(["user", "certificate", "svc-tech", "--off", "--config"])
        .arg(&config));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while whoami("tech").status != 401 {
        assert!(
            std::time::Instant::now() < deadline,
            "unmarked account still answers"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// Two studies of Patient ID P1 under two issuers, imported.
fn two_issuers(root: &Path, data: &Path) -> (String, String) {
    let mut studies = Vec::new();
    for issuer in ["HOSP-A", "HOSP-B"] {
        let dir = root.join(issuer);
        generate(
            &dir,
            1,
            &[
                "--patients",
                "1",
                "--rows",
                "32",
                "--cols",
                "32",
                "--seed",
                issuer,
            ],
        );
        let files = files_under(&dir);
        let out = run(dcmtk("dcmodify")
            .args(["-nb", "-i", "(0010,0020)=P1", "-i"])
            .arg(format!("(0010,0021)={issuer}"))
            .args(&files));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dump = run(dcmtk("dcmdump")
            .args(["-s", "+P", "0020,000d"])
            .args(&files));
        let text = String::from_utf8_lossy(&dump.stdout).into_owned();
        let uid = text
            .split('[')
            .nth(1)
            .and_then(|r| r.split(']').next())
            .expect("study uid")
            .to_string();
        studies.push(uid);
    }
    let out = run(pacs()
        .args(["import", "--quiet", "--data"])
        .arg(data)
        .arg(root.join("HOSP-A"))
        .arg(root.join("HOSP-B")));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (studies.remove(0), studies.remove(0))
}

#[test]
fn patient_scope_tells_issuers_apart_and_frames_are_not_repeated() {
    let (_tmp, data) = data_dir();
    let root = data.parent().expect("parent").to_path_buf();
    let (a, b) = two_issuers(&root, &data);
    let config = auth_config(&data, "");
    add_user(&config, "admin", "admin", &[]);
    add_user(&config, "pat", "patient", &["--patient-id", "P1^^^HOSP-A"]);
    let server = start(&data, &config);
    let admin = session(&server, "admin");
    let pat = session(&server, "pat");
    let mut both = vec![a.clone(), b.clone()];
    both.sort();
    assert_eq!(
        studies_of(&get(&server, "/dicom-web/studies", Some(&admin))),
        both
    );
    // QIDO (with and without the patient's own keys, paged), WADO, FHIR: issuer A only.
    assert_eq!(
        studies_of(&get(&server, "/dicom-web/studies", Some(&pat))),
        std::slice::from_ref(&a)
    );
    assert_eq!(
        studies_of(&get(
            &server,
            "/dicom-web/studies?PatientID=P1&limit=1",
            Some(&pat)
        )),
        std::slice::from_ref(&a)
    );
    let series = get(
        &server,
        "/dicom-web/series?includefield=0020000D",
        Some(&pat),
    );
    assert_eq!(studies_of(&series), std::slice::from_ref(&a));
    assert_eq!(
        get(
            &server,
            &format!("/dicom-web/studies/{a}/metadata"),
            Some(&pat)
        )
        .status,
        200
    );
    for route in ["metadata", "series", "rendered"] {
        let r = get(
            &server,
            &format!("/dicom-web/studies/{b}/{route}"),
            Some(&pat),
        );
        assert_eq!(
            r.status,
            404,
            "{route} of the other issuer's study: {}",
            r.text()
        );
    }
    let fhir = get(&server, "/fhir/ImagingStudy", Some(&pat));
    assert_eq!(fhir.status, 200, "{}", fhir.text());
    assert!(
        fhir.text().contains(&a) && !fhir.text().contains(&b),
        "{}",
        fhir.text()
    );

    // One frame twenty thousand times was a 172 MB answer; frame lists have no duplicates.
    let inst = get(
        &server,
        &format!("/dicom-web/studies/{a}/instances?includefield=0020000E"),
        Some(&admin),
    )
    .json();
    let sop = inst[0]["00080018"]["Value"][0]
        .as_str()
        .expect("sop")
        .to_string();
    let series_uid = inst[0]["0020000E"]["Value"][0]
        .as_str()
        .expect("series")
        .to_string();
    let frames = vec!["1"; 20_000].join(",");
    let r = get(
        &server,
        &format!("/dicom-web/studies/{a}/series/{series_uid}/instances/{sop}/frames/{frames}"),
        Some(&admin),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("more than once"), "{}", r.text());
}

#[test]
fn a_blob_changed_on_disk_is_not_served_and_is_audited() {
    let (_tmp, data) = data_dir();
    let server = Server::start(&data);
    let sample = samples().join("ct_16bit_signed_implicit.dcm");
    storescu(&server, std::slice::from_ref(&sample));
    let (sop, _) = file_uids(&sample);
    let (study, series) = server.parents_of(&sop);
    // One pixel byte changed in place, as a failing disk or a tamperer would.
    let blob = server.blob_path(&sop);
    let mut bytes = std::fs::read(&blob).expect("blob");
    let last = bytes.len() - 10;
    bytes[last] ^= 0x5A;
    std::fs::write(&blob, &bytes).expect("tamper");

    let base = format!("http://127.0.0.1:{}/dicom-web", server.http_port);
    let instance = format!("{base}/studies/{study}/series/{series}/instances/{sop}");
    // WADO-RS: refused with 500 naming the integrity failure when it is found before the
    // first part goes out, else the body is cut before its closing boundary: either way no
    // client takes it as whole.
    let out = run(Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(&instance));
    let code = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        !out.status.success() || code == "500",
        "a changed blob was served whole ({code})"
    );
    for path in ["rendered", "frames/1"] {
        let (code, body) = server.http(&format!(
            "/dicom-web/studies/{study}/series/{series}/instances/{sop}/{path}"
        ));
        assert_eq!(code, 500, "{path}: {body}");
        assert!(body.contains("integrity"), "{path}: {body}");
    }
    // C-GET: the sub-operation fails and nothing arrives.
    let got = scu(&[
        "get",
        &server.port(),
        "study",
        data.parent()
            .expect("parent")
            .join("got")
            .to_str()
            .expect("utf-8"),
        &serde_json::json!({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study}).to_string(),
    ]);
    assert_eq!(got["completed"], 0, "{got}");
    assert_eq!(got["failed"], 1, "{got}");
    let audit = server.json("/api/audit?action=integrity.failure&limit=100");
    let records = audit["records"].as_array().expect("records");
    assert!(
        records.len() >= 3
            && records
                .iter()
                .all(|r| r["instance_uid"] == sop.as_str() && r["outcome"] == "failure"),
        "integrity failures audited: {audit}"
    );
    let log = server.log();
    assert!(log.contains("failed its integrity check"), "{log}");
    assert!(
        log.contains("DICOM is open"),
        "the first-run log says DICOM is open: {log}"
    );
}
