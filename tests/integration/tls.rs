//! TLS for DIMSE and HTTPS against the real server: server certificates, client
//! certificates checked against the configured CA, and accounts bound to a certificate.

use crate::security::{curl, get, pacs, test_pki, PASSWORD};
use crate::support::*;

#[test]
fn tls_for_dimse_and_https_with_client_certificates() {
    let (_tmp, data) = data_dir();
    let root = data.parent().expect("parent").to_path_buf();
    let certs = test_pki(&root);
    let c = |f: &str| certs.join(f).to_string_lossy().into_owned();
    let config = root.join("pacs.toml");
    std::fs::write(
        &config,
        format!(
            "restrict_to_nodes = true\n\
             [[nodes]]\nae_title = \"MOD1\"\nhost = \"127.0.0.1\"\nport = 104\n\
             [auth]\n\
             [tls]\ncert = {:?}\nkey = {:?}\ndicom_port = 0\ndicom_client_ca = {:?}\n\
             http_client_ca = {:?}\n",
            c("server.pem"),
            c("server.key"),
            c("ca.pem"),
            c("ca.pem")
        ),
    )
    .expect("config");
    let args = [
        "--config",
        config.to_str().expect("utf-8"),
        "--data",
        data.to_str().expect("utf-8"),
    ];
    let out = run(pacs()
        .args([
            "user",
            "add",
            "ai-service-1",
            "--role",
            "ai-service",
            "--no-password",
            "--client-certificate",
        ])
        .args(args));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(pacs()
        .args(["user", "add", "admin", "--role", "admin"])
        .args(args)
        .env("PACS_PASSWORD", PASSWORD));
    assert!(out.status.success());
    let server = Server::start_with_config(&data, &config);
    assert_ne!(server.dicom_tls_port, 0, "no DICOM TLS port in the log");
    let tls_port = server.dicom_tls_port.to_string();
    let node_tls = |tool: &str| {
        let mut cmd = dcmtk(tool);
        cmd.args([
            "+tls",
            &c("node1.key"),
            &c("node1.pem"),
            "+cf",
            &c("ca.pem"),
        ])
        .args(["-aet", "MOD1", "-aec", AE, "127.0.0.1", &tls_port]);
        cmd
    };
    // Mutual TLS: the node with a CA-signed certificate gets through, and can store.
    let out = run(&mut node_tls("echoscu"));
    assert!(
        out.status.success(),
        "echoscu +tls: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sample = samples().join("ct_16bit_signed_implicit.dcm");
    let out = run(node_tls("storescu").arg(&sample));
    assert!(
        out.status.success(),
        "storescu +tls: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (sop, _) = file_uids(&sample);
    // Without a client certificate, with one from another CA, or in plain DICOM: refused.
    let anonymous =
        run(dcmtk("echoscu").args(["+tla", "-aet", "MOD1", "-aec", AE, "127.0.0.1", &tls_port]));
    assert!(!anonymous.status.success(), "anonymous TLS was accepted");
    let rogue = run(dcmtk("echoscu")
        .args([
            "+tls",
            &c("rogue.key"),
            &c("rogue.pem"),
            "+cf",
            &c("ca.pem"),
        ])
        .args(["-aet", "MOD1", "-aec", AE, "127.0.0.1", &tls_port]));
    assert!(
        !rogue.status.success(),
        "untrusted client certificate was accepted"
    );
    let plain = run(dcmtk("echoscu").args(["-aet", "MOD1", "-aec", AE, "127.0.0.1", &tls_port]));
    assert!(
        !plain.status.success(),
        "plain DICOM on the TLS port was accepted"
    );
    // An unknown AE on the plain port is rejected before any data is read.
    let stranger =
        run(dcmtk("echoscu").args(["-aet", "STRANGER", "-aec", AE, "127.0.0.1", &server.port()]));
    assert!(!stranger.status.success());
    assert!(
        String::from_utf8_lossy(&stranger.stderr).contains("Rejected"),
        "{}",
        String::from_utf8_lossy(&stranger.stderr)
    );

    // HTTPS: a client certificate naming a service account authenticates as that account.
    let https = |path: &str, extra: &[&str]| {
        let url = format!("https://127.0.0.1:{}{path}", server.http_port);
        let mut all = vec!["--cacert".to_string(), c("ca.pem")];
        all.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        curl(&url, "GET", None, &refs)
    };
    let svc = ["--cert", &c("svc.pem"), "--key", &c("svc.key")].map(String::from);
    let svc: Vec<&str> = svc.iter().map(String::as_str).collect();
    let who = https("/api/whoami", &svc);
    assert_eq!(who.status, 200, "{}", who.text());
    assert_eq!(who.json()["user"], "ai-service-1");
    assert_eq!(who.json()["method"], "client-certificate");
    let meta = https(&format!("/dicom-web/instances?SOPInstanceUID={sop}"), &svc);
    assert_eq!(meta.status, 200, "{}", meta.text());
    assert_eq!(https("/api/whoami", &[]).status, 401);
    // Plain HTTP on the HTTPS port gets nowhere.
    let plain = get(&server, "/api/whoami", None);
    assert_eq!(plain.status, 0, "plain HTTP answered: {}", plain.headers);

    // The DIMSE side of the audit trail: the TLS store, the refused association.
    let login = curl(
        &format!("https://127.0.0.1:{}/api/login", server.http_port),
        "POST",
        None,
        &[
            "--cacert",
            &c("ca.pem"),
            "-H",
            "Content-Type: application/json",
            "--data",
            &serde_json::json!({"username": "admin", "password": PASSWORD}).to_string(),
        ],
    );
    assert_eq!(login.status, 200, "{}", login.text());
    let admin = login.json()["token"].as_str().expect("token").to_string();
    let url = format!(
        "https://127.0.0.1:{}/api/audit?interface=dimse&limit=1000",
        server.http_port
    );
    let records = curl(&url, "GET", Some(&admin), &["--cacert", &c("ca.pem")]).json();
    let records = records["records"].as_array().expect("records").clone();
    assert!(
        records.iter().any(|r| r["action"] == "dimse.c-store"
            && r["ae_title"] == "MOD1"
            && r["outcome"] == "success"
            && r["detail"]
                .as_str()
                .is_some_and(|d| d.contains("1 stored") && d.contains("MODALITY1"))),
        "no C-STORE audit record: {records:?}"
    );
    assert!(
        records.iter().any(|r| r["action"] == "dimse.associate"
            && r["user"] == "STRANGER"
            && r["outcome"] == "denied"),
        "no refused association record: {records:?}"
    );
}

/// dcmtk storescp over TLS requiring a client certificate from the test CA, on a free port.
fn tls_storescp(certs: &std::path::Path, dir: &std::path::Path) -> (std::process::Child, u16) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let c = |f: &str| certs.join(f).to_string_lossy().into_owned();
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let mut child = dcmtk("storescp")
            .args([
                "+tls",
                &c("server.key"),
                &c("server.pem"),
                "+cf",
                &c("ca.pem"),
            ])
            .args(["--require-peer-cert", "+xa", "-aet", "DEST", "-od"])
            .arg(dir)
            .arg(port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("storescp");
        for _ in 0..100 {
            if child.try_wait().ok().flatten().is_some() {
                break;
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return (child, port);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("storescp +tls did not start");
}

#[test]
fn c_move_sub_operations_go_over_tls_with_our_client_certificate() {
    let (tmp, data) = data_dir();
    let root = data.parent().expect("parent").to_path_buf();
    let certs = test_pki(&root);
    let c = |f: &str| certs.join(f).to_string_lossy().into_owned();
    let dest_dir = tmp.path().join("dest");
    let (mut dest, port) = tls_storescp(&certs, &dest_dir);
    let config = root.join("pacs.toml");
    std::fs::write(
        &config,
        format!(
            "[[nodes]]\nae_title = \"DEST\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             tls = {{ ca = {:?}, cert = {:?}, key = {:?} }}\n\
             [[nodes]]\nae_title = \"NOCERT\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             tls = {{ ca = {:?} }}\n",
            c("ca.pem"),
            c("node1.pem"),
            c("node1.key"),
            c("ca.pem"),
        ),
    )
    .expect("config");
    let args = ["--config", config.to_str().expect("utf-8")];
    let server = Server::start_with(
        &data,
        ServerOptions {
            extra_args: &args,
            ..Default::default()
        },
    );
    let sample = samples().join("mr_explicit.dcm");
    storescu(&server, std::slice::from_ref(&sample));
    let (sop, _) = file_uids(&sample);
    let (study, series) = server.parents_of(&sop);
    let movescu = |dest_ae: &str| {
        run(dcmtk("movescu").args([
            "-S",
            "-aec",
            AE,
            "-aem",
            dest_ae,
            "127.0.0.1",
            &server.port(),
            "-k",
            "QueryRetrieveLevel=IMAGE",
            "-k",
            &format!("StudyInstanceUID={study}"),
            "-k",
            &format!("SeriesInstanceUID={series}"),
            "-k",
            &format!("SOPInstanceUID={sop}"),
        ]))
    };
    // Without a client certificate the destination refuses the handshake: failed sub-operations.
    let refused = movescu("NOCERT");
    let log = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(
        files_under(&dest_dir).is_empty(),
        "stored without a client certificate: {log}"
    );
    let out = movescu("DEST");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = files_under(&dest_dir);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        dataset_bytes(&got[0]) == dataset_bytes(&sample),
        "other bytes over TLS"
    );
    let _ = dest.kill();
    let _ = dest.wait();
}
