//! Blob store: one file per instance. New blobs are staged in a temp file, fsynced, then
//! renamed into place under a fresh unique key.
//!
//! WARNING: blob before index. A blob is made durable before the index batch that refers to
//! it is committed; a crash in between leaves an unreferenced file, never an index entry
//! without its file. Staging leftovers are removed at open.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

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

/// A blob being written: a local file the caller fills before `persist`, and the key it will
/// have once persisted.
#[derive(Debug)]
pub struct StagedBlob {
    pub path: PathBuf,
    pub file: File,
    pub key: BlobKey,
}

/// Where the blobs are when they are not local files: the `[blobs]` section (used by
/// `blob_s3`).
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    /// `s3://bucket/prefix`.
    pub url: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub allow_http: bool,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
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
    /// Read at most `len` bytes of a stored blob from `offset` (a frame or bulk value of a
    /// large instance). The default reads and drops what comes before; a store that can seek
    /// or ask for a byte range does that instead.
    fn open_range(
        &self,
        key: &BlobKey,
        offset: u64,
        len: u64,
    ) -> Result<Box<dyn Read + Send>, StorageError> {
        let mut reader = self.open(key)?;
        let skipped = std::io::copy(&mut (&mut reader).take(offset), &mut std::io::sink())
            .map_err(|e| StorageError::io("reading", key.0.as_str(), e))?;
        if skipped < offset {
            return Ok(Box::new(std::io::empty()));
        }
        Ok(Box::new(reader.take(len)))
    }
    /// A local path for the blob when the store is on this machine (for zero-copy serving).
    fn local_path(&self, key: &BlobKey) -> Option<PathBuf>;
    /// Remove a stored blob (after the index no longer refers to it).
    fn delete(&self, key: &BlobKey) -> Result<(), StorageError>;
    /// Every stored blob with its last change (ms since the epoch), for the orphan sweep.
    fn list(&self) -> Result<Vec<(BlobKey, u64)>, StorageError> {
        Err(StorageError::io(
            "listing",
            "",
            std::io::Error::other("this blob store cannot list its blobs"),
        ))
    }
}

