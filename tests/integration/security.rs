//! Security against the real server: authentication (local accounts, API keys, OIDC JWTs,
//! client certificates), the role policy on every route, patient scoping by every route,
//! share links, UID checks, TLS for HTTP and DIMSE, and the audit trail that records all of
//! it (verified with `pacs audit verify` afterwards). TLS is in `tls.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::*;

pub(crate) const ISS: &str = "https://idp.example.org";
pub(crate) const AUD: &str = "pacs";
pub(crate) const PASSWORD: &str = "correct horse battery staple";

pub(crate) fn testdata() -> PathBuf {
    repo().join("auth/testdata")
}

pub(crate) fn pacs() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pacs"))
}

/// `pacs user add` with the password from the environment; returns stdout.
pub(crate) fn add_user(config: &Path, name: &str, role: &str, extra: &[&str]) -> String {
    let out = run(pacs()
        .args(["user", "add", name, "--role", role])
        .args(extra)
        .arg("--config")
        .arg(config)
        .env("PACS_PASSWORD", PASSWORD));
    assert!(
        out.status.success(),
        "user add {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two patients, PAT00000 and PAT00001, with one study of 4 instances (`size` square) each,
/// generated beside `data` and imported into it.
pub(crate) fn import_two_patients(data: &Path, size: u32) {
    let gen = data.parent().expect("parent").join("gen");
    let size = size.to_string();
    generate(
        &gen,
        8,
        &[
            "--per-series",
            "2",
            "--patients",
            "2",
            "--rows",
            &size,
            "--cols",
            &size,
        ],
    );
    let out = run(pacs()
        .args(["import", "--quiet", "--data"])
        .arg(data)
        .arg(&gen));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The test PKI (tests/support/make_certs.sh) in `root/certs`; that folder.
pub(crate) fn test_pki(root: &Path) -> PathBuf {
    let certs = root.join("certs");
    let out = run(Command::new("bash")
        .arg(repo().join("tests/support/make_certs.sh"))
        .arg(&certs));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    certs
}

pub(crate) fn api_key(config: &Path, name: &str) -> String {
    let out = run(pacs()
        .args(["user", "api-key", name, "--config"])
        .arg(config));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn token_tool(args: &[&str]) -> String {
    let out = run(python()
        .arg(repo().join("tests/support/security_tokens.py"))
        .args(args));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub(crate) fn jwt(key: &str, extra: &[&str]) -> String {
    let key = testdata().join(key);
    let key = key.to_string_lossy().into_owned();
    let mut args = vec!["jwt", key.as_str(), "--iss", ISS, "--aud", AUD];
    args.extend_from_slice(extra);
    token_tool(&args)
}

/// One HTTP exchange with curl: (status, headers, body).
pub(crate) struct Reply {
    pub status: u16,
    pub headers: String,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub(crate) fn curl(url: &str, method: &str, token: Option<&str>, extra: &[&str]) -> Reply {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-i", "--max-time", "20", "-X", method]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    cmd.args(extra).arg(url);
    let out = run(&mut cmd);
    let raw = out.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .unwrap_or(raw.len());
    let headers = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Reply {
        status,
        headers,
        body: raw[split..].to_vec(),
    }
}

pub(crate) fn get(server: &Server, path: &str, token: Option<&str>) -> Reply {
    let url = format!("http://127.0.0.1:{}{path}", server.http_port);
    curl(&url, "GET", token, &[])
}

pub(crate) fn login(server: &Server, user: &str, totp: Option<&str>) -> Reply {
    let mut body = serde_json::json!({"username": user, "password": PASSWORD});
    if let Some(code) = totp {
        body["totp"] = Value::String(code.into());
    }
    let url = format!("http://127.0.0.1:{}/api/login", server.http_port);
    curl(
        &url,
        "POST",
        None,
        &[
            "-H",
            "Content-Type: application/json",
            "--data",
            &body.to_string(),
        ],
    )
}

pub(crate) fn session(server: &Server, user: &str) -> String {
    let r = login(server, user, None);
    assert_eq!(r.status, 200, "login {user}: {}", r.text());
    r.json()["token"].as_str().expect("token").to_string()
}

/// Study UIDs of a QIDO answer.
pub(crate) fn studies_of(r: &Reply) -> Vec<String> {
    assert_eq!(r.status, 200, "QIDO: {}", r.text());
    let mut v: Vec<String> = r
        .json()
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|s| s["0020000D"]["Value"][0].as_str().map(str::to_owned))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// (study, series, instance) of each stored instance of a study, from the admin API.
struct StudyPaths {
    study: String,
    series: String,
    instance: String,
}

fn paths_of(server: &Server, admin: &str, study: &str) -> StudyPaths {
    let r = get(
        server,
        &format!("/dicom-web/studies/{study}/instances?includefield=0020000E"),
        Some(admin),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let first = &r.json()[0];
    StudyPaths {
        study: study.to_string(),
        series: first["0020000E"]["Value"][0]
            .as_str()
            .expect("series")
            .into(),
        instance: first["00080018"]["Value"][0].as_str().expect("sop").into(),
    }
}

/// Every route that shows a study's content, for one study.
fn study_routes(p: &StudyPaths) -> Vec<String> {
    let i = format!(
        "/dicom-web/studies/{}/series/{}/instances/{}",
        p.study, p.series, p.instance
    );
    vec![
        format!("/dicom-web/studies/{}", p.study),
        format!("/dicom-web/studies/{}/metadata", p.study),
        format!("/dicom-web/studies/{}/series", p.study),
        format!("/dicom-web/studies/{}/series/{}", p.study, p.series),
        format!(
            "/dicom-web/studies/{}/series/{}/metadata",
            p.study, p.series
        ),
        i.clone(),
        format!("{i}/metadata"),
        format!("{i}/frames/1"),
        format!("{i}/rendered"),
        format!("{i}/thumbnail"),
        format!("{i}/bulk/7FE00010"),
        format!("/dicom-web/studies/{}/rendered", p.study),
        format!("/dicom-web/studies/{}/thumbnail", p.study),
    ]
}

pub(crate) fn audit(server: &Server, admin: &str, query: &str) -> Vec<Value> {
    let r = get(
        server,
        &format!("/api/audit?limit=10000&{query}"),
        Some(admin),
    );
    assert_eq!(r.status, 200, "audit: {}", r.text());
    r.json()["records"].as_array().expect("records").clone()
}

#[test]
fn http_authentication_roles_patient_scope_and_audit() {
    let (_tmp, data) = data_dir();
    let root = data.parent().expect("parent").to_path_buf();
    // Two patients, one study each.
    import_two_patients(&data, 64);

    let config = root.join("pacs.toml");
    std::fs::write(
        &config,
        format!(
            "data = {data:?}\n[auth]\n[auth.oidc]\nissuer = \"{ISS}\"\naudience = \"{AUD}\"\n\
             jwks_file = {:?}\n",
            testdata().join("jwks.json")
        ),
    )
    .expect("config");
    add_user(&config, "admin", "admin", &[]);
    add_user(&config, "rad", "radiologist", &[]);
    add_user(&config, "bill", "billing", &[]);
    add_user(&config, "tech", "technologist", &[]);
    add_user(&config, "ehr", "ehr", &[]);
    add_user(&config, "pata", "patient", &["--patient-id", "PAT00000"]);
    let totp = add_user(&config, "mfa", "radiologist", &["--totp"]);
    assert!(totp.contains("otpauth://totp/"), "{totp}");
    add_user(&config, "svc", "ai-service", &["--no-password"]);
    let key = api_key(&config, "svc");
    assert!(key.starts_with("pacs_"), "{key}");

    let server = Server::start_with_config(&data, &config);
    let admin = session(&server, "admin");

    // The two studies and which patient each belongs to.
    let all = get(
        &server,
        "/dicom-web/studies?includefield=00100020",
        Some(&admin),
    );
    let list = all.json();
    let mut a_study = String::new();
    let mut b_study = String::new();
    for s in list.as_array().expect("array") {
        let uid = s["0020000D"]["Value"][0].as_str().expect("uid").to_string();
        match s["00100020"]["Value"][0].as_str() {
            Some("PAT00000") => a_study = uid,
            Some("PAT00001") => b_study = uid,
            other => panic!("unexpected patient {other:?}"),
        }
    }
    assert!(!a_study.is_empty() && !b_study.is_empty(), "{list}");
    let a = paths_of(&server, &admin, &a_study);
    let b = paths_of(&server, &admin, &b_study);

    // 1. No credentials: 401 with a Bearer challenge, on every kind of route.
    let mut guarded = study_routes(&a);
    guarded.extend(
        [
            "/dicom-web/studies",
            "/dicom-web/series",
            "/dicom-web/instances",
            "/fhir/ImagingStudy",
            "/api/worklist",
            "/api/changefeed",
            "/api/audit",
            "/api/statistics",
            "/api/whoami",
        ]
        .map(String::from),
    );
    for path in &guarded {
        let r = get(&server, path, None);
        assert_eq!(
            r.status,
            401,
            "GET {path} without credentials: {}",
            r.text()
        );
        assert!(
            r.headers
                .to_ascii_lowercase()
                .contains("www-authenticate: bearer"),
            "{path}: {}",
            r.headers
        );
    }
    let stow_url = format!("http://127.0.0.1:{}/dicom-web/studies", server.http_port);
    let r = curl(
        &stow_url,
        "POST",
        None,
        &[
            "-H",
            "Content-Type: multipart/related; type=\"application/dicom\"; boundary=x",
            "--data-binary",
            "--x--",
        ],
    );
    assert_eq!(r.status, 401, "STOW without credentials");
    let del_url = format!(
        "http://127.0.0.1:{}/dicom-web/studies/{}",
        server.http_port, a.study
    );
    assert_eq!(curl(&del_url, "DELETE", None, &[]).status, 401);
    // Garbage and the wrong scheme are refused too.
    assert_eq!(
        get(&server, "/dicom-web/studies", Some("pacs_s_nonsense")).status,
        401
    );
    assert_eq!(
        get(&server, "/dicom-web/studies", Some("pacs_nonsense")).status,
        401
    );
    let basic = curl(
        &format!("http://127.0.0.1:{}/dicom-web/studies", server.http_port),
        "GET",
        None,
        &["-u", "admin:x"],
    );
    assert_eq!(basic.status, 401);

    // 2. Logins: wrong password and missing TOTP refused.
    let url = format!("http://127.0.0.1:{}/api/login", server.http_port);
    let wrong = curl(
        &url,
        "POST",
        None,
        &[
            "-H",
            "Content-Type: application/json",
            "--data",
            r#"{"username":"rad","password":"nope"}"#,
        ],
    );
    assert_eq!(wrong.status, 401, "{}", wrong.text());
    let no_code = login(&server, "mfa", None);
    assert_eq!(no_code.status, 401, "{}", no_code.text());
    assert!(no_code.text().contains("TOTP"), "{}", no_code.text());

    // 3. Roles: 403 where the role may not act, 200 where it may.
    let rad = session(&server, "rad");
    let bill = session(&server, "bill");
    let tech = session(&server, "tech");
    let ehr = session(&server, "ehr");
    let i = format!(
        "/dicom-web/studies/{}/series/{}/instances/{}",
        a.study, a.series, a.instance
    );
    for (token, path, want) in [
        (&bill, format!("{i}/metadata"), 200),
        (&bill, "/dicom-web/studies".to_string(), 200),
        (&bill, i.clone(), 403),
        (&bill, format!("{i}/frames/1"), 403),
        (&bill, format!("{i}/rendered"), 403),
        (&bill, format!("{i}/thumbnail"), 403),
        (&bill, format!("{i}/bulk/7FE00010"), 403),
        (&ehr, "/fhir/ImagingStudy".to_string(), 200),
        (&ehr, "/api/changefeed".to_string(), 200),
        (&ehr, format!("{i}/rendered"), 403),
        (&rad, format!("{i}/rendered"), 200),
        (&rad, "/api/worklist".to_string(), 200),
        (&rad, "/api/audit".to_string(), 403),
        (&rad, "/api/events".to_string(), 403),
        (&tech, "/api/worklist".to_string(), 403),
        (&tech, "/api/audit".to_string(), 403),
        (&key, format!("{i}/metadata"), 200),
        (&key, "/api/audit".to_string(), 403),
    ] {
        let r = get(&server, &path, Some(token));
        assert_eq!(r.status, want, "GET {path}: {}", r.text());
    }
    let r = curl(&del_url, "DELETE", Some(&rad), &[]);
    assert_eq!(r.status, 403, "radiologist DELETE: {}", r.text());
    let who = get(&server, "/api/whoami", Some(&key)).json();
    assert_eq!(who["user"], "svc");
    assert_eq!(who["method"], "api-key");

    // 4. Patient A sees only A, by every route.
    let pata = session(&server, "pata");
    assert_eq!(
        studies_of(&get(&server, "/dicom-web/studies", Some(&pata))),
        vec![a.study.clone()]
    );
    assert!(studies_of(&get(
        &server,
        "/dicom-web/studies?PatientID=PAT00001",
        Some(&pata)
    ))
    .is_empty());
    assert!(studies_of(&get(
        &server,
        &format!("/dicom-web/studies?StudyInstanceUID={}", b.study),
        Some(&pata)
    ))
    .is_empty());
    for level in ["series", "instances"] {
        let r = get(
            &server,
            &format!("/dicom-web/{level}?includefield=0020000D"),
            Some(&pata),
        );
        assert_eq!(studies_of(&r), vec![a.study.clone()], "/{level}");
    }
    for path in study_routes(&b) {
        let r = get(&server, &path, Some(&pata));
        assert_eq!(r.status, 404, "patient A reading B at {path}: {}", r.text());
    }
    for path in study_routes(&a) {
        let r = get(&server, &path, Some(&pata));
        assert_eq!(r.status, 200, "patient A reading A at {path}: {}", r.text());
    }
    // B's series under A's study path: nothing either.
    let mixed = format!(
        "/dicom-web/studies/{}/series/{}/instances/{}",
        a.study, b.series, b.instance
    );
    let r = get(&server, &mixed, Some(&pata));
    assert_eq!(r.status, 404, "{}", r.text());
    let fhir = get(&server, "/fhir/ImagingStudy?patient=PAT00001", Some(&pata)).json();
    assert_eq!(fhir["total"], 0, "{fhir}");
    let fhir = get(&server, "/fhir/ImagingStudy", Some(&pata)).json();
    assert_eq!(fhir["total"], 1, "{fhir}");
    let r = curl(
        &stow_url,
        "POST",
        Some(&pata),
        &[
            "-H",
            "Content-Type: multipart/related; type=\"application/dicom\"; boundary=x",
            "--data-binary",
            "--x--",
        ],
    );
    assert_eq!(r.status, 403, "patient STOW");

    // 5. OIDC tokens: valid ones act with their role; expired, forged, alg none refused.
    let good = jwt("rsa.pem", &["--role", "radiologist"]);
    assert_eq!(get(&server, "/api/worklist", Some(&good)).status, 200);
    let who = get(&server, "/api/whoami", Some(&good)).json();
    assert_eq!(who["method"], "jwt");
    let patient_jwt = jwt(
        "rsa.pem",
        &[
            "--role",
            "patient",
            "--patient-id",
            "PAT00001",
            "--sub",
            "bob",
        ],
    );
    assert_eq!(
        studies_of(&get(&server, "/dicom-web/studies", Some(&patient_jwt))),
        vec![b.study.clone()]
    );
    for (what, token) in [
        (
            "expired",
            jwt("rsa.pem", &["--role", "admin", "--exp-in", "-3600"]),
        ),
        ("forged", jwt("rsa-other.pem", &["--role", "admin"])),
        (
            "alg none",
            jwt("rsa.pem", &["--role", "admin", "--alg", "none"]),
        ),
        ("no role", jwt("rsa.pem", &[])),
    ] {
        let r = get(&server, "/dicom-web/studies", Some(&token));
        assert_eq!(r.status, 401, "{what} token: {}", r.text());
    }

    // 6. Share links: a valid one shows its study; expired or altered ones are refused.
    let secret = data.join("share.key");
    let secret = secret.to_string_lossy().into_owned();
    let later = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 3600)
        .to_string();
    let valid = token_tool(&["share", &secret, &a.study, &later]);
    let r = get(&server, &format!("/api/share/{valid}"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["study_instance_uid"], a.study.as_str());
    let expired = token_tool(&["share", &secret, &a.study, "1000"]);
    assert_eq!(
        get(&server, &format!("/api/share/{expired}"), None).status,
        403
    );
    let altered = token_tool(&["share", &secret, &b.study, &later]).replace('A', "B");
    assert_eq!(
        get(&server, &format!("/api/share/{altered}"), None).status,
        403
    );

    // 7. UIDs that are not UIDs never reach the index or the file system.
    for bad in ["..%2F..%2Fetc%2Fpasswd", "1.2.3%00", "1.2;rm", "%2e%2e"] {
        let r = get(
            &server,
            &format!("/dicom-web/studies/{bad}/metadata"),
            Some(&admin),
        );
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }

    // 8. The audit trail has all of it.
    let denied = audit(&server, &admin, "outcome=denied");
    let has = |records: &[Value], f: &dyn Fn(&Value) -> bool| records.iter().any(f);
    assert!(
        has(&denied, &|r| r["user"] == "anonymous"
            && r["action"] == "wado.metadata"
            && r["detail"]
                .as_str()
                .is_some_and(|d| d.contains("authentication required"))),
        "no 401 record"
    );
    assert!(
        has(&denied, &|r| r["user"] == "bill"
            && r["role"] == "billing"
            && r["action"] == "wado.frames"),
        "no 403 record for billing"
    );
    assert!(
        has(&denied, &|r| r["user"] == "pata"
            && r["study_uid"] == b.study.as_str()
            && r["patient_id"] == "PAT00001"),
        "no scope refusal record for patient A reading B"
    );
    assert!(
        has(&denied, &|r| r["action"] == "auth.login"
            && r["user"] == "rad"),
        "no failed login record"
    );
    assert!(
        has(&denied, &|r| r["action"] == "share.view"),
        "no refused share link record"
    );
    let ok = audit(&server, &admin, "user=pata&outcome=success");
    assert!(
        has(&ok, &|r| r["action"] == "wado.retrieve"
            && r["study_uid"] == a.study.as_str()
            && r["patient_id"] == "PAT00000"
            && r["source"]
                .as_str()
                .is_some_and(|s| s.starts_with("127.0.0.1:"))),
        "no record of patient A's own retrieve"
    );
    let cli = audit(&server, &admin, "interface=cli");
    assert!(
        has(&cli, &|r| r["action"] == "cli.import"
            && r["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("8 stored"))),
        "no record of the import: {cli:?}"
    );
    let jsonl = get(&server, "/api/audit?format=jsonl&limit=5", Some(&admin)).text();
    assert_eq!(jsonl.lines().count(), 5, "{jsonl}");
    let r = get(
        &server,
        "/api/audit?format=syslog&outcome=denied&limit=3",
        Some(&admin),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let syslog = r.text();
    // More than three refusals were recorded above: the page is full.
    assert_eq!(syslog.lines().count(), 3, "{syslog}");
    for line in syslog.lines() {
        assert!(
            line.starts_with('<') && line.contains("IHE+RFC-3881"),
            "{line}"
        );
        assert!(line.contains("<AuditMessage"), "{line}");
    }
    let verified = get(&server, "/api/audit/verify", Some(&admin)).json();
    assert_eq!(verified["ok"], true, "{verified}");

    // 9. After the run: the chain verifies offline, and every blob matches its checksum.
    let mut server = server;
    server.terminate();
    let out = run(pacs().args(["audit", "verify", "--config"]).arg(&config));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && text.contains("chain intact"),
        "{text}"
    );
    let out = run(pacs().args(["verify", "--config"]).arg(&config));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = run(pacs()
        .args(["audit", "export", "--format", "syslog", "--config"])
        .arg(&config));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).lines().count() > 50);
}
