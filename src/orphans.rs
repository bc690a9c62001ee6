//! `pacs verify --sweep-orphans`: blobs no index record refers to (left by a node that died
//! between the upload and the index commit, or by a crash mid-deletion) are listed and
//! removed. Only blobs older than the given age go: a younger one may belong to an instance
//! whose commit is on its way. Records are read after the listing, so an instance committed
//! meanwhile keeps its blob.

use std::collections::HashSet;

use pacs_storage::{BlobStore, Index};

use crate::error::AppError;

const PAGE: usize = 1000;

#[derive(Debug, Default)]
pub struct OrphanReport {
    pub listed: usize,
    pub removed: Vec<String>,
}

/// Every blob key the index (live and hidden instances, every version) refers to.
fn referenced(index: &dyn Index) -> Result<HashSet<String>, AppError> {
    let mut keys = HashSet::new();
    let mut after: Option<String> = None;
    loop {
        let uids = index.list_instances(after.as_deref(), PAGE)?;
        let Some(last) = uids.last().cloned() else {
            break;
        };
        for uid in uids {
            if let Some(rec) = index.instance(&uid)? {
                keys.extend(rec.all_blobs().map(|k| k.0.clone()));
            }
        }
        after = Some(last);
    }
    let mut after: Option<String> = None;
    loop {
        let page = index.list_rejected(after.as_deref(), PAGE)?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.record.sop_instance_uid.clone());
        for r in &page {
            keys.extend(r.record.all_blobs().map(|k| k.0.clone()));
        }
    }
    Ok(keys)
}

/// Remove the blobs older than `min_age_ms` that nothing refers to.
pub fn sweep(
    index: &dyn Index,
    blobs: &dyn BlobStore,
    min_age_ms: u64,
) -> Result<OrphanReport, AppError> {
    let now = pacs_storage::ingest::now_ms();
    let listed = blobs.list()?;
    let keep = referenced(index)?;
    let mut report = OrphanReport {
        listed: listed.len(),
        removed: Vec::new(),
    };
    for (key, modified) in listed {
        if keep.contains(&key.0) || now.saturating_sub(modified) < min_age_ms {
            continue;
        }
        blobs.delete(&key)?;
        tracing::info!(blob = %key.0, "orphan blob removed");
        report.removed.push(key.0);
    }
    Ok(report)
}
