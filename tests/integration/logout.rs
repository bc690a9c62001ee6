//! `POST /api/logout` ends the session it is given, and only that one.

use std::path::Path;

use crate::security::{add_user, curl, get, session};
use crate::support::*;

fn logout(server: &Server, token: Option<&str>) -> u16 {
    let url = format!("http://127.0.0.1:{}/api/logout", server.http_port);
    curl(&url, "POST", token, &[]).status
}

fn auth_server(data: &Path) -> Server {
    let config = data.parent().expect("parent").join("pacs.toml");
    std::fs::write(&config, format!("data = {data:?}\n[auth]\n")).expect("config");
    add_user(&config, "alice", "radiologist", &[]);
    add_user(&config, "root", "admin", &[]);
    Server::start_with(
        data,
        ServerOptions {
            extra_args: &["--config", config.to_str().expect("utf-8")],
            ..Default::default()
        },
    )
}

#[test]
fn logout_ends_that_session_and_no_other() {
    let (_tmp, data) = data_dir();
    let server = auth_server(&data);
    let first = session(&server, "alice");
    let second = session(&server, "alice");
    assert_ne!(first, second);
    for token in [&first, &second] {
        let r = get(&server, "/api/whoami", Some(token));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["user"], "alice");
        assert_eq!(get(&server, "/dicom-web/studies", Some(token)).status, 200);
    }

    assert_eq!(logout(&server, Some(&first)), 204);
    // The ended session is refused everywhere; the other one of the same user still works.
    let r = get(&server, "/api/whoami", Some(&first));
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(get(&server, "/dicom-web/studies", Some(&first)).status, 401);
    assert_eq!(get(&server, "/api/whoami", Some(&second)).status, 200);
    // Ending it again, or ending nothing, is a bad request.
    assert_eq!(logout(&server, Some(&first)), 400);
    assert_eq!(logout(&server, None), 400);
    assert_eq!(logout(&server, Some("pacs_s_not-a-session")), 400);

    // The audit trail has the logout.
    let admin = session(&server, "root");
    let r = get(&server, "/api/audit?action=auth.logout", Some(&admin));
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    let records = body["records"].as_array().expect("records");
    assert!(
        records
            .iter()
            .any(|r| r["outcome"] == "success" && r["user"] == "alice"),
        "{records:?}"
    );
}
