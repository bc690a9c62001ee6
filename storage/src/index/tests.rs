//! Index tests on a real RocksDB in a temp dir.

use std::collections::BTreeSet;

use super::*;
use crate::records::{AttrValue, Attributes};

fn attrs(pairs: &[(&str, &str)]) -> Attributes {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                AttrValue {
                    vr: "LO".into(),
                    values: vec![v.to_string()],
                },
            )
        })
        .collect()
}

pub(super) fn item(
    patient: &str,
    study: &str,
    series: &str,
    sop: &str,
    modality: &str,
    size: u64,
) -> NewInstance {
    NewInstance {
        record: InstanceRecord {
            sop_instance_uid: sop.into(),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            series_instance_uid: series.into(),
            study_instance_uid: study.into(),
            patient_key: crate::records::patient_key(patient, ""),
            transfer_syntax_uid: "1.2.840.10008.1.2".into(),
            size,
            blob: BlobKey(format!("blob-{sop}")),
            sha256: None,
            received_ms: 1,
            source: "TEST".into(),
            attributes: Attributes::new(),
            versions: Vec::new(),
        },
        patient: attrs(&[
            ("00100010", &format!("{patient}^NAME")),
            ("00100020", patient),
        ]),
        study: attrs(&[
            ("00080050", &format!("ACC-{study}")),
            ("00080020", "20240101"),
        ]),
        series: attrs(&[("00080060", modality)]),
    }
}

/// What these tests use of a backend: the index and its outbox.
trait Backend: Index + crate::events::Outbox {}
impl<T: Index + crate::events::Outbox> Backend for T {}

/// Each test below runs on the embedded index and on PostgreSQL (a throwaway cluster).
macro_rules! on_each_backend {
    ($($name:ident),*) => {
        mod rocks {
            $(#[test]
            fn $name() {
                let dir = tempfile::tempdir().expect("tempdir");
                let index = super::RocksIndex::open(dir.path().join("index")).expect("open");
                super::$name(&index);
            })*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            $(#[test]
            fn $name() {
                let db = crate::pg::testing::Postgres::start();
                let index = crate::pg::PgIndex::open(&db.settings()).expect("open");
                super::$name(&index);
            })*
        }
    };
}

on_each_backend!(
    counts_follow_the_hierarchy_within_and_across_batches,
    duplicates_are_kept_or_replaced_without_double_counting,
    deleting_instances_updates_counts_modalities_and_empties_levels,
    the_outbox_records_changes_in_commit_order_with_stability_and_deliveries
);

fn counts_follow_the_hierarchy_within_and_across_batches(index: &dyn Backend) {
    // One batch with two instances of a new series: both must count under one series.
    let d = index
        .store_instances(
            vec![
                item("P1", "S1", "SE1", "I1", "CT", 10),
                item("P1", "S1", "SE1", "I2", "CT", 20),
            ],
            DuplicatePolicy::Keep,
        )
        .expect("store");
    assert_eq!(d, vec![StoreDecision::Stored, StoreDecision::Stored]);
    index
        .store_instances(
            vec![
                item("P1", "S1", "SE2", "I3", "SR", 5),
                item("P2", "S2", "SE3", "I4", "MR", 1),
            ],
            DuplicatePolicy::Keep,
        )
        .expect("store");
    let stats = index.statistics().expect("stats");
    assert_eq!(
        stats,
        Statistics {
            patients: 2,
            studies: 2,
            series: 3,
            instances: 4,
            bytes: 36
        }
    );
    let study = index.study("S1").expect("get").expect("study");
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
        "patient attributes copied"
    );
    let patient = index
        .patient(&crate::records::patient_key("P1", ""))
        .expect("get")
        .expect("p");
    assert_eq!(
        (
            patient.num_studies,
            patient.num_series,
            patient.num_instances
        ),
        (1, 2, 3)
    );
    assert_eq!(
        index
            .scan_secondary(&SecondaryKey::SeriesOfStudy("S1".into()), 10)
            .expect("scan"),
        vec!["SE1", "SE2"]
    );
    assert_eq!(
        index
            .scan_secondary(&SecondaryKey::StudiesByModality("SR".into()), 10)
            .expect("scan"),
        vec!["S1"]
    );
    assert_eq!(
        index
            .scan_secondary(&SecondaryKey::StudiesByAccession("ACC-S2".into()), 10)
            .expect("scan"),
        vec!["S2"]
    );
    assert_eq!(
        index.list_studies(None, 10).expect("list"),
        vec!["S1", "S2"]
    );
    assert_eq!(
        index.list_studies(Some("S1"), 10).expect("list"),
        vec!["S2"]
    );
}

