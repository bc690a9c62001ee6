//! How deliveries travel: one study's hung request holds only that study, a target's own
//! time limit, shutdown cancelling a hung send (resent after restart), redirects refused, and
//! absolute URLs that name an address the server really serves.

use std::process::Command;
use std::time::Duration;

use super::*;

fn ehr_config(data: &Path, port: u16, extra: &str) -> PathBuf {
    write_config(
        data,
        &format!(
            "stable_after_secs = 0.5\n[workers.ehr]\nurl = \"http://127.0.0.1:{port}/fhir\"\nbackoff_ms = 100\nmax_backoff_ms = 400\n{extra}"
        ),
    )
}

/// The idempotency key of the worker's delivery for this study's n-th StudyStable (0-based).
fn key_of(server: &Server, worker: &str, study: &str, n: usize) -> String {
    let events = server.json(&format!("/api/events?worker={worker}"));
    let of_study: Vec<&Value> = events
        .as_array()
        .expect("array")
        .iter()
        .filter(|d| d["study_instance_uid"] == study)
        .collect();
    of_study[n]["idempotency_key"]
        .as_str()
        .expect("key")
        .to_string()
}

#[test]
fn a_hung_delivery_holds_its_own_study_only_and_its_later_events_wait_in_order() {
    let receiver = Receiver::start(0);
    receiver.hang_next(1);
    let (_tmp, data) = data_dir();
    // A time limit far beyond the test's patience: only concurrency can get study B through.
    let server = start(
        &data,
        &ehr_config(&data, receiver.port, "timeout_secs = 120\n"),
    );
    let ct = ct_study();
    storescu(&server, &ct[..3]);
    let a = server.parents_of(&file_uids(&ct[0]).0).0;
    let hung = receiver.wait("A's ImagingStudy (held)", |r| !r.is_empty(), &server);
    assert_eq!(hung[0].status, 0, "held unanswered");

    // Study B becomes stable while A's request hangs: it is delivered all the same.
    let mr = samples().join("mr_explicit.dcm");
    storescu(&server, std::slice::from_ref(&mr));
    let b = server.parents_of(&file_uids(&mr).0).0;
    let got = receiver.wait(
        "B's ImagingStudy beside A's hung one",
        |r| r.iter().any(|x| x.status == 201),
        &server,
    );
    let b_sent = got.iter().find(|x| x.status == 201).expect("B");
    assert!(b_sent.uri.contains(&b), "{}", b_sent.uri);
    assert_eq!(got[0].status, 0, "A still held");

    // A grows: its second StudyStable waits behind the first, still in flight.
    storescu(&server, &ct[3..]);
    wait_json(
        &server,
        "/api/events?worker=ehr",
        "A's second delivery",
        |v| {
            v.as_array()
                .is_some_and(|a_| a_.iter().filter(|d| d["study_instance_uid"] == a).count() == 2)
        },
    );
    let (a1, a2) = (key_of(&server, "ehr", &a, 0), key_of(&server, "ehr", &a, 1));
    assert_eq!(hung[0].key, a1);
    // A negative check needs some time to be wrong in: a second is plenty for a dispatcher
    // that polls every 200 ms.
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        receiver.received().iter().all(|r| r.key != a2),
        "A's second event overtook its first"
    );

    // Released, A's first is answered, then A's second goes.
    receiver.release();
    let got = receiver.wait(
        "A's second ImagingStudy",
        |r| r.iter().any(|x| x.key == a2 && x.status == 201),
        &server,
    );
    let first_done = got.iter().position(|r| r.key == a1).expect("A1");
    let second = got.iter().position(|r| r.key == a2).expect("A2");
    assert!(first_done < second);
    assert_eq!(got[first_done].status, 201);
    let second = got[second].json();
    assert_eq!(second["numberOfInstances"], 4);
}

#[test]
fn a_target_that_does_not_answer_fails_the_attempt_after_its_timeout() {
    let receiver = Receiver::start(0);
    receiver.hang_next(1);
    let (_tmp, data) = data_dir();
    let server = start(
        &data,
        &ehr_config(&data, receiver.port, "timeout_secs = 1\n"),
    );
    storescu(&server, &ct_study());
    // The first request is never answered; the client gives up after 1 s and tries again.
    let got = receiver.wait("a second attempt", delivered, &server);
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|r| r.key == got[0].key));
    let d = &server.json("/api/events?worker=ehr")[0];
    assert_eq!(d["state"], "delivered", "{d}");
    assert_eq!(d["attempts"], 2);
    assert!(
        server.log().contains("timed out"),
        "the failed attempt names the timeout:\n{}",
        server.log()
    );
}

#[test]
fn sigterm_cancels_a_hung_delivery_which_is_sent_again_after_restart() {
    let receiver = Receiver::start(0);
    receiver.hang_next(usize::MAX);
    let (_tmp, data) = data_dir();
    let cfg = ehr_config(&data, receiver.port, "timeout_secs = 600\n");
    let mut server = start(&data, &cfg);
    storescu(&server, &ct_study());
    let hung = receiver.wait("the hung ImagingStudy", |r| !r.is_empty(), &server);

    // SIGTERM: the server stops without waiting out the 600 s request (`terminate` gives it
    // a minute; a server that waited for the request would take ten).
    let status = server.terminate();
    assert!(status.success(), "{status:?}\n{}", server.log());
    assert!(server.log().contains("cancelled"), "{}", server.log());

    // The cancelled send was not recorded: still pending, resent with its key after restart.
    receiver.release();
    let server = start(&data, &cfg);
    // (The held request's connection died with the server, so it was never answered.)
    let got = receiver.wait("the ImagingStudy after restart", delivered, &server);
    let resent = got.iter().find(|r| r.status == 201).expect("resent");
    assert_eq!(resent.key, hung[0].key);
    let d = &server.json("/api/events?worker=ehr")[0];
    assert_eq!(d["state"], "delivered", "{d}");
    assert_eq!(
        d["attempts"], 1,
        "the cancelled attempt does not count: {d}"
    );
}

