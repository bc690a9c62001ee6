//! The MLLP listener: one task per connection, frames read with [`FrameReader`], each
//! message parsed, mapped and handed to a [`MessageHandler`], each answered with an ACK.
//! Limits hold in aggregate: connections at once, bytes per message, a deadline per message
//! and an idle timeout between messages.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ack::{self, Sender};
use crate::message::Header;
use crate::mllp::{self, FrameError, FrameReader};
use crate::nak::{AckCode, ErrorCode, Refusal};
use crate::Inbound;

#[derive(Debug, Clone)]
pub struct MllpSettings {
    pub max_message_bytes: usize,
    pub max_connections: usize,
    /// A whole message must arrive within this after its start block.
    pub message_timeout: Duration,
    /// The longest a connection may wait for its next message.
    pub idle_timeout: Duration,
    pub sender: Sender,
}

impl Default for MllpSettings {
    fn default() -> Self {
        MllpSettings {
            max_message_bytes: 1 << 20,
            max_connections: 16,
            message_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            sender: Sender::default(),
        }
    }
}

/// What the application did with a message.
pub type Outcome = Result<(), Refusal>;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The application side: apply an order or a patient change, and hear about refused
/// messages (to audit them).
pub trait MessageHandler: Send + Sync {
    fn handle(&self, peer: SocketAddr, message: Inbound) -> BoxFuture<'_, Outcome>;
    /// A message refused before it reached `handle` (unparseable, unsupported, incomplete).
    fn refused(&self, _peer: SocketAddr, _header: Option<&Header>, _refusal: &Refusal) {}
}

/// Accept connections until `shutdown`, then wait for the open ones to finish their
/// current message.
pub async fn serve(
    listener: TcpListener,
    settings: MllpSettings,
    handler: Arc<dyn MessageHandler>,
    shutdown: CancellationToken,
) {
    let settings = Arc::new(settings);
    let slots = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(error = %e, "HL7 accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "HL7 connection refused: too many connections");
            drop(stream);
            continue;
        };
        let (settings, handler, shutdown) = (settings.clone(), handler.clone(), shutdown.clone());
        tracker.spawn(async move {
            connection(stream, peer, &settings, handler.as_ref(), shutdown).await;
            drop(slot);
        });
    }
    tracker.close();
    tracker.wait().await;
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    settings: &MllpSettings,
    handler: &dyn MessageHandler,
    shutdown: CancellationToken,
) {
    tracing::debug!(%peer, "HL7 connection");
    let (read, mut write) = stream.split();
    let mut reader = FrameReader::new(read, settings.max_message_bytes);
    loop {
        let frame = tokio::select! {
            _ = shutdown.cancelled() => return,
            f = reader.read_frame(settings.idle_timeout, settings.message_timeout) => f,
        };
        let (reply, close) = match frame {
            Ok(Some(bytes)) => (answer(&bytes, peer, settings, handler).await, false),
            Ok(None) => return,
            Err(FrameError::TooLarge { limit, prefix }) => {
                tracing::warn!(%peer, limit, "HL7 message too large; closing");
                let header = Header::from_prefix(&prefix);
                let r = Refusal::new(
                    AckCode::Reject,
                    ErrorCode::InternalError,
                    format!("message too large (limit {limit} bytes)"),
                );
                handler.refused(peer, header.as_ref(), &r);
                (
                    ack::build(&settings.sender, header.as_ref(), Some(&r)),
                    true,
                )
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "HL7 connection closed");
                return;
            }
        };
        let sent = tokio::time::timeout(settings.message_timeout, async {
            write.write_all(&mllp::frame(&reply)).await?;
            write.flush().await
        })
        .await;
        if !matches!(sent, Ok(Ok(()))) || close {
            return;
        }
    }
}

/// Parse, map, apply: the ACK for one message.
async fn answer(
    bytes: &[u8],
    peer: SocketAddr,
    settings: &MllpSettings,
    handler: &dyn MessageHandler,
) -> Vec<u8> {
    match crate::process(bytes) {
        Ok(messages) => {
            let Some(header) = messages.first().map(|m| m.header().clone()) else {
                return ack::build(&settings.sender, None, None);
            };
            let count = messages.len();
            let what = match messages.first() {
                Some(Inbound::Patient(_)) => "patient",
                _ => "order",
            };
            // Each order (or PID/MRG pair) is applied on its own, in message order; the
            // first refusal stops the rest and the ACK says which it was and that those
            // before it stand.
            let mut outcome = Ok(());
            for (n, message) in messages.into_iter().enumerate() {
                if let Err(mut refusal) = handler.handle(peer, message).await {
                    if count > 1 {
                        refusal.text = format!(
                            "{what} {} of {count}: {} (those before it were applied)",
                            n + 1,
                            refusal.text
                        );
                    }
                    outcome = Err(refusal);
                    break;
                }
            }
            ack::build(&settings.sender, Some(&header), outcome.as_ref().err())
        }
        Err(rejected) => {
            let (header, refusal) = *rejected;
            tracing::info!(%peer, code = refusal.code.code(), reason = %refusal.text, "HL7 message refused");
            handler.refused(peer, header.as_ref(), &refusal);
            ack::build(&settings.sender, header.as_ref(), Some(&refusal))
        }
    }
}
