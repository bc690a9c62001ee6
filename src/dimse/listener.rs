//! The DICOM listener: accept, admit (see [`super::admission`]), read the A-ASSOCIATE-RQ
//! within the ARTIM deadline, then hand the association to its own task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dicom_ul::pdu::{AbortRQServiceProviderReason, AssociationRQ, Pdu};
use pacs_storage::Store;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::admission::{local_limit, Admission, HandshakeTicket, Refusal};
use super::association::{abort_pdu, abort_reason_for, serve, LINGER};
use super::pdu_io::{PduError, PduStream};
use super::peer::DimsePeer;
use super::session::{DimseSettings, DimseStream};

/// How long a refused peer gets to read the A-ASSOCIATE-RJ and close.
const REFUSED_LINGER: Duration = Duration::from_secs(5);

pub struct DimseListener {
    pub listener: TcpListener,
    pub settings: Arc<DimseSettings>,
    /// DICOM TLS: every connection is a TLS handshake first.
    pub tls: Option<TlsAcceptor>,
    /// Shared by the plain and the TLS listener, so the limits count both.
    pub admission: Arc<Admission>,
}

impl DimseListener {
    /// Accept until `shutdown`; association tasks are spawned on `tracker` so the caller can
    /// wait for in-flight stores to finish.
    pub async fn run(self, store: Arc<Store>, shutdown: CancellationToken, tracker: TaskTracker) {
        loop {
            let accepted = tokio::select! {
                a = self.listener.accept() => a,
                _ = shutdown.cancelled() => break,
            };
            let (stream, addr) = match accepted {
                Ok(v) => v,
                Err(e) => {
                    // Out of file descriptors and similar: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Without TCP_NODELAY, dcmtk peers stall ~40 ms per message on delayed ACKs.
            if let Err(e) = stream.set_nodelay(true) {
                tracing::warn!(peer = %addr, error = %e, "cannot set TCP_NODELAY");
            }
            let ticket = match self.admission.begin(addr.ip()) {
                Ok(t) => t,
                Err(refusal) => {
                    self.admission.log_refusal(addr, refusal);
                    self.refuse_unread(stream, &tracker);
                    continue;
                }
            };
            tracker.spawn(connection(
                Connection {
                    stream,
                    addr,
                    ticket,
                    tls: self.tls.clone(),
                    admission: self.admission.clone(),
                },
                store.clone(),
                self.settings.clone(),
                shutdown.clone(),
            ));
        }
    }

    /// Turn a connection away without reading from it: a transient rejection (on the plain
    /// port; TLS would need a handshake first), then close once the peer has read it.
    fn refuse_unread(&self, stream: TcpStream, tracker: &TaskTracker) {
        if self.tls.is_some() {
            return; // dropped: closing is all we can say without a handshake
        }
        let Some(slot) = self.admission.closing_slot() else {
            return; // too many being closed already: just drop it
        };
        let mut out = Vec::new();
        if dicom_ul::pdu::write_pdu(&mut out, &Pdu::AssociationRJ(local_limit())).is_err() {
            return;
        }
        tracker.spawn(async move {
            let mut stream = stream;
            if stream.write_all(&out).await.is_ok() {
                let _ = stream.shutdown().await;
                linger(stream, REFUSED_LINGER).await;
            }
            drop(slot);
        });
    }
}

/// A connection admitted for its handshake.
struct Connection {
    stream: TcpStream,
    addr: SocketAddr,
    ticket: HandshakeTicket,
    tls: Option<TlsAcceptor>,
    admission: Arc<Admission>,
}

/// One connection's task: the handshake, then the association. Thousands run at once in a
/// flood, so the future is kept small: the services' futures are boxed (its size is checked
/// by a test below).
async fn connection(
    c: Connection,
    store: Arc<Store>,
    settings: Arc<DimseSettings>,
    shutdown: CancellationToken,
) {
    let Connection {
        stream,
        addr,
        ticket,
        tls,
        admission,
    } = c;
    let Some((pdus, rq, peer)) = handshake(stream, addr, tls.as_ref(), &admission, &settings).await
    else {
        return;
    };
    serve(pdus, rq, ticket, peer, store, settings, shutdown).await;
}

/// Read and drop what the peer still sends until it closes or `wait` passes, with a small
/// fixed buffer: closing with unread data would reset the connection before the peer reads
/// our last PDU.
async fn linger(mut stream: TcpStream, wait: Duration) {
    use tokio::io::AsyncReadExt;
    let mut scratch = [0u8; 1024];
    let _ = tokio::time::timeout(wait, async {
        while let Ok(n) = stream.read(&mut scratch).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// The handshake within the ARTIM deadline: TLS (on the DICOM TLS port), then the
/// A-ASSOCIATE-RQ, its buffer charged to the handshake memory pool. On failure the peer gets
/// an A-ABORT or A-ASSOCIATE-RJ where that helps it, and the connection ends.
async fn handshake(
    stream: TcpStream,
    addr: SocketAddr,
    tls: Option<&TlsAcceptor>,
    admission: &Admission,
    settings: &DimseSettings,
) -> Option<(PduStream<DimseStream>, AssociationRQ, DimsePeer)> {
    let artim = admission.limits.artim;
    let deadline = tokio::time::Instant::now() + artim;
    let secured = tokio::time::timeout_at(deadline, secure(stream, addr, tls)).await;
    let (stream, peer) = match secured {
        Ok(Some(v)) => v,
        Ok(None) => return None,
        Err(_) => {
            tracing::warn!(peer = %addr, "no TLS handshake within the ARTIM timeout ({artim:?})");
            return None;
        }
    };
    let mut pdus = PduStream::new(stream, settings.max_pdu).charged_to(admission.memory());
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    match pdus.read(left).await {
        Ok(Pdu::AssociationRQ(rq)) => Some((pdus, rq, peer)),
        Ok(other) => {
            tracing::warn!(peer = %addr, pdu = %other.short_description(), "expected A-ASSOCIATE-RQ; aborting");
            let _ = pdus
                .write(&abort_pdu(AbortRQServiceProviderReason::UnexpectedPdu))
                .await;
            None
        }
        Err(PduError::OutOfMemory(_)) => {
            admission.log_refusal(addr, Refusal::OutOfMemory);
            pdus.release_charge();
            let _ = pdus.write(&Pdu::AssociationRJ(local_limit())).await;
            None
        }
        Err(PduError::Timeout(_)) => {
            tracing::warn!(peer = %addr, "no complete A-ASSOCIATE-RQ within the ARTIM timeout ({artim:?}); closing");
            None
        }
        Err(e) => {
            tracing::warn!(peer = %addr, error = %e, "no valid A-ASSOCIATE-RQ; aborting");
            if e.is_protocol_error() {
                let _ = pdus.write(&abort_pdu(abort_reason_for(&e))).await;
                pdus.close_gracefully(LINGER).await;
            }
            None
        }
    }
}

/// The TLS handshake on a DICOM TLS port (nothing to do on the plain one). A failed handshake
/// (no certificate under mutual TLS, plain DICOM on the TLS port) ends the connection here.
async fn secure(
    stream: TcpStream,
    addr: SocketAddr,
    tls: Option<&TlsAcceptor>,
) -> Option<(DimseStream, DimsePeer)> {
    let Some(acceptor) = tls else {
        let peer = DimsePeer {
            addr,
            client_cn: None,
        };
        return Some((Box::new(stream), peer));
    };
    match acceptor.accept(stream).await {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dimse::admission::AdmissionLimits;

    /// Bound on one connection's future: a flood of connections holds thousands of them, and
    /// an earlier split of the association made it grow until the flood test regressed. The
    /// flood test is sensitive to this size both ways (allocator size classes): with the
    /// association boxed apart (5.3 KiB left here), the memory of 1,000 half-sent requests
    /// was not given back after they closed; the association inline (7.0 KiB) returns it.
    pub(crate) const CONNECTION_FUTURE_MAX: usize = 7 * 1024;

    #[tokio::test]
    async fn connection_future_stays_small() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(Store::open(dir.path(), Default::default()).expect("store"));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (stream, addr) = listener.accept().await.expect("accept");
        let admission = Admission::new(AdmissionLimits {
            max_associations: 1,
            max_handshakes: 1,
            max_handshakes_per_peer: 1,
            handshake_memory: 1 << 20,
            artim: Duration::from_secs(1),
        });
        let ticket = admission.begin(addr.ip()).expect("ticket");
        let future = connection(
            Connection {
                stream,
                addr,
                ticket,
                tls: None,
                admission,
            },
            store,
            Arc::new(crate::dimse::session::tests::settings()),
            CancellationToken::new(),
        );
        let size = std::mem::size_of_val(&future);
        eprintln!("connection future: {size} bytes");
        assert!(
            size <= CONNECTION_FUTURE_MAX,
            "connection future is {size} bytes, more than {CONNECTION_FUTURE_MAX}"
        );
        drop((future, client));
    }
}
