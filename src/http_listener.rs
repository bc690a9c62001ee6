//! The HTTP API's server: plain TCP or HTTPS, HTTP/1.1 served by hyper with the axum router.
//! Our own accept loop rather than `axum::serve`, for the limits that one lacks: connections
//! at once (in all and per source address, answered 503 beyond), a deadline for the TLS
//! handshake, and a deadline for each request's headers, which also closes idle keep-alive
//! connections. Each request carries who is at the other end ([`PeerInfo`]: address, and the
//! client certificate's name under mutual TLS).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use pacs_viewer_api::PeerInfo;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::address_slots::AddressSlots;
use crate::tls;

/// The limits of the HTTP server.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Connections at once.
    pub max_connections: usize,
    /// Of those, from one source address.
    pub max_per_address: usize,
    /// Deadline for a request's headers, counted from when the server starts waiting for
    /// them (so also the longest a keep-alive connection may sit idle).
    pub header_timeout: Duration,
}

/// Bytes hyper may buffer per connection (request line and headers must fit).
const MAX_READ_BUFFER: usize = 64 * 1024;

/// What a client over the connection cap is told before the connection closes.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
Retry-After: 5\r\nConnection: close\r\nContent-Length: 56\r\n\r\n\
{\"error\":\"too many connections; try again in a moment\"}\n";

/// Serve `app` on `listener` until `shutdown`, then let open requests finish (connections
/// are closed once their current response is sent).
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) {
    let slots = AddressSlots::new(limits.max_connections, limits.max_per_address);
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.cancelled() => break,
        };
        let (stream, addr) = match accepted {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(slot) = slots.take(addr.ip()) else {
            tracing::warn!(peer = %addr, "HTTP connection limit reached; refusing");
            if tls.is_none() {
                // A fresh socket's send buffer takes these few bytes without waiting.
                let _ = stream.try_write(BUSY);
            }
            continue;
        };
        let app = app.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        let header_timeout = limits.header_timeout;
        tracker.spawn(async move {
            connection(stream, addr, tls, app, header_timeout, shutdown).await;
            drop(slot);
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// One connection: the TLS handshake when there is one, then HTTP/1.1 until either side
/// closes or the server shuts down.
async fn connection(
    stream: TcpStream,
    addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    app: Router,
    header_timeout: Duration,
    shutdown: CancellationToken,
) {
    match tls {
        None => {
            let peer = PeerInfo {
                addr,
                client_cn: None,
            };
            http1(stream, peer, app, header_timeout, shutdown).await
        }
        Some(acceptor) => match tls::accept(&acceptor, stream).await {
            Ok(s) => {
                let client_cn = tls::peer_common_name(&s);
                let peer = PeerInfo { addr, client_cn };
                http1(s, peer, app, header_timeout, shutdown).await
            }
            Err(e) => tracing::info!(peer = %addr, error = %e, "TLS handshake failed"),
        },
    }
}

async fn http1<S>(
    io: S,
    peer: PeerInfo,
    app: Router,
    header_timeout: Duration,
    shutdown: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let addr = peer.addr;
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer.clone()));
        let mut app = app.clone();
        async move {
            let req = req.map(axum::body::Body::new);
            Ok::<_, Infallible>(match tower_service::Service::call(&mut app, req).await {
                Ok(response) => response,
                Err(never) => match never {},
            })
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        // hyper's default read buffer (about 400 KB, which request headers may fill) times
        // the connection cap would be 400 MB; our longest legitimate request line (a QIDO UID
        // list, a frame list) is a few KB. Larger headers get 431.
        .max_buf_size(MAX_READ_BUFFER)
        .max_header_size(MAX_READ_BUFFER)
        .keep_alive(true);
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            tracing::info!(peer = %addr, "HTTP request headers not received within {header_timeout:?}; closed");
        } else {
            tracing::debug!(peer = %addr, error = %e, "HTTP connection ended with an error");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busy_answer_says_how_long_its_body_is() {
        let head_end = BUSY
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(0, |i| i + 4);
        let head = String::from_utf8_lossy(&BUSY[..head_end]);
        assert!(head.contains(&format!("Content-Length: {}", BUSY.len() - head_end)));
    }
}
