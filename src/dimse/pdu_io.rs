//! PDU framing over a TCP stream (PS3.8 9.3). We find PDU boundaries ourselves, check the
//! length against our limit before buffering, then let dicom-ul decode the complete PDU.
//! The buffer grows only as bytes arrive (never to a length the peer merely declares), and
//! may be charged to a shared [`MemoryPool`] (connections not yet associated).
//! Each outgoing PDU is encoded by dicom-ul and written with one `write_all`.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use dicom_ul::pdu::{read_pdu, write_pdu, PDataValue, PDataValueType, Pdu, MAXIMUM_PDU_SIZE};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

const HEADER: usize = 6;
/// A-ASSOCIATE-RQ may be larger than the negotiated P-DATA size (128 presentation contexts
/// with many transfer syntaxes each, user identity).
pub const MAX_ASSOCIATE_RQ: u32 = 1 << 20;
/// The buffer grows by at most this much per read (less while charged to a pool: a peer
/// not yet associated gets little room ahead of what it actually sent).
const READ_CHUNK: usize = 64 * 1024;
const CHARGED_READ_CHUNK: usize = 8 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PduError {
    #[error("peer closed the connection")]
    Closed,
    #[error("the peer did not send a complete PDU within {0:?}")]
    Timeout(Duration),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("unrecognized PDU type 0x{0:02X}")]
    UnrecognizedType(u8),
    #[error("PDU of {length} bytes exceeds the limit of {limit}")]
    TooLarge { length: u32, limit: u32 },
    #[error("malformed PDU: {0}")]
    Malformed(String),
    #[error("no memory left for connections not yet associated ({0} bytes in use)")]
    OutOfMemory(usize),
}

impl PduError {
    /// Whether the peer deserves an A-ABORT (it sent something broken) rather than silence.
    pub fn is_protocol_error(&self) -> bool {
        matches!(
            self,
            PduError::UnrecognizedType(_) | PduError::TooLarge { .. } | PduError::Malformed(_)
        )
    }
}

/// Bytes that several connections' buffers may hold together.
#[derive(Clone)]
pub struct MemoryPool {
    permits: Arc<Semaphore>,
    total: usize,
}

