//! Encryption at rest for blob files (AES-256-GCM), as a wrapper around any [`BlobStore`].
//!
//! Layout of an encrypted blob: `PACSAES1` (8 bytes), a random 8-byte nonce prefix, then the
//! plaintext in 64 KiB chunks, each sealed on its own (ciphertext + 16-byte tag) with the
//! nonce `prefix || chunk number (u32 BE)` and one byte of associated data saying whether it
//! is the last chunk. A final chunk is always written (empty when the size is a multiple of
//! the chunk), so cutting the file at a chunk boundary, reordering or swapping chunks all fail
//! authentication. Reading streams chunk by chunk; files without the magic (stored before
//! encryption was turned on) are read as they are.
//!
//! The staged file is plaintext while an instance is being received; `persist` seals it into
//! a sibling file, syncs it and replaces the staged file before the inner store persists it.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

use crate::blob::{BlobKey, BlobStore, StagedBlob};
use crate::error::StorageError;

const MAGIC: &[u8; 8] = b"PACSAES1";
const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;

/// A 256-bit key, from a file (32 raw bytes, or 64 hex digits) or the environment.
#[derive(Clone)]
pub struct BlobKeyMaterial([u8; 32]);

impl std::fmt::Debug for BlobKeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlobKeyMaterial(..)")
    }
}

impl BlobKeyMaterial {
    /// 64 hex digits (surrounding whitespace ignored) or exactly 32 raw bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, StorageError> {
        let text = std::str::from_utf8(bytes).map(str::trim).unwrap_or("");
        let mut key = [0u8; 32];
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            for (i, k) in key.iter_mut().enumerate() {
                *k = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                    .map_err(|_| StorageError::BadKey("not hex".into()))?;
            }
            return Ok(BlobKeyMaterial(key));
        }
        if bytes.len() == 32 {
            key.copy_from_slice(bytes);
            return Ok(BlobKeyMaterial(key));
        }
        Err(StorageError::BadKey(
            "an AES-256 key is 64 hex digits or 32 raw bytes".into(),
        ))
    }

    pub(crate) fn bytes(&self) -> [u8; 32] {
        self.0
    }

    pub fn from_file(path: &Path) -> Result<Self, StorageError> {
        let bytes = std::fs::read(path).map_err(|e| StorageError::io("reading key", path, e))?;
        Self::parse(&bytes)
    }
}

fn nonce(prefix: &[u8; 8], n: u32) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..8].copy_from_slice(prefix);
    out[8..].copy_from_slice(&n.to_be_bytes());
    out
}

fn crypto_error(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

/// Seal everything `input` yields into `output`.
pub fn encrypt(
    cipher: &Aes256Gcm,
    mut input: impl Read,
    output: &mut impl Write,
) -> std::io::Result<()> {
    let mut prefix = [0u8; 8];
    getrandom::getrandom(&mut prefix).map_err(|e| std::io::Error::other(e.to_string()))?;
    output.write_all(MAGIC)?;
    output.write_all(&prefix)?;
    let mut buf = vec![0u8; CHUNK];
    let mut n: u32 = 0;
    loop {
        let filled = read_full(&mut input, &mut buf)?;
        // A full chunk may be followed by more; the sealed last chunk is always short.
        let last = filled < CHUNK;
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce(&prefix, n)),
                Payload {
                    msg: &buf[..filled],
                    aad: &[u8::from(last)],
                },
            )
            .map_err(|_| crypto_error("encryption failed"))?;
        output.write_all(&sealed)?;
        if last {
            return Ok(());
        }
        n = n
            .checked_add(1)
            .ok_or_else(|| crypto_error("blob too large to encrypt"))?;
    }
}

/// Fill `buf` as far as the reader allows; the count read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Streams the plaintext of a sealed blob; any tampering is an `InvalidData` error.
pub struct DecryptingReader<R> {
    inner: R,
    cipher: Aes256Gcm,
    prefix: [u8; 8],
    n: u32,
    sealed: Vec<u8>,
    plain: Vec<u8>,
    pos: usize,
    done: bool,
}

