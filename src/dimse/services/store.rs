//! C-STORE SCP (PS3.4 Annex B): the data set is streamed, fragment by fragment, into a staged
//! Part 10 file through the storage crate's one receive path ([`Receiver`]), then ingested.
//! Memory stays bounded by the PDU size whatever the instance size.

use std::sync::Arc;

use pacs_storage::part10::FileMetaFields;
use pacs_storage::{
    Expected, IngestError, IngestOutcome, IngestSource, ReceiveError, Receiver, Store,
};

use super::{DataSink, DimseService, ServiceFuture};
use crate::dimse::access::Service;
use crate::dimse::command::Command;
use crate::dimse::session::Session;
use crate::dimse::status::Status;

/// The C-STORE service of the dispatch table.
pub struct StoreService;

impl DimseService for StoreService {
    fn sink<'a>(
        &'a self,
        session: &'a mut Session,
        context_id: u8,
        command: &'a Command,
    ) -> ServiceFuture<'a, DataSink> {
        Box::pin(async move {
            let Some(context) = session.context(context_id) else {
                return DataSink::Discard;
            };
            if !session.allowed.contains(&Service::Store) {
                return DataSink::Discard;
            }
            let rx = StoreReceiver::begin(
                session.store.clone(),
                command,
                &context.transfer_syntax,
                &session.negotiated.calling_ae,
            )
            .await;
            DataSink::Store(Box::new(rx))
        })
    }

    fn serve<'a>(
        &'a self,
        session: &'a mut Session,
        context_id: u8,
        command: Command,
        data: Option<DataSink>,
    ) -> ServiceFuture<'a, ()> {
        Box::pin(async move {
            let (status, comment) = match data {
                Some(DataSink::Store(rx)) => {
                    let result = rx.finish().await;
                    session.audit.stored(
                        result.study_uid.clone(),
                        result.patient_id.clone(),
                        result.outcome.clone(),
                    );
                    match result.outcome {
                        Some(IngestOutcome::Duplicate) => session.counters.duplicates += 1,
                        Some(_) => session.counters.stored += 1,
                        None => session.counters.failed += 1,
                    }
                    (result.status, result.comment)
                }
                Some(_) => {
                    session.counters.failed += 1;
                    if session.allowed.contains(&Service::Store) {
                        (
                            Status::SOP_CLASS_NOT_SUPPORTED,
                            Some("presentation context is not for a storage SOP class".to_string()),
                        )
                    } else {
                        tracing::warn!(calling_ae = %session.negotiated.calling_ae, "C-STORE from a node not allowed to store");
                        (
                            Status::NOT_AUTHORIZED,
                            Some("this node may not store here".to_string()),
                        )
                    }
                }
                None => (Status::CANNOT_UNDERSTAND, None),
            };
            session.respond(context_id, &command, status, comment).await;
        })
    }
}

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

    /// A receive failure as a C-STORE answer.
    fn receive_failed(e: &ReceiveError) -> Self {
        let comment = match e {
            // The comment names the cause itself, as it did before the shared receive path.
            ReceiveError::Stage(cause) => cause.to_string(),
            other => other.to_string(),
        };
        StoreResult::failed(receive_status(e), comment)
    }

    fn join_failed(e: tokio::task::JoinError) -> Self {
        StoreResult::failed(Status::PROCESSING_FAILURE, e.to_string())
    }
}

/// One instance being received.
pub struct StoreReceiver {
    store: Arc<Store>,
    receiver: Option<Receiver>,
    /// The first failure; later fragments are read and dropped so the association stays usable.
    failure: Option<StoreResult>,
    calling_ae: String,
    expected: Expected,
}

