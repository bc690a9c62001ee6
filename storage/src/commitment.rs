//! Storage commitment (PS3.4 J, push model): a modality asks whether the archive holds a list
//! of instances before it deletes its own copies. A request is kept until its answer has been
//! delivered, so one received before a crash is answered after the restart; the answer is
//! checked against the index and each blob's recorded SHA-256, not only the index.

use serde::{Deserialize, Serialize};

use crate::audit::Interface;
use crate::error::StorageError;
use crate::store::Store;

/// Failure Reason (0008,1197) values of PS3.4 J.3.2.1.1.
pub const NO_SUCH_OBJECT_INSTANCE: u16 = 0x0112;
pub const PROCESSING_FAILURE: u16 = 0x0110;
pub const CLASS_INSTANCE_CONFLICT: u16 = 0x0119;

/// One referenced instance: SOP Class UID and SOP Instance UID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    pub class_uid: String,
    pub instance_uid: String,
}

/// A storage commitment request, kept until its report is delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitmentRequest {
    pub transaction_uid: String,
    /// AE title of the requester (where a report goes on a new association).
    pub calling_ae: String,
    pub references: Vec<Reference>,
    pub received_ms: u64,
}

/// The answer: which instances the archive commits to, which it cannot and why.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommitmentResult {
    pub committed: Vec<Reference>,
    pub failed: Vec<(Reference, u16)>,
}

/// Pending commitment requests, kept by the index (synced writes).
pub trait Commitments: Send + Sync {
    fn put_commitment(&self, request: &CommitmentRequest) -> Result<(), StorageError>;
    /// Requests whose report has not been delivered yet, oldest first.
    fn pending_commitments(&self, limit: usize) -> Result<Vec<CommitmentRequest>, StorageError>;
    fn remove_commitment(&self, transaction_uid: &str) -> Result<(), StorageError>;
}

/// Check each referenced instance: in the index, of the class named, and its blob reads back
/// with the SHA-256 recorded at ingest.
pub fn evaluate(store: &Store, request: &CommitmentRequest) -> CommitmentResult {
    let mut out = CommitmentResult::default();
    for r in &request.references {
        match check(store, r) {
            Ok(()) => out.committed.push(r.clone()),
            Err(reason) => out.failed.push((r.clone(), reason)),
        }
    }
    out
}

fn check(store: &Store, r: &Reference) -> Result<(), u16> {
    let rec = match store.index.instance(&r.instance_uid) {
        Ok(Some(rec)) => rec,
        Ok(None) => return Err(NO_SUCH_OBJECT_INSTANCE),
        Err(e) => {
            tracing::warn!(error = %crate::error_chain(&e), "storage commitment: index read failed");
            return Err(PROCESSING_FAILURE);
        }
    };
    if rec.sop_class_uid != r.class_uid {
        return Err(CLASS_INSTANCE_CONFLICT);
    }
    // The verified reader fails at the end when the bytes are not the ones recorded.
    let mut reader = store
        .open_verified(&rec, Interface::Dimse)
        .map_err(|_| PROCESSING_FAILURE)?;
    std::io::copy(&mut reader, &mut std::io::sink())
        .map(|_| ())
        .map_err(|_| PROCESSING_FAILURE)
}
