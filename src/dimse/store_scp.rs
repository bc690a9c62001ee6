//! C-STORE SCP (PS3.4 Annex B): the data set is streamed, fragment by fragment, into a staged
//! Part 10 file, then handed to the storage crate's ingest path. Memory stays bounded by the
//! PDU size whatever the instance size.

use std::path::PathBuf;
use std::sync::Arc;

use pacs_storage::part10::{file_header, FileMetaFields};
use pacs_storage::{
    BlobKey, Expected, IngestError, IngestOutcome, IngestSource, StagedBlob, Store,
};
use tokio::io::{AsyncWriteExt, BufWriter};

use super::command::Command;
use super::status::Status;

const WRITE_BUFFER: usize = 256 * 1024;

/// The answer for one C-STORE.
#[derive(Debug, Clone)]
pub struct StoreResult {
    pub status: Status,
    pub comment: Option<String>,
    pub outcome: Option<IngestOutcome>,
    /// Study and patient of what was stored (audit trail).
    pub study_uid: Option<String>,
    pub patient_id: Option<String>,
}

impl StoreResult {
    fn failed(status: Status, comment: impl Into<String>) -> Self {
        StoreResult {
            status,
            comment: Some(comment.into()),
            outcome: None,
            study_uid: None,
            patient_id: None,
        }
    }
}

/// One instance being received.
pub struct StoreReceiver {
    store: Arc<Store>,
    staged_path: Option<PathBuf>,
    staged_key: Option<BlobKey>,
    writer: Option<BufWriter<tokio::fs::File>>,
    /// The first failure; later fragments are read and dropped so the association stays usable.
    failure: Option<StoreResult>,
    calling_ae: String,
    expected: Expected,
}

impl StoreReceiver {
    /// Stage a file and write the File Meta Information from the command and the context.
    pub async fn begin(
        store: Arc<Store>,
        command: &Command,
        transfer_syntax: &str,
        calling_ae: &str,
    ) -> Self {
        let mut rx = StoreReceiver {
            store: store.clone(),
            staged_path: None,
            staged_key: None,
            writer: None,
            failure: None,
            calling_ae: calling_ae.to_string(),
            expected: Expected {
                sop_instance_uid: command.affected_sop_instance_uid.clone(),
                sop_class_uid: command.affected_sop_class_uid.clone(),
                study_instance_uid: None,
            },
        };
        let (Some(class), Some(instance)) = (
            command.affected_sop_class_uid.clone(),
            command.affected_sop_instance_uid.clone(),
        ) else {
            rx.failure = Some(StoreResult::failed(
                Status::CANNOT_UNDERSTAND,
                "C-STORE-RQ lacks Affected SOP Class/Instance UID",
            ));
            return rx;
        };
        for (attribute, uid) in [
            ("AffectedSOPClassUID (0000,0002)", &class),
            ("AffectedSOPInstanceUID (0000,1000)", &instance),
        ] {
            if !pacs_storage::attrs::is_valid_uid(uid) {
                let e = IngestError::InvalidUid {
                    attribute,
                    value: uid.clone(),
                };
                tracing::warn!(error = %e, calling_ae, "C-STORE refused");
                rx.failure = Some(StoreResult::failed(status_for(&e), e.to_string()));
                return rx;
            }
        }
        let ts = transfer_syntax.to_string();
        let ae = calling_ae.to_string();
        let staged = tokio::task::spawn_blocking(move || -> Result<StagedBlob, String> {
            let header = file_header(&FileMetaFields {
                sop_class_uid: &class,
                sop_instance_uid: &instance,
                transfer_syntax_uid: &ts,
                source_ae_title: Some(&ae),
            })
            .map_err(|e| e.to_string())?;
            let mut staged = store.blobs.stage().map_err(|e| e.to_string())?;
            std::io::Write::write_all(&mut staged.file, &header).map_err(|e| e.to_string())?;
            Ok(staged)
        })
        .await;
        match staged {
            Ok(Ok(staged)) => {
                rx.staged_path = Some(staged.path);
                rx.staged_key = Some(staged.key);
                rx.writer = Some(BufWriter::with_capacity(
                    WRITE_BUFFER,
                    tokio::fs::File::from_std(staged.file),
                ));
            }
            Ok(Err(e)) => {
                rx.failure = Some(StoreResult::failed(Status::OUT_OF_RESOURCES, e));
            }
            Err(e) => {
                rx.failure = Some(StoreResult::failed(
                    Status::PROCESSING_FAILURE,
                    e.to_string(),
                ));
            }
        }
        rx
    }

    /// Append one data fragment.
    pub async fn write(&mut self, bytes: &[u8]) {
        if self.failure.is_some() {
            return;
        }
        if let Some(w) = self.writer.as_mut() {
            if let Err(e) = w.write_all(bytes).await {
                tracing::warn!(error = %e, "writing received data set failed");
                self.failure = Some(StoreResult::failed(
                    Status::OUT_OF_RESOURCES,
                    format!("cannot write the instance: {e}"),
                ));
            }
        }
    }

    /// All fragments are in: make the instance durable and indexed, and say how it went.
    pub async fn finish(mut self) -> StoreResult {
        let writer = self.writer.take();
        let path = self.staged_path.take();
        if let Some(failure) = self.failure.take() {
            remove_staged(path).await;
            return failure;
        }
        let (Some(mut writer), Some(path), Some(key)) = (writer, path, self.staged_key.take())
        else {
            return StoreResult::failed(Status::PROCESSING_FAILURE, "no staged file");
        };
        if let Err(e) = writer.flush().await {
            remove_staged(Some(path)).await;
            return StoreResult::failed(
                Status::OUT_OF_RESOURCES,
                format!("cannot write the instance: {e}"),
            );
        }
        let file = writer.into_inner().into_std().await;
        let staged = StagedBlob { path, file, key };
        let store = self.store.clone();
        let source = IngestSource::Dimse {
            calling_ae: self.calling_ae.clone(),
        };
        let expected = self.expected.clone();
        let joined =
            tokio::task::spawn_blocking(move || store.ingestor.ingest(staged, &source, &expected))
                .await;
        match joined {
            Ok(Ok(ingested)) => StoreResult {
                status: Status::SUCCESS,
                comment: None,
                outcome: Some(ingested.outcome),
                study_uid: Some(ingested.study_instance_uid),
                patient_id: Some(ingested.patient_id),
            },
            Ok(Err(e)) => {
                tracing::warn!(error = %e, calling_ae = %self.calling_ae, "C-STORE refused");
                StoreResult::failed(status_for(&e), e.to_string())
            }
            Err(e) => StoreResult::failed(Status::PROCESSING_FAILURE, e.to_string()),
        }
    }

    /// The association ended mid-instance: nothing of it is kept.
    pub async fn abandon(mut self) {
        self.writer.take();
        remove_staged(self.staged_path.take()).await;
    }
}

async fn remove_staged(path: Option<PathBuf>) {
    if let Some(p) = path {
        let _ = tokio::fs::remove_file(p).await;
    }
}

/// The one place ingest failures become C-STORE statuses.
pub fn status_for(e: &IngestError) -> Status {
    match e {
        IngestError::Unparseable(_) | IngestError::InvalidUid { .. } => Status::CANNOT_UNDERSTAND,
        IngestError::MissingAttribute(_) | IngestError::Mismatch { .. } => {
            Status::DATASET_DOES_NOT_MATCH
        }
        // Disk full and write errors alike: refused for lack of resources, nothing indexed.
        IngestError::Storage(_) => Status::OUT_OF_RESOURCES,
    }
}
