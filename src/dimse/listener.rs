//! The DICOM listener: accept, cap concurrent associations, one task per association.

use std::sync::Arc;

use pacs_storage::Store;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::association::{reject_busy, serve, DimseSettings};

pub struct DimseListener {
    pub listener: TcpListener,
    pub settings: Arc<DimseSettings>,
    pub max_associations: usize,
}

impl DimseListener {
    /// Accept until `shutdown`; association tasks are spawned on `tracker` so the caller can
    /// wait for in-flight stores to finish.
    pub async fn run(self, store: Arc<Store>, shutdown: CancellationToken, tracker: TaskTracker) {
        let permits = Arc::new(Semaphore::new(self.max_associations));
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
            match permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    let store = store.clone();
                    let shutdown = shutdown.clone();
                    tracker.spawn(async move {
                        serve(stream, peer, store, settings, shutdown).await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    tracing::warn!(%peer, max = self.max_associations, "association limit reached; rejecting");
                    tracker.spawn(reject_busy(stream, settings));
                }
            }
        }
    }
}