impl<R: Read> DecryptingReader<R> {
    /// `inner` is positioned just after the magic.
    fn new(mut inner: R, cipher: Aes256Gcm) -> std::io::Result<Self> {
        let mut prefix = [0u8; 8];
        inner.read_exact(&mut prefix)?;
        Ok(DecryptingReader {
            inner,
            cipher,
            prefix,
            n: 0,
            sealed: vec![0u8; CHUNK + TAG],
            plain: Vec::new(),
            pos: 0,
            done: false,
        })
    }

    fn next_chunk(&mut self) -> std::io::Result<()> {
        let got = read_full(&mut self.inner, &mut self.sealed)?;
        let last = got < CHUNK + TAG;
        if got < TAG {
            return Err(crypto_error("encrypted blob is truncated"));
        }
        self.plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(&nonce(&self.prefix, self.n)),
                Payload {
                    msg: &self.sealed[..got],
                    aad: &[u8::from(last)],
                },
            )
            .map_err(|_| {
                crypto_error(
                    "encrypted blob failed authentication (altered, truncated or wrong key)",
                )
            })?;
        self.pos = 0;
        self.done = last;
        self.n = self.n.wrapping_add(1);
        Ok(())
    }
}

impl<R: Read> Read for DecryptingReader<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.plain.len() {
            if self.done {
                return Ok(0);
            }
            self.next_chunk()?;
        }
        let k = out.len().min(self.plain.len() - self.pos);
        out[..k].copy_from_slice(&self.plain[self.pos..self.pos + k]);
        self.pos += k;
        Ok(k)
    }
}

/// A [`BlobStore`] whose files are sealed with AES-256-GCM.
pub struct EncryptedBlobStore {
    inner: Arc<dyn BlobStore>,
    cipher: Aes256Gcm,
}

impl EncryptedBlobStore {
    pub fn new(inner: Arc<dyn BlobStore>, key: &BlobKeyMaterial) -> Self {
        EncryptedBlobStore {
            inner,
            cipher: Aes256Gcm::new(&key.0.into()),
        }
    }
}

/// Open a stored blob for reading: decrypting when sealed, as stored otherwise.
pub fn open_maybe_sealed(
    mut reader: Box<dyn Read + Send>,
    cipher: Option<&Aes256Gcm>,
) -> Result<Box<dyn Read + Send>, std::io::Error> {
    let mut head = [0u8; 8];
    let got = read_full(&mut reader, &mut head)?;
    if got == 8 && &head == MAGIC {
        let cipher = cipher
            .ok_or_else(|| crypto_error("blob is encrypted but no blob key is configured"))?;
        return Ok(Box::new(DecryptingReader::new(reader, cipher.clone())?));
    }
    // Plaintext (stored before encryption): give back the bytes we peeked at.
    Ok(Box::new(
        std::io::Cursor::new(head[..got].to_vec()).chain(reader),
    ))
}

impl BlobStore for EncryptedBlobStore {
    fn stage(&self) -> Result<StagedBlob, StorageError> {
        self.inner.stage()
    }

    fn list(&self) -> Result<Vec<(BlobKey, u64)>, StorageError> {
        self.inner.list()
    }

    fn persist(&self, staged: StagedBlob) -> Result<BlobKey, StorageError> {
        let StagedBlob { path, file, key } = staged;
        drop(file);
        let sealed_path: PathBuf = path.with_extension("sealing");
        let sealed = (|| -> std::io::Result<File> {
            let plain = BufReader::with_capacity(CHUNK, File::open(&path)?);
            let out = File::options()
                .write(true)
                .read(true)
                .create_new(true)
                .open(&sealed_path)?;
            let mut w = BufWriter::with_capacity(CHUNK + TAG, out);
            encrypt(&self.cipher, plain, &mut w)?;
            let out = w.into_inner().map_err(|e| e.into_error())?;
            std::fs::rename(&sealed_path, &path)?;
            Ok(out)
        })();
        match sealed {
            Ok(file) => self.inner.persist(StagedBlob { path, file, key }),
            Err(e) => {
                let _ = std::fs::remove_file(&sealed_path);
                let _ = std::fs::remove_file(&path);
                Err(StorageError::io("encrypting", &path, e))
            }
        }
    }