impl StoreReceiver {
    /// Stage a blob and write the File Meta Information from the command and the context.
    pub async fn begin(
        store: Arc<Store>,
        command: &Command,
        transfer_syntax: &str,
        calling_ae: &str,
    ) -> Self {
        let mut rx = StoreReceiver {
            store: store.clone(),
            receiver: None,
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
        // Staging creates a file: off the async runtime.
        let staged = tokio::task::spawn_blocking(move || {
            Receiver::begin_dataset(
                store.blobs.as_ref(),
                &FileMetaFields {
                    sop_class_uid: &class,
                    sop_instance_uid: &instance,
                    transfer_syntax_uid: &ts,
                    source_ae_title: Some(&ae),
                },
            )
        })
        .await;
        match staged {
            Ok(Ok(receiver)) => rx.receiver = Some(receiver),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, calling_ae, "cannot stage a C-STORE instance");
                rx.failure = Some(StoreResult::receive_failed(&e));
            }
            Err(e) => rx.failure = Some(StoreResult::join_failed(e)),
        }
        rx
    }

    /// Append one data fragment (into the receiver's buffer; a write to the file when full).
    pub fn write(&mut self, bytes: &[u8]) {
        if self.failure.is_some() {
            return;
        }
        if let Some(receiver) = self.receiver.as_mut() {
            if let Err(e) = receiver.write(bytes) {
                tracing::warn!(error = %e, "writing received data set failed");
                self.failure = Some(StoreResult::receive_failed(&e));
            }
        }
    }

    /// All fragments are in: make the instance durable and indexed, and say how it went.
    pub async fn finish(mut self) -> StoreResult {
        let receiver = self.receiver.take();
        if let Some(failure) = self.failure.take() {
            self.discard(receiver).await;
            return failure;
        }
        let Some(receiver) = receiver else {
            return StoreResult::failed(Status::PROCESSING_FAILURE, "no staged file");
        };
        let store = self.store.clone();
        let source = IngestSource::Dimse {
            calling_ae: self.calling_ae.clone(),
        };
        let expected = self.expected.clone();
        let joined =
            tokio::task::spawn_blocking(move || receiver.finish(&store, &source, &expected)).await;
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
                StoreResult::receive_failed(&e)
            }
            Err(e) => StoreResult::join_failed(e),
        }
    }

    /// The association ended mid-instance: nothing of it is kept.
    pub async fn abandon(mut self) {
        let receiver = self.receiver.take();
        self.discard(receiver).await;
    }

    async fn discard(&self, receiver: Option<Receiver>) {
        if let Some(receiver) = receiver {
            let store = self.store.clone();
            // Removing the staged file is blocking I/O.
            let _ =
                tokio::task::spawn_blocking(move || receiver.abandon(store.blobs.as_ref())).await;
        }
    }
}

/// The C-STORE status of a receive failure.
fn receive_status(e: &ReceiveError) -> Status {
    match e {
        ReceiveError::Ingest(e) => status_for(e),
        // Disk full (`is_out_of_space`) and other staging or write errors alike: refused for
        // lack of resources, nothing indexed.
        ReceiveError::Stage(_) | ReceiveError::FileMeta(_) | ReceiveError::Write(_) => {
            Status::OUT_OF_RESOURCES
        }
    }
}

/// The one place ingest failures become C-STORE statuses.
pub fn status_for(e: &IngestError) -> Status {
    match e {
        IngestError::Unparseable(_) | IngestError::InvalidUid { .. } => Status::CANNOT_UNDERSTAND,
        IngestError::MissingAttribute(_) | IngestError::Mismatch { .. } => {
            Status::DATASET_DOES_NOT_MATCH
        }
        IngestError::PreviouslyRejected { .. } => Status::SUBSEQUENT_OCCURRENCE_OF_REJECTED,
        IngestError::RejectionRefused(_) => Status::REJECTION_FAILED,
        // Disk full and write errors alike: refused for lack of resources, nothing indexed.
        IngestError::Storage(_) => Status::OUT_OF_RESOURCES,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receive_failures_keep_their_statuses() {
        let disk_full = ReceiveError::Write(std::io::Error::other("no space left"));
        assert_eq!(receive_status(&disk_full), Status::OUT_OF_RESOURCES);
        let r = StoreResult::receive_failed(&disk_full);
        assert_eq!(
            r.comment.as_deref(),
            Some("cannot write the instance: no space left")
        );
        let bad = ReceiveError::Ingest(IngestError::InvalidUid {
            attribute: "SOPInstanceUID",
            value: "x".into(),
        });
        assert_eq!(receive_status(&bad), Status::CANNOT_UNDERSTAND);
    }
}
