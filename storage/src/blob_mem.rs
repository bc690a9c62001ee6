//! A blob store in memory, for unit tests of code above the blob store and as the smallest
//! example of a second backend. Incoming instances are still staged in a local file (every
//! backend stages locally: the receiver writes PDU fragments into a file), and `persist`
//! moves the bytes into the map.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use crate::blob::{BlobKey, BlobStore, StagedBlob};
use crate::error::StorageError;

/// Blobs held in a map; staging files in `staging` (removed as blobs are persisted).
#[derive(Debug)]
pub struct MemBlobStore {
    staging: PathBuf,
    blobs: Mutex<HashMap<String, Arc<Vec<u8>>>>,
}

impl MemBlobStore {
    /// A store staging its incoming files in `staging` (created when missing).
    pub fn new(staging: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let staging = staging.into();
        fs::create_dir_all(&staging).map_err(|e| StorageError::io("creating", &staging, e))?;
        Ok(MemBlobStore {
            staging,
            blobs: Mutex::new(HashMap::new()),
        })
    }

    /// Number of stored blobs.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.map().is_empty()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Vec<u8>>>> {
        // A panic while holding the lock cannot leave the map half-changed: every change is
        // one insert or remove.
        self.blobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, key: &BlobKey) -> Result<Arc<Vec<u8>>, StorageError> {
        self.map().get(&key.0).cloned().ok_or_else(|| {
            StorageError::io(
                "opening",
                key.0.as_str(),
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )
        })
    }
}

/// A reader over shared bytes from `pos`, at most up to `end`.
struct SharedReader {
    bytes: Arc<Vec<u8>>,
    pos: usize,
    end: usize,
}

impl Read for SharedReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let rest = self.bytes.get(self.pos..self.end).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

impl BlobStore for MemBlobStore {
    fn stage(&self) -> Result<StagedBlob, StorageError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let path = self.staging.join(format!("{id}.part"));
        crate::blob::stage_file(path, BlobKey(format!("mem/{id}")))
    }

    fn persist(&self, staged: StagedBlob) -> Result<BlobKey, StorageError> {
        let StagedBlob { path, file, key } = staged;
        drop(file);
        let bytes = fs::read(&path).map_err(|e| StorageError::io("reading", &path, e));
        let _ = fs::remove_file(&path);
        self.map().insert(key.0.clone(), Arc::new(bytes?));
        Ok(key)
    }

    fn discard(&self, staged: StagedBlob) {
        drop(staged.file);
        let _ = fs::remove_file(&staged.path);
    }

    fn open(&self, key: &BlobKey) -> Result<Box<dyn Read + Send>, StorageError> {
        let bytes = self.get(key)?;
        let end = bytes.len();
        Ok(Box::new(SharedReader { bytes, pos: 0, end }))
    }

    fn open_range(
        &self,
        key: &BlobKey,
        offset: u64,
        len: u64,
    ) -> Result<Box<dyn Read + Send>, StorageError> {
        let bytes = self.get(key)?;
        let size = bytes.len();
        let pos = usize::try_from(offset).unwrap_or(usize::MAX).min(size);
        let end = pos
            .saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
            .min(size);
        Ok(Box::new(SharedReader { bytes, pos, end }))
    }

    fn local_path(&self, _key: &BlobKey) -> Option<PathBuf> {
        None
    }

    fn delete(&self, key: &BlobKey) -> Result<(), StorageError> {
        self.map().remove(&key.0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::FsBlobStore;
    use std::io::Write;

    fn read_all(mut r: Box<dyn Read + Send>) -> Vec<u8> {
        let mut out = Vec::new();
        r.read_to_end(&mut out).expect("read");
        out
    }

    fn put(store: &dyn BlobStore, bytes: &[u8]) -> BlobKey {
        let mut staged = store.stage().expect("stage");
        staged.file.write_all(bytes).expect("write");
        store.persist(staged).expect("persist")
    }

    /// Both backends answer whole reads, ranges (inside, across and past the end) and deletes
    /// alike; the staging file is gone after persist.
    #[test]
    fn memory_and_file_stores_read_ranges_alike() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mem = MemBlobStore::new(dir.path().join("staging")).expect("mem");
        let fs_store = FsBlobStore::open(dir.path().join("fs")).expect("fs");
        let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        for store in [&mem as &dyn BlobStore, &fs_store] {
            let key = put(store, &data);
            assert_eq!(read_all(store.open(&key).expect("open")), data);
            for (offset, len) in [(0, 10), (9_990, 100), (128, 0), (20_000, 5), (5_000, 5_000)] {
                let got = read_all(store.open_range(&key, offset, len).expect("range"));
                let start = (offset as usize).min(data.len());
                let end = (start + len as usize).min(data.len());
                assert_eq!(got, data[start..end], "{offset}+{len}");
            }
            store.delete(&key).expect("delete");
            assert!(store.open(&key).is_err());
        }
        assert!(mem.is_empty());
        let staged_left = fs::read_dir(dir.path().join("staging"))
            .expect("staging dir")
            .count();
        assert_eq!(staged_left, 0);
    }

    /// The trait's default range read (used by stores that cannot seek, e.g. encrypted ones).
    #[test]
    fn default_range_read_skips_and_limits() {
        struct Plain(MemBlobStore);
        impl BlobStore for Plain {
            fn stage(&self) -> Result<StagedBlob, StorageError> {
                self.0.stage()
            }
            fn persist(&self, s: StagedBlob) -> Result<BlobKey, StorageError> {
                self.0.persist(s)
            }
            fn discard(&self, s: StagedBlob) {
                self.0.discard(s)
            }
            fn open(&self, key: &BlobKey) -> Result<Box<dyn Read + Send>, StorageError> {
                self.0.open(key)
            }
            fn local_path(&self, key: &BlobKey) -> Option<PathBuf> {
                self.0.local_path(key)
            }
            fn delete(&self, key: &BlobKey) -> Result<(), StorageError> {
                self.0.delete(key)
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Plain(MemBlobStore::new(dir.path()).expect("mem"));
        let key = put(&store, b"0123456789");
        assert_eq!(read_all(store.open_range(&key, 3, 4).expect("r")), b"3456");
        assert_eq!(read_all(store.open_range(&key, 8, 10).expect("r")), b"89");
        assert!(read_all(store.open_range(&key, 11, 1).expect("r")).is_empty());
    }
}