    fn discard(&self, staged: StagedBlob) {
        self.inner.discard(staged)
    }

    fn open(&self, key: &BlobKey) -> Result<Box<dyn Read + Send>, StorageError> {
        let raw = self.inner.open(key)?;
        open_maybe_sealed(raw, Some(&self.cipher))
            .map_err(|e| StorageError::io("decrypting", Path::new(&key.0), e))
    }

    /// Sealed files cannot be served as they are on disk.
    fn local_path(&self, _key: &BlobKey) -> Option<PathBuf> {
        None
    }

    fn delete(&self, key: &BlobKey) -> Result<(), StorageError> {
        self.inner.delete(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher() -> Aes256Gcm {
        Aes256Gcm::new(&[7u8; 32].into())
    }

    fn roundtrip(len: usize) -> Vec<u8> {
        let plain: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let mut sealed = Vec::new();
        encrypt(&cipher(), &plain[..], &mut sealed).expect("encrypt");
        assert_eq!(&sealed[..8], MAGIC);
        let c = cipher();
        let mut r = open_maybe_sealed(Box::new(std::io::Cursor::new(sealed.clone())), Some(&c))
            .expect("open");
        let mut back = Vec::new();
        r.read_to_end(&mut back).expect("decrypt");
        assert_eq!(back, plain, "length {len}");
        sealed
    }

    #[test]
    fn round_trips_at_chunk_edges() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 17] {
            roundtrip(len);
        }
    }

    fn fails(sealed: Vec<u8>) -> bool {
        let c = cipher();
        match open_maybe_sealed(Box::new(std::io::Cursor::new(sealed)), Some(&c)) {
            Err(_) => true,
            Ok(mut r) => r.read_to_end(&mut Vec::new()).is_err(),
        }
    }

    #[test]
    fn altered_truncated_or_wrong_key_blobs_fail() {
        let sealed = roundtrip(2 * CHUNK + 100);
        let mut flipped = sealed.clone();
        flipped[CHUNK + 40] ^= 1;
        assert!(fails(flipped), "bit flip");
        // Cut exactly after the first sealed chunk: looks complete but has no last chunk.
        assert!(
            fails(sealed[..16 + CHUNK + TAG].to_vec()),
            "cut at a chunk boundary"
        );
        assert!(
            fails(sealed[..sealed.len() - 1].to_vec()),
            "cut inside the last chunk"
        );
        let wrong = Aes256Gcm::new(&[8u8; 32].into());
        let mut r = open_maybe_sealed(Box::new(std::io::Cursor::new(sealed)), Some(&wrong))
            .expect("header");
        assert!(r.read_to_end(&mut Vec::new()).is_err(), "wrong key");
    }

    #[test]
    fn plaintext_blobs_read_as_stored_and_keys_parse() -> Result<(), StorageError> {
        let mut r = open_maybe_sealed(Box::new(&b"DICM plain file"[..]), Some(&cipher()))
            .map_err(|e| StorageError::io("t", Path::new("t"), e))?;
        let mut s = String::new();
        r.read_to_string(&mut s)
            .map_err(|e| StorageError::io("t", Path::new("t"), e))?;
        assert_eq!(s, "DICM plain file");
        assert!(BlobKeyMaterial::parse(&[1u8; 32]).is_ok());
        assert!(BlobKeyMaterial::parse("ab".repeat(32).as_bytes()).is_ok());
        assert!(BlobKeyMaterial::parse(b"short").is_err());
        Ok(())
    }
}