#[test]
fn a_redirect_is_a_failed_delivery_naming_its_location_and_is_not_followed() {
    let receiver = Receiver::start(0);
    let (_tmp, data) = data_dir();
    let cfg = write_config(
        &data,
        &format!(
            "stable_after_secs = 0.3\n[workers.portal]\nurl = \"http://127.0.0.1:{}/redirect/notices\"\nmax_attempts = 1\n",
            receiver.port
        ),
    );
    let server = start(&data, &cfg);
    storescu(&server, &ct_study());
    let dead = wait_json(
        &server,
        "/api/events?worker=portal&state=dead",
        "a dead portal delivery",
        |v| v.as_array().is_some_and(|a| !a.is_empty()),
    );
    let error = dead[0]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("302"), "{error}");
    assert!(
        error.contains(&format!("http://127.0.0.1:{}/login", receiver.port)),
        "{error}"
    );
    let got = receiver.received();
    assert_eq!(
        got.len(),
        1,
        "only the POST, no GET of the login page: {got:?}"
    );
    assert_eq!(got[0].method, "POST");
}

/// The ImagingStudy endpoint address and portal link a server hands out.
fn handed_out(server: &Server, receiver: &Receiver) -> (String, String) {
    let got = receiver.wait(
        "an ImagingStudy and a portal notice",
        |r| {
            r.iter()
                .any(|x| x.uri.starts_with("/fhir") && x.status == 201)
                && r.iter()
                    .any(|x| x.uri.starts_with("/portal") && x.status == 201)
        },
        server,
    );
    let find = |p: &str| {
        got.iter()
            .find(|x| x.uri.starts_with(p) && x.status == 201)
            .expect("sent")
            .json()
    };
    let address = find("/fhir")["contained"][0]["address"]
        .as_str()
        .expect("address")
        .to_string();
    let link = find("/portal")["link"].as_str().expect("link").to_string();
    (address, link)
}

fn url_config(data: &Path, port: u16, extra: &str) -> PathBuf {
    write_config(
        data,
        &format!(
            "stable_after_secs = 0.3\n{extra}\n[workers.ehr]\nurl = \"http://127.0.0.1:{port}/fhir\"\n[workers.portal]\nurl = \"http://127.0.0.1:{port}/portal\"\n"
        ),
    )
}

#[test]
fn absolute_urls_name_the_scheme_and_an_address_the_server_really_serves() {
    // With [tls], the HTTP port speaks only HTTPS: links say https, and they open.
    let receiver = Receiver::start(0);
    let (tmp, data) = data_dir();
    let certs = crate::security::test_pki(tmp.path());
    let c = |f: &str| certs.join(f).to_string_lossy().into_owned();
    let tls = format!(
        "[tls]\ncert = {:?}\nkey = {:?}\ndicom = false\n",
        c("server.pem"),
        c("server.key")
    );
    let server = start(&data, &url_config(&data, receiver.port, &tls));
    storescu(&server, &ct_study());
    let (address, link) = handed_out(&server, &receiver);
    let base = format!("https://127.0.0.1:{}", server.http_port);
    assert!(
        address.starts_with(&format!("{base}/dicom-web/studies/")),
        "{address}"
    );
    assert!(link.starts_with(&format!("{base}/api/share/")), "{link}");
    let out = run(Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
        ])
        .arg(c("ca.pem"))
        .arg(&link));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{link}");
    drop(server);

    // Bound to every address: not 0.0.0.0 (nobody can connect to it) but the host name, and
    // the operator is told to set public_url.
    let receiver = Receiver::start(0);
    let (_tmp2, data) = data_dir();
    let cfg = url_config(&data, receiver.port, "allow_unauthenticated_http = true");
    let server = Server::start_with(
        &data,
        ServerOptions {
            extra_args: &[
                "--config",
                cfg.to_str().expect("utf-8"),
                "--http-bind",
                "0.0.0.0",
            ],
            ..Default::default()
        },
    );
    storescu(&server, &ct_study());
    let (address, link) = handed_out(&server, &receiver);
    for url in [&address, &link] {
        assert!(url.starts_with("http://"), "{url}");
        assert!(!url.contains("0.0.0.0"), "{url}");
        assert!(url.contains(&format!(":{}/", server.http_port)), "{url}");
    }
    assert!(server.log().contains("set public_url"), "{}", server.log());

    // public_url wins over both.
    let receiver = Receiver::start(0);
    let (_tmp3, data) = data_dir();
    let cfg = url_config(
        &data,
        receiver.port,
        "public_url = \"https://pacs.example.org/\"",
    );
    let server = start(&data, &cfg);
    storescu(&server, &ct_study());
    let (address, link) = handed_out(&server, &receiver);
    assert!(
        address.starts_with("https://pacs.example.org/dicom-web/studies/"),
        "{address}"
    );
    assert!(
        link.starts_with("https://pacs.example.org/api/share/"),
        "{link}"
    );
}
