//! `pacs verify --sweep-orphans`: blobs no index record refers to (left by a node that died
//! between the upload and the index commit, or by a crash mid-deletion) are listed and
//! removed. Only blobs older than the given age go: a younger one may belong to an instance
//! whose commit is on its way. The listing comes before verify's walk over the records
//! (which collects the names), so an instance committed meanwhile keeps its blob.

use std::collections::HashSet;

use pacs_storage::{BlobKey, BlobStore};

use crate::error::AppError;

#[derive(Debug, Default)]
pub struct OrphanReport {
    pub listed: usize,
    pub removed: Vec<String>,
}

/// Remove the listed blobs older than `min_age_ms` that `named` (every blob key of every
/// record, read after the listing) does not hold.
pub fn remove(
    blobs: &dyn BlobStore,
    listed: Vec<(BlobKey, u64)>,
    named: &HashSet<String>,
    min_age_ms: u64,
) -> Result<OrphanReport, AppError> {
    let now = pacs_storage::ingest::now_ms();
    let mut report = OrphanReport {
        listed: listed.len(),
        removed: Vec::new(),
    };
    for (key, modified) in listed {
        if named.contains(&key.0) || now.saturating_sub(modified) < min_age_ms {
            continue;
        }
        blobs.delete(&key)?;
        tracing::info!(blob = %key.0, "orphan blob removed");
        report.removed.push(key.0);
    }
    Ok(report)
}
