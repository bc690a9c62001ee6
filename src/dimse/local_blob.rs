//! A stored instance as a local file for the DIMSE senders, which read from paths: the blob
//! itself when the store keeps plain local files, else a decrypted copy in `<data>/tmp`
//! (mode 0600) removed when the send is done. Either way its bytes are first checked against
//! the checksum recorded at ingest.

use std::path::{Path, PathBuf};

use pacs_storage::audit::Interface;
use pacs_storage::integrity::IntegrityProblem;
use pacs_storage::{InstanceRecord, StorageError, Store};

/// Why a stored instance could not be made a local file.
#[derive(Debug, thiserror::Error)]
pub enum LocalBlobError {
    #[error(transparent)]
    Open(#[from] StorageError),
    #[error("instance {sop_instance_uid} not sent: {problem}")]
    Integrity {
        sop_instance_uid: String,
        problem: IntegrityProblem,
    },
    #[error("blob {blob}: {source}")]
    Read {
        blob: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Temporary {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Join(#[from] tokio::task::JoinError),
}

pub struct LocalBlob {
    path: PathBuf,
    temporary: bool,
}

impl LocalBlob {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LocalBlob {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The instance's bytes as a file on this machine, checked against the SHA-256 recorded at
/// ingest first (a changed blob is not sent; the check logs and audits it).
pub async fn local_blob(
    store: &std::sync::Arc<Store>,
    rec: &InstanceRecord,
) -> Result<LocalBlob, LocalBlobError> {
    let store = store.clone();
    let rec = rec.clone();
    tokio::task::spawn_blocking(move || {
        let mut blob = store.open_verified(&rec, Interface::Dimse)?;
        let failed = |e: std::io::Error| match blob_problem(&e) {
            Some(problem) => LocalBlobError::Integrity {
                sop_instance_uid: rec.sop_instance_uid.clone(),
                problem: problem.clone(),
            },
            None => LocalBlobError::Read {
                blob: rec.blob.to_string(),
                source: e,
            },
        };
        if let Some(path) = store.blobs.local_path(&rec.blob) {
            std::io::copy(&mut blob, &mut std::io::sink()).map_err(failed)?;
            return Ok(LocalBlob {
                path,
                temporary: false,
            });
        }
        let dir = store.data_dir().join("tmp");
        std::fs::create_dir_all(&dir).map_err(|source| LocalBlobError::Temporary {
            path: dir.clone(),
            source,
        })?;
        let path = dir.join(format!("{}.dcm", uuid::Uuid::new_v4().simple()));
        let guard = LocalBlob {
            path: path.clone(),
            temporary: true,
        };
        let mut options = std::fs::File::options();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut out = options
            .open(&path)
            .map_err(|source| LocalBlobError::Temporary {
                path: path.clone(),
                source,
            })?;
        std::io::copy(&mut blob, &mut out).map_err(failed)?;
        Ok(guard)
    })
    .await?
}

/// The integrity problem an I/O error from a verified reader carries, if it is one.
fn blob_problem(e: &std::io::Error) -> Option<&IntegrityProblem> {
    e.get_ref()?.downcast_ref::<IntegrityProblem>()
}
