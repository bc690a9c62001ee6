//! C-ECHO with dcmtk and pynetdicom; AE title from the environment; called-AE check.

use crate::support::*;

#[test]
fn echo_answers_both_peers_under_the_configured_ae_title() {
    let (_tmp, data) = data_dir();
    let server = Server::start_with(
        &data,
        ServerOptions {
            env: &[("PACS_AE_TITLE", "ENVAE")],
            ..Default::default()
        },
    );
    let out = run(dcmtk("echoscu").args(["-aec", "ENVAE", "127.0.0.1", &server.port()]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let v = scu(&["echo", &server.port(), "--aec", "ENVAE"]);
    assert_eq!(v["status"], 0, "{v}");

    // The default title is not ours any more: A-ASSOCIATE-RJ, rejected-permanent,
    // service-user, called-AE-title-not-recognized (PS3.8 9.3.4).
    let v = scu(&["echo", &server.port(), "--aec", "PACS"]);
    assert_eq!(v["rejected"]["result"], 1, "{v}");
    assert_eq!(v["rejected"]["source"], 1, "{v}");
    assert_eq!(v["rejected"]["reason"], 7, "{v}");
    let out = run(dcmtk("echoscu").args(["-aec", "PACS", "127.0.0.1", &server.port()]));
    assert!(!out.status.success());

    let (code, body) = server.http("/healthz");
    assert_eq!(code, 200);
    assert!(body.contains("ok"));
    assert!(
        server.log().contains("association ended"),
        "one log line per association"
    );
}
