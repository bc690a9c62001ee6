//! What a write to the index means, whatever the backend: the duplicate policy, the
//! hierarchy's counts ([`super::hierarchy`]), and the events and quiet-period marks each
//! write leaves in the outbox. Written against [`IndexTxn`] only; the backend commits after.

use std::collections::BTreeMap;

use super::hierarchy::{add_instance, refresh_modalities, remove_instance};
use super::txn::IndexTxn;
use super::{DuplicatePolicy, IndexCorrection, NewInstance, StoreDecision};
use crate::error::StorageError;
use crate::events::{EventKind, NewEvent};
use crate::records::InstanceRecord;

/// Add a batch of instances; one decision per item, in order. Each new or replacing
/// instance emits InstanceStored and restarts its study's quiet period; a duplicate kept is
/// not a change and emits nothing.
pub(crate) fn store_instances(
    txn: &mut dyn IndexTxn,
    items: Vec<NewInstance>,
    policy: DuplicatePolicy,
) -> Result<Vec<StoreDecision>, StorageError> {
    let mut stats = txn.statistics()?;
    let mut decisions = Vec::with_capacity(items.len());
    for item in items {
        let sop = item.record.sop_instance_uid.clone();
        // Read through the transaction: a second copy in the same batch is a duplicate too.
        if let Some(hidden) = txn.rejected(&sop)? {
            // A rejected instance sent again stays rejected until an administrator restores it.
            decisions.push(StoreDecision::PreviouslyRejected {
                reason: hidden.reason,
            });
            continue;
        }
        let existing = txn.instance(&sop)?;
        if existing.is_some() && policy == DuplicatePolicy::Keep {
            decisions.push(StoreDecision::Duplicate);
            continue;
        }
        let study = item.record.study_instance_uid.clone();
        let series = item.record.series_instance_uid.clone();
        if let Some(old) = &existing {
            remove_instance(txn, &mut stats, old)?;
        }
        let patient_key = add_instance(txn, &mut stats, item)?;
        announce_stored(txn, &study, &series, sop, &patient_key)?;
        decisions.push(match existing {
            Some(old) => StoreDecision::Replaced {
                old_blobs: old.all_blobs().cloned().collect(),
            },
            None => StoreDecision::Stored,
        });
    }
    txn.put_statistics(stats)?;
    Ok(decisions)
}

/// An instance (new, replacing or restored) is in the live index: InstanceStored, and its
/// study's quiet period starts again.
pub(super) fn announce_stored(
    txn: &mut dyn IndexTxn,
    study: &str,
    series: &str,
    sop: String,
    patient_key: &str,
) -> Result<(), StorageError> {
    txn.append_event(NewEvent {
        kind: EventKind::InstanceStored,
        study_instance_uid: study.to_string(),
        series_instance_uid: Some(series.to_string()),
        sop_instance_uid: Some(sop),
        patient_key: patient_key.to_string(),
        accession_number: None,
        previous_study_instance_uid: None,
        previous_patient_key: None,
    })?;
    txn.mark_unstable(study, patient_key, series)
}

/// Remove instances (unknown UIDs are skipped); returns the records removed. Emits
/// InstanceDeleted for each, then StudyDeleted for each study left empty, whose quiet-period
/// mark is dropped.
pub(crate) fn delete_instances(
    txn: &mut dyn IndexTxn,
    uids: &[String],
) -> Result<Vec<InstanceRecord>, StorageError> {
    let mut stats = txn.statistics()?;
    let mut removed = Vec::with_capacity(uids.len());
    for uid in uids {
        if let Some(rec) = txn.instance(uid)? {
            remove_instance(txn, &mut stats, &rec)?;
            removed.push(rec);
        }
    }
    announce_removed(txn, &removed)?;
    txn.put_statistics(stats)?;
    Ok(removed)
}

/// After instances left the live index (deleted or hidden): each surviving study's
/// modalities, InstanceDeleted for each, then StudyDeleted for each study left empty, whose
/// quiet-period mark is dropped.
pub(super) fn announce_removed(
    txn: &mut dyn IndexTxn,
    removed: &[InstanceRecord],
) -> Result<(), StorageError> {
    refresh_modalities(txn, removed)?;
    for r in removed {
        txn.append_event(NewEvent {
            kind: EventKind::InstanceDeleted,
            study_instance_uid: r.study_instance_uid.clone(),
            series_instance_uid: Some(r.series_instance_uid.clone()),
            sop_instance_uid: Some(r.sop_instance_uid.clone()),
            patient_key: r.patient_key.clone(),
            accession_number: None,
            previous_study_instance_uid: None,
            previous_patient_key: None,
        })?;
    }
    let studies: BTreeMap<&str, &str> = removed
        .iter()
        .map(|r| (r.study_instance_uid.as_str(), r.patient_key.as_str()))
        .collect();
    for (study, patient_key) in studies {
        if txn.study(study)?.is_none() {
            txn.append_event(NewEvent {
                kind: EventKind::StudyDeleted,
                study_instance_uid: study.to_string(),
                series_instance_uid: None,
                sop_instance_uid: None,
                patient_key: patient_key.to_string(),
                accession_number: None,
                previous_study_instance_uid: None,
                previous_patient_key: None,
            })?;
            txn.forget_unstable(study)?;
        }
    }
    Ok(())
}

/// Replace instances by their corrected versions: all are taken out first (so a study or
/// patient left empty is made again from the corrected attributes), then added back under
/// their new study and patient. No InstanceStored and no quiet period: the correction's own
/// events say what changed. Refused whole if any instance changed since it was read.
pub(crate) fn correct_instances(
    txn: &mut dyn IndexTxn,
    correction: IndexCorrection,
) -> Result<(), StorageError> {
    let mut stats = txn.statistics()?;
    let mut removed = Vec::with_capacity(correction.rewritten.len());
    for r in &correction.rewritten {
        let sop = &r.item.record.sop_instance_uid;
        let changed = || StorageError::ChangedMeanwhile {
            sop_instance_uid: sop.clone(),
        };
        let current = txn.instance(sop)?.ok_or_else(changed)?;
        if current.blob != r.expected_blob {
            return Err(changed());
        }
        remove_instance(txn, &mut stats, &current)?;
        removed.push(current);
    }
    for r in correction.rewritten {
        add_instance(txn, &mut stats, r.item)?;
    }
    refresh_modalities(txn, &removed)?;
    if let Some((key, attributes)) = correction.patient_attributes {
        if let Some(mut patient) = txn.patient(&key)? {
            patient.attributes.extend(attributes);
            txn.put_patient(patient)?;
        }
    }
    let studies: std::collections::BTreeSet<&str> = removed
        .iter()
        .map(|r| r.study_instance_uid.as_str())
        .collect();
    for study in studies {
        if txn.study(study)?.is_none() {
            txn.forget_unstable(study)?;
        }
    }
    for event in correction.events {
        txn.append_event(event)?;
    }
    txn.put_statistics(stats)?;
    Ok(())
}
