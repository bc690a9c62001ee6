//! The write rules on the in-memory index: reconciliation, counts, duplicate policy and the
//! events each write emits, with no database.

use std::collections::BTreeSet;

use super::mem_txn::{MemIndex, Waiting};
use super::tests::item;
use super::{rules, DuplicatePolicy, NewInstance, Statistics, StoreDecision};
use crate::blob::BlobKey;
use crate::events::EventKind;
use crate::records::{patient_key, InstanceRecord};

fn store(
    index: &mut MemIndex,
    items: Vec<NewInstance>,
    policy: DuplicatePolicy,
) -> Vec<StoreDecision> {
    index
        .write(|txn| rules::store_instances(txn, items, policy))
        .expect("store")
}

fn delete(index: &mut MemIndex, uids: &[&str]) -> Vec<InstanceRecord> {
    let uids: Vec<String> = uids.iter().map(|u| u.to_string()).collect();
    index
        .write(|txn| rules::delete_instances(txn, &uids))
        .expect("delete")
}

fn kinds(index: &MemIndex) -> Vec<EventKind> {
    index.events.iter().map(|e| e.kind).collect()
}

fn stats(patients: u64, studies: u64, series: u64, instances: u64, bytes: u64) -> Statistics {
    Statistics {
        patients,
        studies,
        series,
        instances,
        bytes,
    }
}

#[test]
fn levels_count_once_within_a_batch_and_across_batches() {
    let mut index = MemIndex::default();
    let d = store(
        &mut index,
        vec![
            item("P1", "S1", "SE1", "I1", "CT", 10),
            item("P1", "S1", "SE1", "I2", "CT", 20),
        ],
        DuplicatePolicy::Keep,
    );
    assert_eq!(d, [StoreDecision::Stored, StoreDecision::Stored]);
    store(
        &mut index,
        vec![
            item("P1", "S1", "SE2", "I3", "SR", 5),
            item("P2", "S2", "SE3", "I4", "MR", 1),
        ],
        DuplicatePolicy::Keep,
    );
    assert_eq!(index.stats, stats(2, 2, 3, 4, 36));
    let study = &index.studies["S1"];
    assert_eq!(
        (study.num_series, study.num_instances, study.bytes),
        (2, 3, 35)
    );
    assert_eq!(
        study.modalities,
        BTreeSet::from(["CT".to_string(), "SR".to_string()])
    );
    assert_eq!(
        study.attributes["00100010"].values[0], "P1^NAME",
        "patient attributes copied into the study"
    );
    let series = &index.series["SE1"];
    assert_eq!((series.num_instances, series.bytes), (2, 30));
    let patient = &index.patients[&patient_key("P1", "")];
    assert_eq!(
        (
            patient.num_studies,
            patient.num_series,
            patient.num_instances
        ),
        (1, 2, 3)
    );
}

#[test]
fn a_study_keeps_the_first_patient_it_was_seen_with() {
    let mut index = MemIndex::default();
    // Within one batch and in a later one: the second patient never gets a record.
    store(
        &mut index,
        vec![
            item("P1", "S1", "SE1", "I1", "CT", 10),
            item("P2", "S1", "SE1", "I2", "CT", 10),
        ],
        DuplicatePolicy::Keep,
    );
    store(
        &mut index,
        vec![item("P3", "S1", "SE2", "I3", "CT", 10)],
        DuplicatePolicy::Keep,
    );
    let p1 = patient_key("P1", "");
    assert_eq!(index.stats.patients, 1);
    assert_eq!(index.patients.keys().collect::<Vec<_>>(), [&p1]);
    assert_eq!(index.patients[&p1].num_instances, 3);
    for sop in ["I1", "I2", "I3"] {
        assert_eq!(index.instances[sop].patient_key, p1, "{sop}");
    }
    assert!(index.events.iter().all(|e| e.patient_key == p1));
    assert_eq!(index.unstable["S1"].patient_key, p1);
}

#[test]
fn a_kept_duplicate_changes_nothing_and_emits_nothing() {
    let mut index = MemIndex::default();
    // The second copy in the same batch already sees the first.
    let d = store(
        &mut index,
        vec![
            item("P1", "S1", "SE1", "I1", "CT", 10),
            item("P1", "S1", "SE1", "I1", "CT", 99),
        ],
        DuplicatePolicy::Keep,
    );
    assert_eq!(d, [StoreDecision::Stored, StoreDecision::Duplicate]);
    let d = store(
        &mut index,
        vec![item("P1", "S1", "SE1", "I1", "CT", 99)],
        DuplicatePolicy::Keep,
    );
    assert_eq!(d, [StoreDecision::Duplicate]);
    assert_eq!(index.stats, stats(1, 1, 1, 1, 10));
    assert_eq!(index.instances["I1"].blob, BlobKey("blob-I1".into()));
    assert_eq!(kinds(&index), [EventKind::InstanceStored]);
}