impl MemoryPool {
    pub fn new(bytes: usize) -> Self {
        let total = bytes.min(Semaphore::MAX_PERMITS);
        MemoryPool {
            permits: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// Bytes charged now.
    pub fn in_use(&self) -> usize {
        self.total - self.permits.available_permits()
    }
}

/// What one buffer holds of a pool.
struct Charge {
    pool: MemoryPool,
    held: Option<OwnedSemaphorePermit>,
}

impl Charge {
    fn bytes(&self) -> usize {
        self.held.as_ref().map_or(0, |p| p.num_permits())
    }

    /// Hold at least `bytes`, or fail when the pool cannot give them.
    fn cover(&mut self, bytes: usize) -> Result<(), PduError> {
        let more = bytes.saturating_sub(self.bytes());
        if more == 0 {
            return Ok(());
        }
        let n = u32::try_from(more).map_err(|_| PduError::OutOfMemory(self.pool.in_use()))?;
        let permit = self
            .pool
            .permits
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| PduError::OutOfMemory(self.pool.in_use()))?;
        match self.held.as_mut() {
            Some(held) => held.merge(permit),
            None => self.held = Some(permit),
        }
        Ok(())
    }
}

pub struct PduStream<S> {
    stream: S,
    buf: BytesMut,
    /// Largest PDU body we accept once associated (what we announced as Maximum Length).
    max_pdu: u32,
    /// The pool this buffer is charged to, while it is.
    charge: Option<Charge>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> PduStream<S> {
    pub fn new(stream: S, max_pdu: u32) -> Self {
        PduStream {
            stream,
            buf: BytesMut::new(),
            max_pdu,
            charge: None,
        }
    }

    /// Charge the buffer to `pool` from now on: a read that would grow it past what the pool
    /// can give fails with [`PduError::OutOfMemory`].
    pub fn charged_to(mut self, pool: &MemoryPool) -> Self {
        self.charge = Some(Charge {
            pool: pool.clone(),
            held: None,
        });
        self
    }

    /// Stop charging the pool (the connection is now an association, counted otherwise), and
    /// give back a buffer that a large handshake grew.
    pub fn release_charge(&mut self) {
        if self.charge.take().is_some() && self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
    }

    /// Read one complete PDU; the whole PDU must arrive within `timeout` (a deadline, so a
    /// peer trickling bytes cannot stretch it).
    pub async fn read(&mut self, timeout: Duration) -> Result<Pdu, PduError> {
        match tokio::time::timeout(timeout, self.read_pdu()).await {
            Ok(r) => r,
            Err(_) => Err(PduError::Timeout(timeout)),
        }
    }

    async fn read_pdu(&mut self) -> Result<Pdu, PduError> {
        self.fill(HEADER).await?;
        let pdu_type = self.buf[0];
        if !(0x01..=0x07).contains(&pdu_type) {
            return Err(PduError::UnrecognizedType(pdu_type));
        }
        let length = u32::from_be_bytes([self.buf[2], self.buf[3], self.buf[4], self.buf[5]]);
        // Our announced maximum counts PDV bytes; allow its PDU header overhead.
        let limit = if pdu_type == 0x01 {
            MAX_ASSOCIATE_RQ
        } else {
            self.max_pdu.saturating_add(64)
        };
        if length > limit {
            return Err(PduError::TooLarge { length, limit });
        }
        let total = HEADER + length as usize;
        self.fill(total).await?;
        let frame = self.buf.split_to(total).freeze();
        match read_pdu(frame, MAXIMUM_PDU_SIZE, false) {
            Ok(Some(pdu)) => Ok(pdu),
            Ok(None) => Err(PduError::Malformed("truncated PDU".into())),
            Err(e) => Err(PduError::Malformed(pacs_storage::error_chain(&e))),
        }
    }

    /// Read until the buffer holds `want` bytes, growing it only by what is arriving.
    async fn fill(&mut self, want: usize) -> Result<(), PduError> {
        while self.buf.len() < want {
            let chunk = match self.charge {
                Some(_) => CHARGED_READ_CHUNK,
                None => READ_CHUNK,
            };
            self.buf.reserve((want - self.buf.len()).min(chunk));
            if let Some(charge) = self.charge.as_mut() {
                charge.cover(self.buf.capacity())?;
            }
            let n = self.stream.read_buf(&mut self.buf).await?;
            if n == 0 {
                return Err(PduError::Closed);
            }
        }
        Ok(())
    }

    pub async fn write(&mut self, pdu: &Pdu) -> Result<(), PduError> {
        let mut out = Vec::with_capacity(256);
        write_pdu(&mut out, pdu).map_err(|e| PduError::Malformed(pacs_storage::error_chain(&e)))?;
        self.stream.write_all(&out).await?;
        Ok(())
    }

    /// End the connection without losing what we sent: wait (bounded by the ARTIM timer,
    /// PS3.8 9.1.5) for the peer to close first. Closing at once can make a peer see the
    /// closed connection before it reads our A-ASSOCIATE-RJ or A-ABORT.
    pub async fn close_gracefully(mut self, wait: Duration) {
        let mut scratch = [0u8; 4096];
        let _ = tokio::time::timeout(wait, async {
            while let Ok(n) = self.stream.read(&mut scratch).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    }

    /// Encode several PDUs and send them with one write (fewer syscalls for bulk data).
    pub async fn write_batch(&mut self, pdus: &[Pdu]) -> Result<(), PduError> {
        let mut out = Vec::new();
        for pdu in pdus {
            write_pdu(&mut out, pdu)
                .map_err(|e| PduError::Malformed(pacs_storage::error_chain(&e)))?;
        }
        self.stream.write_all(&out).await?;
        Ok(())
    }

    /// Send one P-DATA PDU holding one fragment.
    pub async fn send_fragment(
        &mut self,
        context_id: u8,
        value_type: PDataValueType,
        bytes: Vec<u8>,
        is_last: bool,
    ) -> Result<(), PduError> {
        let pdu = Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: context_id,
                value_type,
                is_last,
                data: bytes,
            }],
        };
        self.write(&pdu).await
    }

