//! PDU framing over a TCP stream (PS3.8 9.3). We find PDU boundaries ourselves, check the
//! length against our limit before buffering, then let dicom-ul decode the complete PDU.
//! Each outgoing PDU is encoded by dicom-ul and written with one `write_all`.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use dicom_ul::pdu::{read_pdu, write_pdu, PDataValue, PDataValueType, Pdu, MAXIMUM_PDU_SIZE};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const HEADER: usize = 6;
/// A-ASSOCIATE-RQ may be larger than the negotiated P-DATA size (128 presentation contexts).
const MAX_ASSOCIATE_RQ: u32 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PduError {
    #[error("peer closed the connection")]
    Closed,
    #[error("timed out after {0:?} waiting for the peer")]
    Timeout(Duration),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("unrecognized PDU type 0x{0:02X}")]
    UnrecognizedType(u8),
    #[error("PDU of {length} bytes exceeds the limit of {limit}")]
    TooLarge { length: u32, limit: u32 },
    #[error("malformed PDU: {0}")]
    Malformed(String),
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

pub struct PduStream<S> {
    stream: S,
    buf: BytesMut,
    /// Largest PDU body we accept once associated (what we announced as Maximum Length).
    max_pdu: u32,
}

impl<S: AsyncRead + AsyncWrite + Unpin> PduStream<S> {
    pub fn new(stream: S, max_pdu: u32) -> Self {
        PduStream {
            stream,
            buf: BytesMut::with_capacity(64 * 1024),
            max_pdu,
        }
    }

    /// Read one complete PDU, waiting at most `timeout` for each chunk of bytes.
    pub async fn read(&mut self, timeout: Duration) -> Result<Pdu, PduError> {
        self.fill(HEADER, timeout).await?;
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
        self.fill(total, timeout).await?;
        let frame = self.buf.split_to(total).freeze();
        match read_pdu(frame, MAXIMUM_PDU_SIZE, false) {
            Ok(Some(pdu)) => Ok(pdu),
            Ok(None) => Err(PduError::Malformed("truncated PDU".into())),
            Err(e) => Err(PduError::Malformed(pacs_storage::error_chain(&e))),
        }
    }

    async fn fill(&mut self, want: usize, timeout: Duration) -> Result<(), PduError> {
        while self.buf.len() < want {
            self.buf.reserve(want - self.buf.len());
            let n = tokio::time::timeout(timeout, self.stream.read_buf(&mut self.buf))
                .await
                .map_err(|_| PduError::Timeout(timeout))??;
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
