//! MLLP framing: `0x0B` message `0x1C 0x0D`. The reader never holds more than the size
//! limit of one frame (plus one read chunk of lookahead), skips a bounded amount of noise
//! before a start block, and gives a message one deadline from its start block on.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

pub const START: u8 = 0x0B;
pub const END: [u8; 2] = [0x1C, 0x0D];
/// Bytes of noise tolerated before a start block (keep-alive newlines, a stray probe).
pub const MAX_NOISE: usize = 4096;
const CHUNK: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("the frame is larger than {limit} bytes")]
    TooLarge {
        limit: usize,
        /// The frame's first bytes (up to the limit), to answer its MSH.
        prefix: Vec<u8>,
    },
    #[error("more than {MAX_NOISE} bytes arrived without an MLLP start block")]
    Noise,
    #[error("no message started within the idle timeout")]
    Idle,
    #[error("the message did not arrive whole within its deadline")]
    Deadline,
    #[error("the peer closed the connection inside a frame")]
    Truncated,
    #[error("reading the connection failed")]
    Io(#[from] std::io::Error),
}

/// Frame wrapping for a reply.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 3);
    out.push(START);
    out.extend_from_slice(message);
    out.extend_from_slice(&END);
    out
}

pub struct FrameReader<R> {
    inner: R,
    max: usize,
    /// The frame being read (never longer than `max`).
    buf: Vec<u8>,
    /// Read but not yet consumed bytes (at most one chunk).
    pending: Vec<u8>,
    chunk: Box<[u8]>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R, max_message_bytes: usize) -> Self {
        FrameReader {
            inner,
            max: max_message_bytes.max(16),
            buf: Vec::new(),
            pending: Vec::new(),
            chunk: vec![0; CHUNK].into_boxed_slice(),
        }
    }

    /// Capacity of the frame buffer: bounded by the limit whatever the peer sends.
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The next frame's content; None when the peer closed between frames. `idle` bounds
    /// the wait for a start block, `deadline` the whole frame after it.
    pub async fn read_frame(
        &mut self,
        idle: Duration,
        deadline: Duration,
    ) -> Result<Option<Vec<u8>>, FrameError> {
        self.buf.clear();
        let mut until = Instant::now() + idle;
        let mut started = false;
        let mut noise = 0usize;
        loop {
            if self.pending.is_empty() {
                let n = match tokio::time::timeout_at(until, self.inner.read(&mut self.chunk)).await
                {
                    Err(_) if started => return Err(FrameError::Deadline),
                    Err(_) => return Err(FrameError::Idle),
                    Ok(r) => r?,
                };
                if n == 0 {
                    return if started {
                        Err(FrameError::Truncated)
                    } else {
                        Ok(None)
                    };
                }
                self.pending.extend_from_slice(&self.chunk[..n]);
            }
            let data = std::mem::take(&mut self.pending);
            let mut i = 0;
            if !started {
                match data.iter().position(|&b| b == START) {
                    Some(p) if noise + p <= MAX_NOISE => {
                        started = true;
                        until = Instant::now() + deadline;
                        i = p + 1;
                    }
                    Some(_) => return Err(FrameError::Noise),
                    None => {
                        noise += data.len();
                        if noise > MAX_NOISE {
                            return Err(FrameError::Noise);
                        }
                        continue;
                    }
                }
            }
            let rest = &data[i..];
            // The end is 0x1C 0x0D; a 0x1C may end one chunk and the 0x0D start the next.
            let end = rest.iter().position(|&b| b == END[0]);
            let take = end.unwrap_or(rest.len());
            self.append(&rest[..take])?;
            if let Some(e) = end {
                match rest.get(e + 1) {
                    Some(&b) if b == END[1] => {
                        self.pending = rest[e + 2..].to_vec();
                        return Ok(Some(std::mem::take(&mut self.buf)));
                    }
                    Some(_) => {
                        // A lone 0x1C inside the frame: keep it as data, go on after it.
                        self.append(&[END[0]])?;
                        self.pending = rest[e + 1..].to_vec();
                    }
                    None => {
                        // Need one more byte to decide.
                        let mut one = [0u8; 1];
                        let n =
                            match tokio::time::timeout_at(until, self.inner.read(&mut one)).await {
                                Err(_) => return Err(FrameError::Deadline),
                                Ok(r) => r?,
                            };
                        if n == 0 {
                            return Err(FrameError::Truncated);
                        }
                        if one[0] == END[1] {
                            return Ok(Some(std::mem::take(&mut self.buf)));
                        }
                        self.append(&[END[0]])?;
                        self.pending = one.to_vec();
                    }
                }
            }
        }
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), FrameError> {
        if self.buf.len() + bytes.len() > self.max {
            let room = self.max - self.buf.len();
            self.grow(room);
            self.buf.extend_from_slice(&bytes[..room]);
            let prefix = std::mem::take(&mut self.buf);
            self.buf = Vec::new();
            return Err(FrameError::TooLarge {
                limit: self.max,
                prefix,
            });
        }
        self.grow(bytes.len());
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// Grow by doubling, but never past the limit.
    fn grow(&mut self, more: usize) {
        let need = self.buf.len() + more;
        if need > self.buf.capacity() {
            let target = need.max(self.buf.capacity() * 2).min(self.max);
            self.buf.reserve_exact(target - self.buf.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn frames_noise_and_pipelining() {
        let mut data = b"\r\n junk".to_vec();
        data.extend(frame(b"MSH|one\x1cx"));
        data.extend(frame(b"MSH|two"));
        let mut r = FrameReader::new(&data[..], 1024);
        assert_eq!(
            r.read_frame(T, T).await.expect("one"),
            Some(b"MSH|one\x1cx".to_vec())
        );
        assert_eq!(
            r.read_frame(T, T).await.expect("two"),
            Some(b"MSH|two".to_vec())
        );
        assert!(r.read_frame(T, T).await.expect("eof").is_none());
        let noise = vec![b'x'; MAX_NOISE + 1];
        let mut r = FrameReader::new(&noise[..], 1024);
        assert!(matches!(r.read_frame(T, T).await, Err(FrameError::Noise)));
        let mut r = FrameReader::new(&b"\x0bMSH|cut"[..], 1024);
        assert!(matches!(
            r.read_frame(T, T).await,
            Err(FrameError::Truncated)
        ));
    }

    #[tokio::test]
    async fn a_ten_megabyte_frame_is_refused_within_the_limit() {
        let mut big = vec![START];
        big.extend(b"MSH|^~\\&|RIS|H|||||ORM^O01|C1|P|2.3\r");
        big.resize(10 * 1024 * 1024, b'A');
        big.extend(END);
        let limit = 64 * 1024;
        let mut r = FrameReader::new(&big[..], limit);
        match r.read_frame(T, T).await {
            Err(FrameError::TooLarge { prefix, .. }) => {
                assert_eq!(prefix.len(), limit);
                assert!(prefix.capacity() <= limit);
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert!(r.buffer_capacity() <= limit);
    }

    #[tokio::test]
    async fn a_frame_that_stops_coming_hits_its_deadline() {
        let (mut client, server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, b"\x0bMSH|")
            .await
            .expect("write");
        let mut r = FrameReader::new(server, 1024);
        let started = std::time::Instant::now();
        let e = r.read_frame(T, Duration::from_millis(200)).await;
        assert!(matches!(e, Err(FrameError::Deadline)), "{e:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        let (_client, server) = tokio::io::duplex(64);
        let mut r = FrameReader::new(server, 1024);
        let e = r.read_frame(Duration::from_millis(100), T).await;
        assert!(matches!(e, Err(FrameError::Idle)), "{e:?}");
    }
}
