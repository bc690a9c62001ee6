//! Rejection notes, restores and purges on the in-memory index: counts, statistics,
//! modalities and events, with no database.

use super::mem_txn::MemIndex;
use super::rejection_rules::{apply_rejection, purge_rejected, restore_rejected};
use super::tests::item;
use super::{rules, DuplicatePolicy, Statistics, StoreDecision};
use crate::events::EventKind;
use crate::rejection::{RejectedRef, RejectionNote, RejectionReason};

fn note(sop: &str, refs: &[(&str, &str, &str)]) -> RejectionNote {
    RejectionNote {
        note_sop_instance_uid: sop.into(),
        reason: RejectionReason::Quality,
        references: refs
            .iter()
            .map(|(study, series, sop)| RejectedRef {
                study_instance_uid: (*study).into(),
                series_instance_uid: (*series).into(),
                sop_class_uid: String::new(),
                sop_instance_uid: (*sop).into(),
            })
            .collect(),
    }
}

fn uids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_note_hides_what_it_names_and_a_restore_brings_it_back() {
    let mut index = MemIndex::default();
    index
        .write(|txn| {
            rules::store_instances(
                txn,
                vec![
                    item("P1", "S1", "SE1", "I1", "CT", 10),
                    item("P1", "S1", "SE1", "I2", "CT", 20),
                    item("P1", "S1", "SE2", "I3", "MR", 5),
                ],
                DuplicatePolicy::Keep,
            )
        })
        .expect("store");
    index.events.clear();

    // The whole MR series and one CT image; I9 is unknown and skipped.
    let n = note(
        "KOS1",
        &[
            ("S1", "SE2", "I3"),
            ("S1", "SE1", "I1"),
            ("S1", "SE1", "I9"),
        ],
    );
    let applied = index
        .write(|txn| {
            apply_rejection(
                txn,
                item("P1", "S1", "SE9", "KOS1", "KO", 1),
                &n,
                "MODALITY",
                1000,
                DuplicatePolicy::Keep,
            )
        })
        .expect("reject");
    assert_eq!(applied.note, StoreDecision::Stored);
    assert_eq!(applied.hidden, uids(&["I3", "I1"]));
    assert!(!index.instances.contains_key("I1") && !index.instances.contains_key("I3"));
    assert!(!index.series.contains_key("SE2"), "emptied series goes");
    let study = &index.studies["S1"];
    assert_eq!(
        (study.num_series, study.num_instances, study.bytes),
        (2, 2, 21)
    );
    assert_eq!(
        study.modalities.iter().collect::<Vec<_>>(),
        ["CT", "KO"],
        "MR left with its series"
    );
    assert_eq!(
        index.stats,
        Statistics {
            patients: 1,
            studies: 1,
            series: 2,
            instances: 2,
            bytes: 21
        }
    );
    let hidden = &index.rejected["I1"];
    assert_eq!(hidden.reason, RejectionReason::Quality);
    assert_eq!(hidden.rejected_by, "MODALITY");
    assert_eq!(hidden.series["00080060"].values, ["CT"]);
    let kinds: Vec<EventKind> = index.events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::InstanceDeleted,
            EventKind::InstanceDeleted,
            EventKind::InstanceStored
        ]
    );

    // The same instance sent again stays out.
    let again = index
        .write(|txn| {
            rules::store_instances(
                txn,
                vec![item("P1", "S1", "SE1", "I1", "CT", 10)],
                DuplicatePolicy::Overwrite,
            )
        })
        .expect("store");
    assert_eq!(
        again,
        [StoreDecision::PreviouslyRejected {
            reason: RejectionReason::Quality
        }]
    );
    assert_eq!(index.stats.instances, 2);

    // Restored: counts, the MR series and its modality are back; I7 is unknown.
    index.events.clear();
    let restored = index
        .write(|txn| restore_rejected(txn, &uids(&["I3", "I7"])))
        .expect("restore");
    assert_eq!(restored, ["I3"]);
    assert_eq!(index.series["SE2"].num_instances, 1);
    assert!(index.studies["S1"].modalities.contains("MR"));
    assert_eq!((index.stats.series, index.stats.instances), (3, 3));
    assert_eq!(index.events[0].kind, EventKind::InstanceStored);
    assert!(
        index.unstable.contains_key("S1"),
        "quiet period starts again"
    );

    // Purged: gone from the hidden table, nothing else moves.
    let purged = index
        .write(|txn| purge_rejected(txn, &uids(&["I1", "I3"])))
        .expect("purge");
    assert_eq!(purged.len(), 1);
    assert!(index.rejected.is_empty());
    assert_eq!(index.stats.instances, 3);
}

#[test]
fn a_note_that_empties_a_study_removes_it_and_says_so() {
    let mut index = MemIndex::default();
    index
        .write(|txn| {
            rules::store_instances(
                txn,
                vec![item("P1", "S1", "SE1", "I1", "CT", 10)],
                DuplicatePolicy::Keep,
            )
        })
        .expect("store");
    index.events.clear();
    // The note lives in another study (a study of its own, as some modalities send it).
    let n = note("KOS2", &[("S1", "SE1", "I1")]);
    index
        .write(|txn| {
            apply_rejection(
                txn,
                item("P1", "S2", "SE2", "KOS2", "KO", 1),
                &n,
                "STOW-RS",
                5,
                DuplicatePolicy::Keep,
            )
        })
        .expect("reject");
    assert!(!index.studies.contains_key("S1"));
    let kinds: Vec<EventKind> = index.events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::InstanceDeleted,
            EventKind::StudyDeleted,
            EventKind::InstanceStored
        ]
    );
    assert_eq!((index.stats.studies, index.stats.instances), (1, 1));
    // Restoring makes the study again.
    index
        .write(|txn| restore_rejected(txn, &uids(&["I1"])))
        .expect("restore");
    assert_eq!(index.studies["S1"].num_instances, 1);
    assert_eq!(
        index.patients[&crate::records::patient_key("P1", "")].num_studies,
        2
    );
}
