//! What an administrator does with instances hidden by rejection notes: find them (by
//! study, by note, by UID), restore them, purge them with their files, and the purge of
//! those hidden longer than the configured delay.

use crate::error::StorageError;
use crate::rejection::RejectedInstance;
use crate::store::Store;

/// Most hidden instances one selection reads (a bound on one request's work).
pub const MAX_SELECTED: usize = 100_000;
const PAGE: usize = 1000;

/// Which hidden instances an operation is about; every given criterion must hold.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub study_instance_uid: Option<String>,
    /// The rejection note (KOS SOP Instance UID) that hid them.
    pub note_sop_instance_uid: Option<String>,
    pub sop_instance_uids: Option<Vec<String>>,
    /// Hidden before this time (ms since the epoch).
    pub rejected_before_ms: Option<u64>,
}

impl Selection {
    fn matches(&self, r: &RejectedInstance) -> bool {
        self.study_instance_uid
            .as_ref()
            .is_none_or(|s| *s == r.record.study_instance_uid)
            && self
                .note_sop_instance_uid
                .as_ref()
                .is_none_or(|n| *n == r.note_sop_instance_uid)
            && self
                .sop_instance_uids
                .as_ref()
                .is_none_or(|u| u.contains(&r.record.sop_instance_uid))
            && self.rejected_before_ms.is_none_or(|t| r.rejected_ms < t)
    }
}

/// The hidden instances `selection` names, in SOP Instance UID order (at most `limit`).
pub fn select(
    store: &Store,
    selection: &Selection,
    limit: usize,
) -> Result<Vec<RejectedInstance>, StorageError> {
    let limit = limit.min(MAX_SELECTED);
    let mut out = Vec::new();
    if let Some(uids) = &selection.sop_instance_uids {
        // Each is looked up by its UID; the other criteria still apply.
        let rest = Selection {
            sop_instance_uids: None,
            ..selection.clone()
        };
        for uid in uids.iter().take(MAX_SELECTED) {
            if let Some(r) = store.index.rejected_instance(uid)? {
                if rest.matches(&r) && out.len() < limit {
                    out.push(r);
                }
            }
        }
        return Ok(out);
    }
    let mut after: Option<String> = None;
    let mut read = 0;
    while out.len() < limit && read < MAX_SELECTED {
        let page = store.index.list_rejected(after.as_deref(), PAGE)?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.record.sop_instance_uid.clone());
        read += page.len();
        out.extend(
            page.into_iter()
                .filter(|r| selection.matches(r))
                .take(limit - out.len()),
        );
    }
    Ok(out)
}

/// Put the selected instances back into the live index; returns their UIDs.
pub fn restore(store: &Store, selection: &Selection) -> Result<Vec<String>, StorageError> {
    let uids = uids_of(&select(store, selection, MAX_SELECTED)?);
    store.index.restore_rejected(&uids)
}

/// Forget the selected instances and delete their files (after the index change commits:
/// a crash in between leaves unreferenced files, never records without files).
pub fn purge(store: &Store, selection: &Selection) -> Result<Vec<RejectedInstance>, StorageError> {
    let uids = uids_of(&select(store, selection, MAX_SELECTED)?);
    let purged = store.index.purge_rejected(&uids)?;
    for blob in purged.iter().flat_map(|r| r.record.all_blobs()) {
        if let Err(e) = store.blobs.delete(blob) {
            tracing::warn!(%blob, error = %e, "purged instance's file not removed");
        }
    }
    Ok(purged)
}

/// Purge what has been hidden for longer than `delay_ms` before `now_ms`.
pub fn purge_expired(
    store: &Store,
    now_ms: u64,
    delay_ms: u64,
) -> Result<Vec<RejectedInstance>, StorageError> {
    purge(
        store,
        &Selection {
            rejected_before_ms: Some(now_ms.saturating_sub(delay_ms)),
            ..Selection::default()
        },
    )
}

fn uids_of(rejected: &[RejectedInstance]) -> Vec<String> {
    rejected
        .iter()
        .map(|r| r.record.sop_instance_uid.clone())
        .collect()
}
