//! Integrity of stored blobs (HIPAA §164.312(c)): each instance's SHA-256 is recorded at
//! ingest, and `check` compares a blob on disk with its index record.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::blob::BlobStore;
use crate::records::InstanceRecord;

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// SHA-256 (hex) and length of everything `reader` yields.
pub fn sha256_of(mut reader: impl Read) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex(&hasher.finalize()), total))
}

/// SHA-256 (hex) and length of a file.
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    sha256_of(std::fs::File::open(path)?)
}

/// What is wrong with one stored instance's blob.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntegrityProblem {
    #[error("blob {0} is missing")]
    Missing(String),
    #[error("blob {key} cannot be read: {reason}")]
    Unreadable { key: String, reason: String },
    #[error("blob {key} changed size: {recorded} bytes recorded, {found} on disk")]
    SizeChanged {
        key: String,
        recorded: u64,
        found: u64,
    },
    #[error("blob {key} changed content: SHA-256 {found}, {recorded} recorded")]
    ContentChanged {
        key: String,
        recorded: String,
        found: String,
    },
    #[error("blob {0} has no recorded checksum (stored before integrity checks)")]
    NoChecksum(String),
}

/// Compare one instance's blob with its record.
pub fn check(blobs: &dyn BlobStore, record: &InstanceRecord) -> Result<(), IntegrityProblem> {
    let key = record.blob.0.clone();
    let reader = match blobs.open(&record.blob) {
        Ok(r) => r,
        Err(crate::StorageError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            return Err(IntegrityProblem::Missing(key))
        }
        Err(e) => {
            return Err(IntegrityProblem::Unreadable {
                key,
                reason: e.to_string(),
            })
        }
    };
    let (found, size) = sha256_of(reader).map_err(|e| IntegrityProblem::Unreadable {
        key: key.clone(),
        reason: e.to_string(),
    })?;
    if size != record.size {
        return Err(IntegrityProblem::SizeChanged {
            key,
            recorded: record.size,
            found: size,
        });
    }
    match &record.sha256 {
        None => Err(IntegrityProblem::NoChecksum(key)),
        Some(recorded) if *recorded != found => Err(IntegrityProblem::ContentChanged {
            key,
            recorded: recorded.clone(),
            found,
        }),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_input() -> std::io::Result<()> {
        let (h, n) = sha256_of(&b"abc"[..])?;
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(n, 3);
        Ok(())
    }
}
