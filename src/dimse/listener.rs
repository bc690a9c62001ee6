//! The DICOM listener: accept, cap concurrent associations, one task per association.

use std::sync::Arc;

use pacs_storage::Store;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::association::{reject_busy, serve, DimsePeer, DimseSettings, DimseStream};

pub struct DimseListener {
    pub listener: TcpListener,
    pub settings: Arc<DimseSettings>,
    pub max_associations: usize,
    /// DICOM TLS: every connection is a TLS handshake first.
    pub tls: Option<TlsAcceptor>,
    /// Shared by the plain and the TLS listener, so the cap counts both.
    pub permits: Arc<Semaphore>,
}

impl DimseListener {
    /// Accept until `shutdown`; association tasks are spawned on `tracker` so the caller can
    /// wait for in-flight stores to finish.
    pub async fn run(self, store: Arc<Store>, shutdown: CancellationToken, tracker: TaskTracker) {
        let permits = self.permits.clone();
        loop {
            let accepted = tokio::select! {
                a = self.listener.accept() => a,
                _ = shutdown.cancelled() => break,
            };
            let (stream, peer) = match accepted {
                Ok(v) => v,
                Err(e) => {
                    // Out of file descriptors and similar: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Without TCP_NODELAY, dcmtk peers stall ~40 ms per message on delayed ACKs.
            if let Err(e) = stream.set_nodelay(true) {
                tracing::warn!(%peer, error = %e, "cannot set TCP_NODELAY");
            }
            let settings = self.settings.clone();
            let tls = self.tls.clone();
            match permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    let store = store.clone();
                    let shutdown = shutdown.clone();
                    tracker.spawn(async move {
                        if let Some((stream, peer)) = secure(stream, peer, tls.as_ref()).await {
                            serve(stream, peer, store, settings, shutdown).await;
                        }
                        drop(permit);
                    });
                }
                Err(_) => {
                    tracing::warn!(%peer, max = self.max_associations, "association limit reached; rejecting");
                    tracker.spawn(async move {
                        if let Some((stream, _)) = secure(stream, peer, tls.as_ref()).await {
                            reject_busy(stream, settings).await;
                        }
                    });
                }
            }
        }
    }
}

/// The TLS handshake on a DICOM TLS port (nothing to do on the plain one). A failed handshake
/// (no certificate under mutual TLS, plain DICOM on the TLS port) ends the connection here.
async fn secure(
    stream: tokio::net::TcpStream,
    addr: std::net::SocketAddr,
    tls: Option<&TlsAcceptor>,
) -> Option<(DimseStream, DimsePeer)> {
    let Some(acceptor) = tls else {
        let peer = DimsePeer {
            addr,
            client_cn: None,
        };
        return Some((Box::new(stream), peer));
    };
    match crate::tls::accept(acceptor, stream).await {
        Ok(s) => {
            let client_cn = crate::tls::peer_common_name(&s);
            Some((Box::new(s), DimsePeer { addr, client_cn }))
        }
        Err(e) => {
            tracing::warn!(peer = %addr, error = %e, "DICOM TLS handshake failed");
            None
        }
    }
}
