//! The workers' peer in the tests: a real HTTP server (axum) on a loopback port inside the
//! test process, recording every request as it arrives. It can refuse (500), hang until
//! released, and redirect, as hospital systems do.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::support::Server;

#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub uri: String,
    pub key: String,
    pub content_type: String,
    pub body: Vec<u8>,
    /// 0 while the request is being held (hung), else the status answered.
    pub status: u16,
}

impl Received {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {}: not JSON ({e}): {}",
                self.method,
                self.uri,
                self.text()
            )
        })
    }
}

/// What the receiver does with the next requests.
#[derive(Default)]
struct Script {
    /// Answer 500 to this many.
    failures: AtomicUsize,
    /// Hold this many unanswered until `release`.
    hangs: AtomicUsize,
}

pub struct Receiver {
    pub port: u16,
    log: Arc<Mutex<Vec<Received>>>,
    script: Arc<Script>,
    release: tokio::sync::watch::Sender<bool>,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    /// Refuses the first `failures` requests with 500, accepts the rest with 201.
    pub fn start(failures: usize) -> Receiver {
        Receiver::start_on(0, failures)
    }

    /// On a given port (0: any), so a test can start it after the server that sends to it.
    pub fn start_on(port: u16, failures: usize) -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let log = Arc::new(Mutex::new(Vec::<Received>::new()));
        let script = Arc::new(Script {
            failures: AtomicUsize::new(failures),
            hangs: AtomicUsize::new(0),
        });
        let (release, released) = tokio::sync::watch::channel(false);
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (l, s) = (log.clone(), script.clone());
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let (l, s, mut released) = (l.clone(), s.clone(), released.clone());
                async move { answer(&l, &s, &mut released, port, method, uri, headers, body).await }
            },
        );
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            port,
            log,
            script,
            release,
            _runtime: runtime,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.log.lock().expect("log").clone()
    }

    pub fn set_failures(&self, n: usize) {
        self.script.failures.store(n, Ordering::SeqCst);
    }

    /// Hold the next `n` requests unanswered until `release`.
    pub fn hang_next(&self, n: usize) {
        self.script.hangs.store(n, Ordering::SeqCst);
    }

    /// Answer the held requests (201) and hold no more.
    pub fn release(&self) {
        self.script.hangs.store(0, Ordering::SeqCst);
        let _ = self.release.send(true);
    }

    /// Wait until `pred` holds for what was received.
    pub fn wait(
        &self,
        what: &str,
        pred: impl Fn(&[Received]) -> bool,
        server: &Server,
    ) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.received();
            if pred(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: received {:#?}\nserver log:\n{}",
                got.iter()
                    .map(|r| (&r.method, &r.uri, &r.key, r.status))
                    .collect::<Vec<_>>(),
                server.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn answer(
    log: &Mutex<Vec<Received>>,
    script: &Script,
    released: &mut tokio::sync::watch::Receiver<bool>,
    port: u16,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let index = {
        let mut l = log.lock().expect("log");
        l.push(Received {
            method: method.to_string(),
            uri: uri.to_string(),
            key: h("idempotency-key"),
            content_type: h("content-type"),
            body: body.to_vec(),
            status: 0,
        });
        l.len() - 1
    };
    let take = |n: &AtomicUsize| {
        n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    };
    let response = if uri.path().starts_with("/redirect") {
        // A misconfigured target: its reverse proxy sends everyone to a login page.
        (
            StatusCode::FOUND,
            [(header::LOCATION, format!("http://127.0.0.1:{port}/login"))],
        )
            .into_response()
    } else if uri.path() == "/login" {
        (StatusCode::OK, "<html>login</html>").into_response()
    } else if take(&script.failures) {
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    } else {
        if take(&script.hangs) {
            let _ = released.wait_for(|r| *r).await;
        }
        StatusCode::CREATED.into_response()
    };
    log.lock().expect("log")[index].status = response.status().as_u16();
    response
}
