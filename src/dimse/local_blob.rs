//! A stored instance as a local file for the DIMSE senders, which read from paths: the blob
//! itself when the store keeps plain local files, else a decrypted copy in `<data>/tmp`
//! (mode 0600) removed when the send is done.

use std::path::{Path, PathBuf};

use pacs_storage::{InstanceRecord, Store};

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

/// The instance's bytes as a file on this machine.
pub async fn local_blob(
    store: &std::sync::Arc<Store>,
    rec: &InstanceRecord,
) -> Result<LocalBlob, String> {
    if let Some(path) = store.blobs.local_path(&rec.blob) {
        return Ok(LocalBlob {
            path,
            temporary: false,
        });
    }
    let store = store.clone();
    let key = rec.blob.clone();
    tokio::task::spawn_blocking(move || {
        let dir = store.data_dir().join("tmp");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
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
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let mut reader = store.blobs.open(&key).map_err(|e| e.to_string())?;
        std::io::copy(&mut reader, &mut out).map_err(|e| format!("blob {key}: {e}"))?;
        Ok(guard)
    })
    .await
    .map_err(|e| e.to_string())?
}