fn duplicates_are_kept_or_replaced_without_double_counting(index: &dyn Backend) {
    index
        .store_instances(
            vec![item("P1", "S1", "SE1", "I1", "CT", 10)],
            DuplicatePolicy::Keep,
        )
        .expect("store");
    let d = index
        .store_instances(
            vec![
                item("P1", "S1", "SE1", "I1", "CT", 99),
                item("P1", "S1", "SE1", "I1", "CT", 99),
            ],
            DuplicatePolicy::Keep,
        )
        .expect("store");
    assert_eq!(d, vec![StoreDecision::Duplicate, StoreDecision::Duplicate]);
    assert_eq!(index.statistics().expect("s").bytes, 10);

    let mut replacement = item("P1", "S1", "SE1", "I1", "CT", 30);
    replacement.record.blob = BlobKey("new".into());
    let d = index
        .store_instances(vec![replacement], DuplicatePolicy::Overwrite)
        .expect("store");
    assert_eq!(
        d,
        vec![StoreDecision::Replaced {
            old_blobs: vec![BlobKey("blob-I1".into())]
        }]
    );
    let stats = index.statistics().expect("s");
    assert_eq!(
        (
            stats.patients,
            stats.studies,
            stats.series,
            stats.instances,
            stats.bytes
        ),
        (1, 1, 1, 1, 30)
    );
    assert_eq!(
        index.instance("I1").expect("get").expect("i").blob,
        BlobKey("new".into())
    );
    assert_eq!(
        index
            .scan_secondary(&SecondaryKey::InstancesOfSeries("SE1".into()), 10)
            .expect("scan"),
        vec!["I1"]
    );
}

#[test]
fn the_index_survives_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let index = RocksIndex::open(dir.path().join("index")).expect("open");
        index
            .store_instances(
                vec![item("P1", "S1", "SE1", "I1", "CT", 10)],
                DuplicatePolicy::Keep,
            )
            .expect("store");
        // A second open of the same directory while it is held is refused clearly.
        let err = RocksIndex::open(dir.path().join("index")).expect_err("locked");
        assert!(matches!(err, StorageError::Locked { .. }), "{err}");
    }
    let index = RocksIndex::open(dir.path().join("index")).expect("reopen");
    assert_eq!(index.statistics().expect("s").instances, 1);
    assert!(index.instance("I1").expect("get").is_some());
}

fn deleting_instances_updates_counts_modalities_and_empties_levels(index: &dyn Backend) {
    index
        .store_instances(
            vec![
                item("P1", "1.1", "1.1.1", "1.1.1.1", "CT", 10),
                item("P1", "1.1", "1.1.1", "1.1.1.2", "CT", 10),
                item("P1", "1.1", "1.1.2", "1.1.2.1", "SR", 5),
                item("P2", "1.2", "1.2.1", "1.2.1.1", "MR", 7),
            ],
            DuplicatePolicy::Keep,
        )
        .expect("store");

    // The SR series goes: the study keeps its CT series and loses SR from its modalities.
    let removed = index
        .delete_instances(&["1.1.2.1".to_string(), "9.9.9".to_string()])
        .expect("delete");
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].blob, BlobKey("blob-1.1.2.1".into()));
    let study = index.study("1.1").expect("read").expect("study");
    assert_eq!(study.num_series, 1);
    assert_eq!(study.num_instances, 2);
    assert_eq!(study.modalities, BTreeSet::from(["CT".to_string()]));
    assert!(index.series("1.1.2").expect("read").is_none());
    assert_eq!(
        index
            .scan_secondary(&SecondaryKey::SeriesOfStudy("1.1".into()), usize::MAX)
            .expect("scan"),
        ["1.1.1"]
    );

    // The whole second study goes, and its patient with it.
    index
        .delete_instances(&["1.2.1.1".to_string()])
        .expect("delete");
    assert!(index.study("1.2").expect("read").is_none());
    assert!(index
        .patient(&crate::records::patient_key("P2", ""))
        .expect("read")
        .is_none());
    assert_eq!(index.list_studies(None, 10).expect("list"), ["1.1"]);
    let stats = index.statistics().expect("stats");
    assert_eq!(
        (
            stats.patients,
            stats.studies,
            stats.series,
            stats.instances,
            stats.bytes
        ),
        (1, 1, 1, 2, 20)
    );
}

