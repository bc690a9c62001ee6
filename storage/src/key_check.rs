//! Which blob key an archive's files are sealed with, remembered without keeping the key: the
//! first start with a key writes `<data>/blob-key.check`, a constant sealed under that key
//! (AES-256-GCM with a random nonce, like every blob, so it tells nothing about the key).
//!
//! Without it, a server restarted with another key, or with none, starts as if nothing were
//! wrong: every sealed blob then fails to read (with no key, as "changed content", a false
//! tampering alarm), and new instances are sealed under a key nobody keeps, or written in
//! plaintext onto a volume meant to hold only ciphertext. With it, such a start is refused,
//! saying why.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;

use aes_gcm::{Aes256Gcm, KeyInit};

use crate::blob_crypto::{encrypt, open_maybe_sealed, BlobKeyMaterial};
use crate::error::StorageError;

/// The check file, in the data directory.
pub const CHECK_FILE: &str = "blob-key.check";
const CHECK_PLAINTEXT: &[u8] = b"pacs blob key check, version 1";

/// Whether `key` (or no key) fits the archive in `data_dir`. When `record` is set and the
/// archive has no check file yet, a configured key is recorded as the archive's key.
pub fn check_blob_key(
    data_dir: &Path,
    key: Option<&BlobKeyMaterial>,
    record: bool,
) -> Result<(), StorageError> {
    let path = data_dir.join(CHECK_FILE);
    let sealed = match fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(StorageError::io("reading", &path, e)),
    };
    match (sealed, key) {
        (None, None) => Ok(()),
        (None, Some(key)) if record => write_check(data_dir, &path, key),
        (None, Some(_)) => Ok(()),
        (Some(_), None) => Err(StorageError::BadKey(format!(
            "the blobs of this archive are encrypted ({} exists) but no blob key is configured: \
             set PACS_BLOB_KEY or [encryption] key_file to the archive's key",
            path.display()
        ))),
        (Some(sealed), Some(key)) => {
            if unseal(key, sealed).as_deref() == Some(CHECK_PLAINTEXT) {
                Ok(())
            } else {
                Err(StorageError::BadKey(format!(
                    "the configured blob key is not the key the blobs of this archive are \
                     sealed with (checked against {})",
                    path.display()
                )))
            }
        }
    }
}

fn cipher(key: &BlobKeyMaterial) -> Aes256Gcm {
    Aes256Gcm::new(&key.bytes().into())
}

fn unseal(key: &BlobKeyMaterial, sealed: Vec<u8>) -> Option<Vec<u8>> {
    let c = cipher(key);
    let mut reader = open_maybe_sealed(Box::new(std::io::Cursor::new(sealed)), Some(&c)).ok()?;
    let mut plain = Vec::new();
    reader.read_to_end(&mut plain).ok()?;
    Some(plain)
}

/// Written beside, synced, renamed into place, directory synced: a crash leaves the old state
/// or the new one.
fn write_check(data_dir: &Path, path: &Path, key: &BlobKeyMaterial) -> Result<(), StorageError> {
    let staged = path.with_extension("check.part");
    let io = |e| StorageError::io("writing", path, e);
    let mut sealed = Vec::new();
    encrypt(&cipher(key), CHECK_PLAINTEXT, &mut sealed).map_err(io)?;
    let mut f = fs::File::create(&staged).map_err(io)?;
    f.write_all(&sealed)
        .and_then(|()| f.sync_all())
        .map_err(io)?;
    fs::rename(&staged, path).map_err(io)?;
    fs::File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    tracing::info!(path = %path.display(), "blob key recorded: later starts need the same key");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> BlobKeyMaterial {
        BlobKeyMaterial::parse(&[byte; 32]).expect("key")
    }

    #[test]
    fn the_first_key_is_recorded_and_then_required() -> Result<(), StorageError> {
        let dir =
            tempfile::tempdir().map_err(|e| StorageError::io("tempdir", Path::new("."), e))?;
        let data = dir.path();
        // Plaintext archive: no key, nothing recorded, nothing required.
        check_blob_key(data, None, true)?;
        assert!(!data.join(CHECK_FILE).exists());
        // Read-only callers never record.
        check_blob_key(data, Some(&key(1)), false)?;
        assert!(!data.join(CHECK_FILE).exists());
        check_blob_key(data, Some(&key(1)), true)?;
        assert!(data.join(CHECK_FILE).exists());
        check_blob_key(data, Some(&key(1)), true)?;
        check_blob_key(data, Some(&key(1)), false)?;
        for (other, what) in [(Some(key(2)), "not the key"), (None, "no blob key")] {
            match check_blob_key(data, other.as_ref(), true) {
                Err(StorageError::BadKey(m)) => assert!(m.contains(what), "{m}"),
                r => panic!("{what}: {r:?}"),
            }
        }
        // A damaged check file is no proof of a key either.
        let path = data.join(CHECK_FILE);
        let mut bytes = fs::read(&path).map_err(|e| StorageError::io("read", &path, e))?;
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, bytes).map_err(|e| StorageError::io("write", &path, e))?;
        assert!(check_blob_key(data, Some(&key(1)), true).is_err());
        Ok(())
    }
}
