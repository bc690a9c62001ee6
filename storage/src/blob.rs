//! Blob store: one file per instance. New blobs are staged in a temp file, fsynced, then
//! renamed into place under a fresh unique key.
//!
//! WARNING: blob before index. A blob is made durable before the index batch that refers to
//! it is committed; a crash in between leaves an unreferenced file, never an index entry
//! without its file. Staging leftovers are removed at open.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::StorageError;

/// Where a blob lives, relative to the store (for the filesystem store: a relative path).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BlobKey(pub String);

impl std::fmt::Display for BlobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A blob being written: a local temp file the caller fills before `persist`.
#[derive(Debug)]
pub struct StagedBlob {
    pub path: PathBuf,
    pub file: File,
}

/// Storage of instance files, independent of the index.
pub trait BlobStore: Send + Sync {
    /// A new empty staging file to write an incoming instance into.
    fn stage(&self) -> Result<StagedBlob, StorageError>;
    /// Make a fully written staged blob durable and return its key.
    fn persist(&self, staged: StagedBlob) -> Result<BlobKey, StorageError>;
    /// Drop a staged blob that will not be kept.
    fn discard(&self, staged: StagedBlob);
    /// Read a stored blob from its start.
    fn open(&self, key: &BlobKey) -> Result<Box<dyn Read + Send>, StorageError>;
    /// A local path for the blob when the store is on this machine (for zero-copy serving).
    fn local_path(&self, key: &BlobKey) -> Option<PathBuf>;
    /// Remove a stored blob (after the index no longer refers to it).
    fn delete(&self, key: &BlobKey) -> Result<(), StorageError>;
}

/// Blob store on the local filesystem: `<root>/blobs/ab/cd/<uuid>.dcm`, staging in `<root>/tmp`.
#[derive(Debug)]
pub struct FsBlobStore {
    root: PathBuf,
    tmp: PathBuf,
}

impl FsBlobStore {
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        let blobs = root.join("blobs");
        let tmp = root.join("tmp");
        fs::create_dir_all(&blobs).map_err(|e| StorageError::io("creating", &blobs, e))?;
        // Anything left in tmp is from an interrupted write and was never acknowledged.
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| StorageError::io("clearing", &tmp, e))?;
        }
        fs::create_dir_all(&tmp).map_err(|e| StorageError::io("creating", &tmp, e))?;
        Ok(FsBlobStore { root: blobs, tmp })
    }

    fn path_of(&self, key: &BlobKey) -> PathBuf {
        self.root.join(&key.0)
    }
}

fn fsync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io("syncing directory", dir, e))
}

impl BlobStore for FsBlobStore {
    fn stage(&self) -> Result<StagedBlob, StorageError> {
        let path = self
            .tmp
            .join(format!("{}.part", uuid::Uuid::new_v4().simple()));
        let file = File::options()
            .write(true)
            .read(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| StorageError::io("creating", &path, e))?;
        Ok(StagedBlob { path, file })
    }

    fn persist(&self, staged: StagedBlob) -> Result<BlobKey, StorageError> {
        let StagedBlob { path, file } = staged;
        let result = (|| {
            file.sync_all()
                .map_err(|e| StorageError::io("syncing", &path, e))?;
            drop(file);
            let id = uuid::Uuid::new_v4().simple().to_string();
            let key = BlobKey(format!("{}/{}/{}.dcm", &id[0..2], &id[2..4], id));
            let dest = self.path_of(&key);
            let dir = dest.parent().unwrap_or(&self.root).to_path_buf();
            if !dir.exists() {
                fs::create_dir_all(&dir).map_err(|e| StorageError::io("creating", &dir, e))?;
            }
            fs::rename(&path, &dest).map_err(|e| StorageError::io("renaming into", &dest, e))?;
            fsync_dir(&dir)?;
            Ok(key)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&path);
        }
        result
    }

    fn discard(&self, staged: StagedBlob) {
        drop(staged.file);
        if let Err(e) = fs::remove_file(&staged.path) {
            tracing::warn!(path = %staged.path.display(), error = %e, "could not remove staged blob");
        }
    }

    fn open(&self, key: &BlobKey) -> Result<Box<dyn Read + Send>, StorageError> {
        let path = self.path_of(key);
        let f = File::open(&path).map_err(|e| StorageError::io("opening", &path, e))?;
        Ok(Box::new(f))
    }

    fn local_path(&self, key: &BlobKey) -> Option<PathBuf> {
        Some(self.path_of(key))
    }

    fn delete(&self, key: &BlobKey) -> Result<(), StorageError> {
        let path = self.path_of(key);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io("deleting", &path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn staged_blob_persists_with_its_bytes_and_tmp_is_cleared_on_open() -> Result<(), StorageError>
    {
        let dir = tempfile::tempdir().map_err(|e| StorageError::io("tempdir", "", e))?;
        let store = FsBlobStore::open(dir.path())?;
        let mut staged = store.stage()?;
        staged
            .file
            .write_all(b"hello")
            .map_err(|e| StorageError::io("w", "", e))?;
        let key = store.persist(staged)?;
        let mut s = String::new();
        store
            .open(&key)?
            .read_to_string(&mut s)
            .map_err(|e| StorageError::io("r", "", e))?;
        assert_eq!(s, "hello");

        let leftover = store.stage()?;
        let leftover_path = leftover.path.clone();
        drop(leftover);
        let _store = FsBlobStore::open(dir.path())?;
        assert!(!leftover_path.exists());
        Ok(())
    }
}