fn modified_ms(meta: &fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A new staging file at `path` (never an existing one) for the blob to be kept as `key`.
pub(crate) fn stage_file(path: PathBuf, key: BlobKey) -> Result<StagedBlob, StorageError> {
    let file = File::options()
        .write(true)
        .read(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| StorageError::io("creating", &path, e))?;
    Ok(StagedBlob { path, file, key })
}

/// Staged files younger than this at start-up are left alone by the sweep.
const SWEEP_MARGIN: std::time::Duration = std::time::Duration::from_secs(60);

/// Extension of a staged (not yet durable) blob file.
const STAGED_EXT: &str = "part";

/// Blob store on the local filesystem: `<root>/blobs/ab/<uuid>.dcm` (256 directories: enough
/// to keep directories small, few enough that new instances rarely need a new directory).
///
/// A blob is staged as `<uuid>.part` in its final directory and renamed when durable. Staging
/// beside the destination (rather than in one temp directory) keeps the rename in one
/// directory and spreads inode allocation: with one busy temp directory, ext4 spent a fifth of
/// the ingest CPU time looking for a free inode there.
#[derive(Debug)]
pub struct FsBlobStore {
    root: PathBuf,
}

impl FsBlobStore {
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let blobs = root.into().join("blobs");
        fs::create_dir_all(&blobs).map_err(|e| StorageError::io("creating", &blobs, e))?;
        // Staged files left by a crash were never acknowledged: remove them in the background
        // (a large archive has many directories) without touching blobs staged from now on.
        // File times come from a coarse clock, so only files clearly older than this start
        // are taken; younger leftovers go at the next start.
        let started = SystemTime::now() - SWEEP_MARGIN;
        let sweep_root = blobs.clone();
        let _ = std::thread::Builder::new()
            .name("blob-sweep".into())
            .spawn(move || {
                let removed = sweep_staged(&sweep_root, started);
                if removed > 0 {
                    tracing::info!(removed, "removed staged files left by an interrupted run");
                }
            });
        Ok(FsBlobStore { root: blobs })
    }

    /// The blobs of an existing store, for reading beside a running server (`pacs verify`):
    /// nothing is created and no staged file is swept.
    pub fn open_existing(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let blobs = root.into().join("blobs");
        if !blobs.is_dir() {
            return Err(StorageError::io(
                "opening",
                &blobs,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
        Ok(FsBlobStore { root: blobs })
    }

    fn path_of(&self, key: &BlobKey) -> PathBuf {
        self.root.join(&key.0)
    }
}

/// Remove `*.part` files older than `before` in the blob directories.
pub(crate) fn sweep_staged(root: &Path, before: SystemTime) -> usize {
    let mut removed = 0;
    let dirs = |p: &Path| -> Vec<PathBuf> {
        fs::read_dir(p)
            .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    for dir in dirs(root) {
        for file in dirs(&dir) {
            let staged = file.extension().is_some_and(|e| e == STAGED_EXT);
            let old = fs::metadata(&file)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < before);
            if staged && old && fs::remove_file(&file).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

fn fsync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io("syncing directory", dir, e))
}

impl BlobStore for FsBlobStore {
    fn list(&self) -> Result<Vec<(BlobKey, u64)>, StorageError> {
        let read = |dir: &Path| fs::read_dir(dir).map_err(|e| StorageError::io("listing", dir, e));
        let mut out = Vec::new();
        for shard in read(&self.root)? {
            let shard = shard.map_err(|e| StorageError::io("listing", &self.root, e))?;
            let name = shard.file_name().to_string_lossy().into_owned();
            if !shard.path().is_dir() || name.len() != 2 {
                continue;
            }
            for file in read(&shard.path())? {
                let file = file.map_err(|e| StorageError::io("listing", shard.path(), e))?;
                let file_name = file.file_name().to_string_lossy().into_owned();
                // Stored blobs only: staging files are swept at start.
                if !file_name.ends_with(".dcm") {
                    continue;
                }
                let meta = file
                    .metadata()
                    .map_err(|e| StorageError::io("listing", file.path(), e))?;
                out.push((BlobKey(format!("{name}/{file_name}")), modified_ms(&meta)));
            }
        }
        Ok(out)
    }

    fn stage(&self) -> Result<StagedBlob, StorageError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = self.root.join(&id[0..2]);
        fs::create_dir_all(&dir).map_err(|e| StorageError::io("creating", &dir, e))?;
        let path = dir.join(format!("{id}.{STAGED_EXT}"));
        let key = BlobKey(format!("{}/{id}.dcm", &id[0..2]));
        stage_file(path, key)
    }

    fn persist(&self, staged: StagedBlob) -> Result<BlobKey, StorageError> {
        let StagedBlob { path, file, key } = staged;
        let dest = self.path_of(&key);
        let result = file
            .sync_all()
            .map_err(|e| StorageError::io("syncing", &path, e))
            .and_then(|()| {
                drop(file);
                fs::rename(&path, &dest).map_err(|e| StorageError::io("renaming into", &dest, e))
            })
            .and_then(|()| fsync_dir(dest.parent().unwrap_or(&self.root)));
        match result {
            Ok(()) => Ok(key),
            Err(e) => {
                let _ = fs::remove_file(&path);
                Err(e)
            }
        }
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

    fn open_range(
        &self,
        key: &BlobKey,
        offset: u64,
        len: u64,
    ) -> Result<Box<dyn Read + Send>, StorageError> {
        use std::io::{Seek, SeekFrom};
        let path = self.path_of(key);
        let mut f = File::open(&path).map_err(|e| StorageError::io("opening", &path, e))?;
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| StorageError::io("seeking in", &path, e))?;
        Ok(Box::new(f.take(len)))
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
    fn staged_blob_persists_with_its_bytes_and_leftovers_are_swept() -> Result<(), StorageError> {
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
        assert_eq!(
            sweep_staged(&dir.path().join("blobs"), SystemTime::UNIX_EPOCH),
            0
        );
        let later = SystemTime::now() + std::time::Duration::from_secs(1);
        assert_eq!(sweep_staged(&dir.path().join("blobs"), later), 1);
        assert!(!leftover_path.exists());
        assert!(
            store.local_path(&key).is_some_and(|p| p.exists()),
            "durable blobs stay"
        );
        Ok(())
    }
}