    /// Send a command or data set as P-DATA PDUs no larger than the peer accepts.
    pub async fn send_message_part(
        &mut self,
        context_id: u8,
        value_type: PDataValueType,
        bytes: &[u8],
        peer_max_pdu: u32,
    ) -> Result<(), PduError> {
        // PDV item header (4 length + 1 context + 1 control) per PDU; 0 means no limit.
        let room = if peer_max_pdu == 0 {
            usize::MAX
        } else {
            (peer_max_pdu as usize).saturating_sub(6).max(1)
        };
        let mut rest = bytes;
        loop {
            let n = rest.len().min(room);
            let is_last = n == rest.len();
            let pdu = Pdu::PData {
                data: vec![PDataValue {
                    presentation_context_id: context_id,
                    value_type: value_type.clone(),
                    is_last,
                    data: rest[..n].to_vec(),
                }],
            };
            self.write(&pdu).await?;
            rest.advance(n);
            if is_last {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn random_bytes_are_an_unrecognized_pdu() {
        let (mut a, b) = tokio::io::duplex(1024);
        a.write_all(b"GET / HTTP/1.1\r\n\r\n").await.expect("write");
        let mut s = PduStream::new(b, 16 * 1024);
        let err = s.read(Duration::from_secs(1)).await.expect_err("must fail");
        assert!(err.is_protocol_error(), "{err}");
    }

    #[tokio::test]
    async fn oversized_length_is_refused_before_buffering() {
        let (mut a, b) = tokio::io::duplex(1024);
        a.write_all(&[0x04, 0, 0xFF, 0xFF, 0xFF, 0xF0])
            .await
            .expect("write");
        let mut s = PduStream::new(b, 16 * 1024);
        assert!(matches!(
            s.read(Duration::from_secs(1)).await,
            Err(PduError::TooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn a_declared_length_is_not_buffered_before_it_arrives() {
        let (mut a, b) = tokio::io::duplex(1 << 16);
        // An A-ASSOCIATE-RQ declaring 1,000,000 bytes, of which 10,000 arrive.
        a.write_all(&[0x01, 0, 0x00, 0x0F, 0x42, 0x40])
            .await
            .expect("write");
        a.write_all(&[0u8; 10_000]).await.expect("write");
        let pool = MemoryPool::new(1 << 20);
        let mut s = PduStream::new(b, 16 * 1024).charged_to(&pool);
        let err = s
            .read(Duration::from_millis(200))
            .await
            .expect_err("incomplete");
        assert!(matches!(err, PduError::Timeout(_)), "{err}");
        assert!(
            s.buf.capacity() < 100_000,
            "buffer grew to {} for 10 KB",
            s.buf.capacity()
        );
        assert!(pool.in_use() >= 10_000 && pool.in_use() < 100_000);
        s.release_charge();
        assert_eq!(pool.in_use(), 0);
    }

    #[tokio::test]
    async fn a_buffer_past_the_pool_fails() {
        let (mut a, b) = tokio::io::duplex(1 << 20);
        a.write_all(&[0x01, 0, 0x00, 0x0F, 0x42, 0x40])
            .await
            .expect("write");
        a.write_all(&vec![0u8; 300_000]).await.expect("write");
        let pool = MemoryPool::new(100_000);
        let mut s = PduStream::new(b, 16 * 1024).charged_to(&pool);
        let err = s
            .read(Duration::from_secs(5))
            .await
            .expect_err("over the pool");
        assert!(matches!(err, PduError::OutOfMemory(_)), "{err}");
        drop(s);
        assert_eq!(pool.in_use(), 0, "the charge goes back with the stream");
    }

    #[tokio::test]
    async fn a_trickled_pdu_misses_its_deadline() {
        let (mut a, b) = tokio::io::duplex(1024);
        let mut s = PduStream::new(b, 16 * 1024);
        let writer = tokio::spawn(async move {
            for byte in [0x05u8, 0, 0, 0, 0, 4, 0, 0, 0, 0] {
                if a.write_all(&[byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        // Every byte comes well within 300 ms of the last; the PDU does not.
        let err = s
            .read(Duration::from_millis(300))
            .await
            .expect_err("deadline");
        assert!(matches!(err, PduError::Timeout(_)), "{err}");
        writer.abort();
    }

    #[tokio::test]
    async fn fragments_round_trip() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut tx = PduStream::new(a, 16 * 1024);
        let mut rx = PduStream::new(b, 16 * 1024);
        let payload: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
        tx.send_message_part(3, PDataValueType::Data, &payload, 16 * 1024)
            .await
            .expect("send");
        let mut got = Vec::new();
        loop {
            let Pdu::PData { data } = rx.read(Duration::from_secs(1)).await.expect("read") else {
                panic!("expected P-DATA");
            };
            let last = data.iter().any(|v| v.is_last);
            for v in data {
                got.extend(v.data);
            }
            if last {
                break;
            }
        }
        assert_eq!(got, payload);
    }
}
