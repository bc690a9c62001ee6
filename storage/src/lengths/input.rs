//! What the walk reads: a byte slice, any reader, or a file passed over by seeking; and
//! the position in it, which defined-length sequences and items end at.

use std::io::{BufRead, BufReader, Read};

use dicom_core::Tag;

use super::LengthError;

/// What the walk reads: headers are read, values passed over.
pub trait Input: Read {
    /// Pass over up to `n` bytes; how many there were.
    fn pass(&mut self, n: u64) -> std::io::Result<u64>;
}

impl Input for &[u8] {
    fn pass(&mut self, n: u64) -> std::io::Result<u64> {
        let k = usize::try_from(n).unwrap_or(usize::MAX).min(self.len());
        *self = &self[k..];
        Ok(k as u64)
    }
}

/// Any reader (an inflated data set), passed over by reading.
pub struct Stream<R>(pub R);

impl<R: Read> Read for Stream<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: Read> Input for Stream<R> {
    fn pass(&mut self, n: u64) -> std::io::Result<u64> {
        std::io::copy(&mut (&mut self.0).take(n), &mut std::io::sink())
    }
}

/// A file, passed over by seeking (pixel data is not read to be checked).
pub(super) struct FileInput {
    pub(super) reader: BufReader<std::fs::File>,
    /// Bytes after the reader's position.
    pub(super) left: u64,
}

impl Read for FileInput {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.reader.read(buf)?;
        self.left = self.left.saturating_sub(n as u64);
        Ok(n)
    }
}

impl BufRead for FileInput {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.reader.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.reader.consume(n);
        self.left = self.left.saturating_sub(n as u64);
    }
}

impl Input for FileInput {
    fn pass(&mut self, n: u64) -> std::io::Result<u64> {
        let k = n.min(self.left);
        self.reader
            .seek_relative(i64::try_from(k).map_err(std::io::Error::other)?)?;
        self.left -= k;
        Ok(k)
    }
}

/// The source and the position in it (which defined-length sequences and items end at).
pub(super) struct Source<'a, R: ?Sized> {
    pub(super) reader: &'a mut R,
    pub(super) pos: u64,
    pub(super) big_endian: bool,
}

impl<R: Input + ?Sized> Source<'_, R> {
    /// `n` bytes, or `None` at the end (where dicom-parser stops, ending or failing).
    pub(super) fn bytes<const N: usize>(&mut self) -> Result<Option<[u8; N]>, LengthError> {
        let mut buf = [0u8; N];
        match self.reader.read_exact(&mut buf) {
            Ok(()) => {
                self.pos += N as u64;
                Ok(Some(buf))
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) fn u16(&self, b: [u8; 2]) -> u16 {
        if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }

    pub(super) fn u32(&self, b: [u8; 4]) -> u32 {
        if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    pub(super) fn tag(&self, b: [u8; 4]) -> Tag {
        Tag(self.u16([b[0], b[1]]), self.u16([b[2], b[3]]))
    }

    /// Pass over a value of `len` bytes, refusing it when fewer follow.
    pub(super) fn skip(&mut self, tag: Tag, len: u32) -> Result<(), LengthError> {
        let passed = self.reader.pass(u64::from(len))?;
        if passed < u64::from(len) {
            return Err(LengthError::PastEnd {
                tag,
                len,
                remaining: passed,
            });
        }
        self.pos += passed;
        Ok(())
    }
}