fn the_outbox_records_changes_in_commit_order_with_stability_and_deliveries(index: &dyn Backend) {
    use crate::events::{Delivery, DeliveryState, EventKind};
    index
        .store_instances(
            vec![
                item("P1", "1.1", "1.1.1", "1.1.1.1", "CT", 10),
                item("P1", "1.1", "1.1.2", "1.1.2.1", "SR", 5),
            ],
            DuplicatePolicy::Keep,
        )
        .expect("store");
    // A duplicate kept is not a change: no event.
    index
        .store_instances(
            vec![item("P1", "1.1", "1.1.1", "1.1.1.1", "CT", 10)],
            DuplicatePolicy::Keep,
        )
        .expect("store");
    let events = index.events_after(0, 100).expect("events");
    assert_eq!(
        events.iter().map(|e| (e.seq, e.kind)).collect::<Vec<_>>(),
        [
            (1, EventKind::InstanceStored),
            (2, EventKind::InstanceStored)
        ]
    );
    assert_eq!(events[1].sop_instance_uid.as_deref(), Some("1.1.2.1"));

    // Not quiet yet: nothing; quiet: one SeriesStable per series and a StudyStable, once.
    let now = events[1].time_ms;
    assert!(index.mark_stable(now, 60_000).expect("stable").is_empty());
    let stable = index.mark_stable(now + 60_000, 60_000).expect("stable");
    let kinds: Vec<EventKind> = stable.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::SeriesStable,
            EventKind::SeriesStable,
            EventKind::StudyStable
        ]
    );
    assert_eq!(stable[2].seq, 5);
    assert!(index
        .mark_stable(now + 120_000, 60_000)
        .expect("again")
        .is_empty());

    // Deleting the study: InstanceDeleted each, then StudyDeleted.
    index
        .delete_instances(&["1.1.1.1".into(), "1.1.2.1".into()])
        .expect("delete");
    let tail: Vec<EventKind> = index
        .events_after(5, 100)
        .expect("events")
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        tail,
        [
            EventKind::InstanceDeleted,
            EventKind::InstanceDeleted,
            EventKind::StudyDeleted
        ]
    );
    assert_eq!(index.last_seq().expect("seq"), 8);

    // Worker cursors and deliveries, atomically.
    let e = &index.events_after(0, 1).expect("first")[0];
    let d = Delivery::new("ehr", e);
    index
        .advance("ehr", 1, std::slice::from_ref(&d))
        .expect("advance");
    assert_eq!(index.cursor("ehr").expect("cursor"), 1);
    assert_eq!(index.cursor("billing").expect("cursor"), 0);
    let mut done = index.delivery("ehr", 1).expect("read").expect("exists");
    assert_eq!(done.state, DeliveryState::Pending);
    let study = done.study_instance_uid.clone();
    index.put_delivery(&done).expect("put pending");
    assert_eq!(
        index.delivered_for_study("ehr", &study).expect("read"),
        None
    );
    done.state = DeliveryState::Delivered;
    index.put_delivery(&done).expect("put");
    // The study's last delivered one, per worker.
    assert_eq!(
        index.delivered_for_study("ehr", &study).expect("read"),
        Some(1)
    );
    assert_eq!(
        index.delivered_for_study("portal", &study).expect("read"),
        None
    );
    let listed = index.deliveries(Some("ehr"), None, 10).expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, DeliveryState::Delivered);
    assert!(index
        .deliveries(Some("billing"), None, 10)
        .expect("list")
        .is_empty());

    // An operator's retry: taken once, by its worker only.
    assert!(index.take_retries("ehr").expect("none yet").is_empty());
    done.state = DeliveryState::Dead;
    index.put_delivery(&done).expect("dead");
    let again = index.retry("ehr", 1).expect("retry").expect("exists");
    assert_eq!(again.state, DeliveryState::Pending);
    assert!(index
        .take_retries("billing")
        .expect("other worker")
        .is_empty());
    let taken = index.take_retries("ehr").expect("take");
    assert_eq!(taken.iter().map(|d| d.seq).collect::<Vec<_>>(), [1]);
    assert!(index.take_retries("ehr").expect("taken once").is_empty());
}