#[test]
fn an_overwrite_replaces_without_double_counting() {
    let mut index = MemIndex::default();
    store(
        &mut index,
        vec![item("P1", "S1", "SE1", "I1", "CT", 10)],
        DuplicatePolicy::Keep,
    );
    let mut first = item("P1", "S1", "SE1", "I2", "CT", 10);
    first.record.blob = BlobKey("first".into());
    let second = item("P1", "S1", "SE1", "I2", "CT", 40);
    let mut third = item("P1", "S1", "SE1", "I1", "CT", 30);
    third.record.blob = BlobKey("new".into());
    let d = store(
        &mut index,
        vec![first, second, third],
        DuplicatePolicy::Overwrite,
    );
    assert_eq!(
        d,
        [
            StoreDecision::Stored,
            // Replacing a copy stored earlier in the same batch.
            StoreDecision::Replaced {
                old_blobs: vec![BlobKey("first".into())]
            },
            StoreDecision::Replaced {
                old_blobs: vec![BlobKey("blob-I1".into())]
            },
        ]
    );
    assert_eq!(index.stats, stats(1, 1, 1, 2, 70));
    let study = &index.studies["S1"];
    assert_eq!(
        (study.num_series, study.num_instances, study.bytes),
        (1, 2, 70)
    );
    assert_eq!(index.instances["I1"].blob, BlobKey("new".into()));
    // Every replacement is a change: one InstanceStored each.
    assert_eq!(kinds(&index), [EventKind::InstanceStored; 4]);
}

#[test]
fn a_replacement_in_another_series_moves_the_instance() {
    let mut index = MemIndex::default();
    store(
        &mut index,
        vec![item("P1", "S1", "SE1", "I1", "CT", 10)],
        DuplicatePolicy::Keep,
    );
    store(
        &mut index,
        vec![item("P1", "S1", "SE2", "I1", "MR", 10)],
        DuplicatePolicy::Overwrite,
    );
    assert!(!index.series.contains_key("SE1"), "the emptied series goes");
    assert_eq!(index.series["SE2"].num_instances, 1);
    assert_eq!(index.stats, stats(1, 1, 1, 1, 10));
    let study = &index.studies["S1"];
    assert_eq!((study.num_series, study.num_instances), (1, 1));
}

#[test]
fn stored_instances_mark_their_study_unstable_with_each_series_once() {
    let mut index = MemIndex::default();
    store(
        &mut index,
        vec![
            item("P1", "S1", "SE1", "I1", "CT", 1),
            item("P1", "S1", "SE2", "I2", "CT", 1),
            item("P1", "S1", "SE1", "I3", "CT", 1),
            item("P2", "S2", "SE3", "I4", "MR", 1),
        ],
        DuplicatePolicy::Keep,
    );
    assert_eq!(
        index.unstable["S1"],
        Waiting {
            patient_key: patient_key("P1", ""),
            series: vec!["SE1".into(), "SE2".into()],
        }
    );
    assert_eq!(index.unstable["S2"].series, ["SE3"]);
}

#[test]
fn deleting_empties_levels_refreshes_modalities_and_emits_events() {
    let mut index = MemIndex::default();
    store(
        &mut index,
        vec![
            item("P1", "1.1", "1.1.1", "1.1.1.1", "CT", 10),
            item("P1", "1.1", "1.1.1", "1.1.1.2", "CT", 10),
            item("P1", "1.1", "1.1.2", "1.1.2.1", "SR", 5),
            item("P2", "1.2", "1.2.1", "1.2.1.1", "MR", 7),
        ],
        DuplicatePolicy::Keep,
    );
    index.events.clear();

    // Unknown UIDs are skipped; the SR series goes and with it SR from the study.
    let removed = delete(&mut index, &["1.1.2.1", "9.9.9"]);
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].blob, BlobKey("blob-1.1.2.1".into()));
    let study = &index.studies["1.1"];
    assert_eq!(
        (study.num_series, study.num_instances, study.bytes),
        (1, 2, 20)
    );
    assert_eq!(study.modalities, BTreeSet::from(["CT".to_string()]));
    assert!(!index.series.contains_key("1.1.2"));
    assert_eq!(kinds(&index), [EventKind::InstanceDeleted]);
    assert!(index.unstable.contains_key("1.1"), "the study still exists");

    // The whole second study goes, its patient with it, and its quiet-period mark.
    index.events.clear();
    delete(&mut index, &["1.2.1.1"]);
    assert!(!index.studies.contains_key("1.2"));
    assert!(!index.patients.contains_key(&patient_key("P2", "")));
    assert!(!index.unstable.contains_key("1.2"));
    assert_eq!(
        kinds(&index),
        [EventKind::InstanceDeleted, EventKind::StudyDeleted]
    );
    assert_eq!(index.events[1].study_instance_uid, "1.2");
    assert_eq!(index.events[1].patient_key, patient_key("P2", ""));
    assert_eq!(index.stats, stats(1, 1, 1, 2, 20));
}

#[test]
fn deleting_a_study_in_one_write_emits_each_instance_then_the_study() {
    let mut index = MemIndex::default();
    store(
        &mut index,
        vec![
            item("P1", "1.1", "1.1.1", "1.1.1.1", "CT", 10),
            item("P1", "1.1", "1.1.2", "1.1.2.1", "SR", 5),
        ],
        DuplicatePolicy::Keep,
    );
    index.events.clear();
    delete(&mut index, &["1.1.1.1", "1.1.2.1"]);
    assert_eq!(
        kinds(&index),
        [
            EventKind::InstanceDeleted,
            EventKind::InstanceDeleted,
            EventKind::StudyDeleted
        ]
    );
    assert_eq!(index.stats, Statistics::default());
    assert!(index.patients.is_empty() && index.studies.is_empty() && index.series.is_empty());
    assert!(index.unstable.is_empty());
}
