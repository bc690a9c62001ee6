//! The HTTP API's listener for axum: plain TCP or HTTPS, handing each connection on with
//! who is at the other end (address, and the client certificate's name under mutual TLS).

use std::io;
use std::net::SocketAddr;

use pacs_viewer_api::PeerInfo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;

use crate::tls::{self, ServerTlsStream};

/// Handshakes finished but not yet taken by axum.
const READY_QUEUE: usize = 256;

pub enum HttpListener {
    Plain(TcpListener),
    /// Connections accepted and handshaken by a background task.
    Tls {
        ready: mpsc::Receiver<(ServerTlsStream, PeerInfo)>,
        local: SocketAddr,
    },
}

impl HttpListener {
    pub fn plain(listener: TcpListener) -> Self {
        HttpListener::Plain(listener)
    }

    /// HTTPS: each handshake runs in its own task, so a client that never finishes one
    /// delays nobody else.
    pub fn tls(listener: TcpListener, acceptor: TlsAcceptor) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        tokio::spawn(async move {
            loop {
                let (stream, addr) = match listener.accept().await {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::warn!(error = %e, "HTTPS accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let acceptor = acceptor.clone();
                let handed = tx.clone();
                tokio::spawn(async move {
                    match tls::accept(&acceptor, stream).await {
                        Ok(s) => {
                            let client_cn = tls::peer_common_name(&s);
                            let _ = handed.send((s, PeerInfo { addr, client_cn })).await;
                        }
                        Err(e) => tracing::info!(peer = %addr, error = %e, "TLS handshake failed"),
                    }
                });
                if tx.is_closed() {
                    break;
                }
            }
        });
        Ok(HttpListener::Tls { ready, local })
    }
}

impl axum::serve::Listener for HttpListener {
    type Io = Either<TcpStream, ServerTlsStream>;
    type Addr = PeerInfo;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self {
            HttpListener::Plain(l) => loop {
                match TcpListener::accept(l).await {
                    Ok((s, addr)) => {
                        let _ = s.set_nodelay(true);
                        return (
                            Either::Left(s),
                            PeerInfo {
                                addr,
                                client_cn: None,
                            },
                        );
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "HTTP accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            },
            HttpListener::Tls { ready, .. } => match ready.recv().await {
                Some((s, peer)) => (Either::Right(s), peer),
                // The accept task only ends when this receiver is gone.
                None => std::future::pending().await,
            },
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        let addr = match self {
            HttpListener::Plain(l) => l.local_addr()?,
            HttpListener::Tls { local, .. } => *local,
        };
        Ok(PeerInfo {
            addr,
            client_cn: None,
        })
    }
}
