//! What a rejection note, a restore and a purge do to the index, whatever the backend.
//! Hiding takes an instance out of the live records (counts, secondary keys, statistics)
//! and keeps it whole in the rejected table, so every query and retrieve path, which reads
//! only live records, stops seeing it without a check of its own.

use super::hierarchy::{add_instance, remove_instance};
use super::rules::{announce_removed, announce_stored, store_instances};
use super::txn::IndexTxn;
use super::{DuplicatePolicy, NewInstance, RejectionApplied, StoreDecision};
use crate::error::StorageError;
use crate::rejection::{RejectedInstance, RejectionNote};

/// Hide the live instances `note` names, then store the note itself. Instances already
/// hidden are left as they are; unknown ones are skipped (the ingest path refused notes
/// naming them before the blob was written; one deleted meanwhile is simply gone).
pub(crate) fn apply_rejection(
    txn: &mut dyn IndexTxn,
    note_item: NewInstance,
    note: &RejectionNote,
    rejected_by: &str,
    now_ms: u64,
    policy: DuplicatePolicy,
) -> Result<RejectionApplied, StorageError> {
    let mut stats = txn.statistics()?;
    let mut removed = Vec::new();
    for r in &note.references {
        if r.sop_instance_uid == note.note_sop_instance_uid {
            continue;
        }
        let Some(rec) = txn.instance(&r.sop_instance_uid)? else {
            continue;
        };
        let patient = txn
            .patient(&rec.patient_key)?
            .map(|p| p.attributes)
            .unwrap_or_default();
        let study = txn
            .study(&rec.study_instance_uid)?
            .map(|s| s.attributes)
            .unwrap_or_default();
        let series = txn
            .series(&rec.series_instance_uid)?
            .map(|s| s.attributes)
            .unwrap_or_default();
        remove_instance(txn, &mut stats, &rec)?;
        txn.put_rejected(RejectedInstance {
            record: rec.clone(),
            patient,
            study,
            series,
            reason: note.reason,
            note_sop_instance_uid: note.note_sop_instance_uid.clone(),
            rejected_by: rejected_by.to_string(),
            rejected_ms: now_ms,
        })?;
        removed.push(rec);
    }
    announce_removed(txn, &removed)?;
    txn.put_statistics(stats)?;
    let decision = store_instances(txn, vec![note_item], policy)?
        .pop()
        .unwrap_or(StoreDecision::Duplicate);
    Ok(RejectionApplied {
        note: decision,
        hidden: removed.into_iter().map(|r| r.sop_instance_uid).collect(),
    })
}

/// Index hidden instances again as they were (under their study's current patient when the
/// study is still there); InstanceStored for each, so the workers hear of them again.
pub(crate) fn restore_rejected(
    txn: &mut dyn IndexTxn,
    uids: &[String],
) -> Result<Vec<String>, StorageError> {
    let mut stats = txn.statistics()?;
    let mut restored = Vec::new();
    for uid in uids {
        let Some(hidden) = txn.rejected(uid)? else {
            continue;
        };
        txn.delete_rejected(uid)?;
        if txn.instance(uid)?.is_some() {
            // Cannot happen (a rejected UID is refused at ingest); keep the live one.
            continue;
        }
        let (study, series) = (
            hidden.record.study_instance_uid.clone(),
            hidden.record.series_instance_uid.clone(),
        );
        let patient_key = add_instance(
            txn,
            &mut stats,
            NewInstance {
                record: hidden.record,
                patient: hidden.patient,
                study: hidden.study,
                series: hidden.series,
            },
        )?;
        announce_stored(txn, &study, &series, uid.clone(), &patient_key)?;
        restored.push(uid.clone());
    }
    txn.put_statistics(stats)?;
    Ok(restored)
}

/// Forget hidden instances (unknown UIDs are skipped). No event: they left the live index
/// when they were rejected, and the systems fed from it heard of that then.
pub(crate) fn purge_rejected(
    txn: &mut dyn IndexTxn,
    uids: &[String],
) -> Result<Vec<RejectedInstance>, StorageError> {
    let mut purged = Vec::new();
    for uid in uids {
        if let Some(hidden) = txn.rejected(uid)? {
            txn.delete_rejected(uid)?;
            purged.push(hidden);
        }
    }
    Ok(purged)
}
