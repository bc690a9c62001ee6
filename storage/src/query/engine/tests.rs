//! The engine over a real index: the embedded RocksDB and PostgreSQL.

use super::*;
use crate::index::{DuplicatePolicy, NewInstance, RocksIndex};
use crate::query::MatchOptions;
use crate::BlobKey;

fn attrs(pairs: &[(&str, &str, &str)]) -> Attributes {
    pairs
        .iter()
        .map(|(t, vr, v)| {
            (
                t.to_string(),
                AttrValue {
                    vr: vr.to_string(),
                    values: vec![v.to_string()],
                },
            )
        })
        .collect()
}

fn item(
    pid: &str,
    name: &str,
    study: &str,
    date: &str,
    series: &str,
    modality: &str,
    sop: &str,
) -> NewInstance {
    NewInstance {
        record: InstanceRecord {
            sop_instance_uid: sop.into(),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            series_instance_uid: series.into(),
            study_instance_uid: study.into(),
            patient_key: patient_key(pid, ""),
            transfer_syntax_uid: "1.2.840.10008.1.2".into(),
            size: 1,
            blob: BlobKey(sop.into()),
            sha256: None,
            received_ms: 0,
            source: "T".into(),
            attributes: attrs(&[("00080018", "UI", sop)]),
            versions: Vec::new(),
        },
        patient: attrs(&[(PATIENT_NAME, "PN", name), (PATIENT_ID, "LO", pid)]),
        study: attrs(&[
            (STUDY_DATE, "DA", date),
            (ACCESSION, "SH", &format!("A{study}")),
        ]),
        series: attrs(&[("00080060", "CS", modality), (SERIES_UID, "UI", series)]),
    }
}

/// A query from (tag, VR, value) triples.
fn query(level: Level, keys: &[(&str, &str, &str)]) -> Query {
    Query {
        level,
        keys: keys
            .iter()
            .map(|(t, vr, v)| QueryKey {
                tag: t.to_string(),
                vr: vr.to_string(),
                matcher: Matcher::parse(vr, v).expect("matcher"),
            })
            .collect(),
        options: MatchOptions::default(),
        relational: false,
    }
}

fn run(index: &dyn Index, level: Level, keys: &[(&str, &str, &str)]) -> Vec<Attributes> {
    let query = query(level, keys);
    let mut out = Vec::new();
    execute(index, &query, &mut |m| {
        out.push(m.attributes);
        true
    })
    .expect("execute");
    out
}

fn study_queries_by_each_index_and_by_scan(index: &dyn Index) {
    index
        .store_instances(
            vec![
                item(
                    "P1", "DOE^JANE", "1.1", "20240105", "1.1.1", "CT", "1.1.1.1",
                ),
                item(
                    "P1", "DOE^JANE", "1.1", "20240105", "1.1.2", "SR", "1.1.2.1",
                ),
                item(
                    "P2",
                    "SMITH^JOHN",
                    "1.2",
                    "20240320",
                    "1.2.1",
                    "MR",
                    "1.2.1.1",
                ),
            ],
            DuplicatePolicy::Keep,
        )
        .expect("store");
    let uids = |v: Vec<Attributes>| -> Vec<String> {
        v.iter().map(|a| a[STUDY_UID].values[0].clone()).collect()
    };
    assert_eq!(
        uids(run(index, Level::Study, &[(PATIENT_ID, "LO", "P1")])),
        ["1.1"]
    );
    assert_eq!(
        uids(run(index, Level::Study, &[(PATIENT_NAME, "PN", "SMI*")])),
        ["1.2"]
    );
    assert_eq!(
        uids(run(index, Level::Study, &[(STUDY_DATE, "DA", "20240301-")])),
        ["1.2"]
    );
    assert_eq!(
        uids(run(index, Level::Study, &[(ACCESSION, "SH", "A1.1")])),
        ["1.1"]
    );
    assert_eq!(
        uids(run(
            index,
            Level::Study,
            &[(MODALITIES_IN_STUDY, "CS", "SR")]
        )),
        ["1.1"]
    );
    assert_eq!(
        uids(run(index, Level::Study, &[(STUDY_UID, "UI", "1.2\\1.1")])),
        ["1.2", "1.1"]
    );
    assert_eq!(
        uids(run(index, Level::Study, &[("00081030", "LO", "")])).len(),
        2
    );
    let r = run(
        index,
        Level::Study,
        &[(PATIENT_ID, "LO", "P1"), (NUM_PATIENT_INSTANCES, "IS", "")],
    );
    assert_eq!(r[0][NUM_STUDY_SERIES].values, ["2"]);
    assert_eq!(r[0][MODALITIES_IN_STUDY].values, ["CT", "SR"]);
    assert_eq!(r[0][NUM_PATIENT_INSTANCES].values, ["2"]);
    let series = run(
        index,
        Level::Series,
        &[(STUDY_UID, "UI", "1.1"), ("00080060", "CS", "CT")],
    );
    assert_eq!(series.len(), 1);
    assert_eq!(
        run(index, Level::Image, &[(SERIES_UID, "UI", "1.1.2")]).len(),
        1
    );
    assert_eq!(
        run(index, Level::Patient, &[(PATIENT_NAME, "PN", "DOE*")]).len(),
        1
    );
    assert_eq!(run(index, Level::Patient, &[]).len(), 2);
    let sops = |q: &Query| -> Vec<String> {
        resolve_instances(index, q)
            .expect("resolve")
            .into_iter()
            .map(|r| r.sop_instance_uid)
            .collect()
    };
    assert_eq!(
        sops(&query(Level::Study, &[(STUDY_UID, "UI", "1.1")])),
        ["1.1.1.1", "1.1.2.1"]
    );
    assert_eq!(
        sops(&query(Level::Patient, &[(PATIENT_ID, "LO", "P2")])),
        ["1.2.1.1"]
    );
    assert_eq!(
        sops(&query(
            Level::Series,
            &[(STUDY_UID, "UI", "1.1"), (SERIES_UID, "UI", "1.1.2")]
        )),
        ["1.1.2.1"]
    );
    let query = Query {
        level: Level::Series,
        keys: vec![],
        options: MatchOptions::default(),
        relational: false,
    };
    assert!(matches!(
        execute(index, &query, &mut |_| true),
        Err(QueryError::MissingParentKey { .. })
    ));
}

fn relational_queries_search_across_studies(index: &dyn Index) {
    index
        .store_instances(
            vec![
                item(
                    "P1", "DOE^JANE", "1.1", "20240105", "1.1.1", "CT", "1.1.1.1",
                ),
                item(
                    "P1", "DOE^JANE", "1.1", "20240105", "1.1.2", "SR", "1.1.2.1",
                ),
                item(
                    "P2", "ROE^JOHN", "1.2", "20240320", "1.2.1", "CT", "1.2.1.1",
                ),
            ],
            DuplicatePolicy::Keep,
        )
        .expect("store");
    let relational = |level, keys: &[(&str, &str, &str)]| -> Vec<String> {
        let mut q = query(level, keys);
        q.relational = true;
        let tag = if level == Level::Series {
            SERIES_UID
        } else {
            SOP_UID
        };
        let mut out = Vec::new();
        execute(index, &q, &mut |m| {
            out.push(m.attributes[tag].values[0].clone());
            true
        })
        .expect("execute");
        out.sort();
        out
    };
    assert_eq!(
        relational(Level::Series, &[(MODALITY, "CS", "CT")]),
        ["1.1.1", "1.2.1"]
    );
    assert_eq!(
        relational(Level::Series, &[(PATIENT_ID, "LO", "P1")]),
        ["1.1.1", "1.1.2"]
    );
    assert_eq!(
        relational(Level::Image, &[(PATIENT_NAME, "PN", "ROE*")]),
        ["1.2.1.1"]
    );
    assert_eq!(
        relational(
            Level::Image,
            &[(STUDY_UID, "UI", "1.1"), (MODALITY, "CS", "SR")]
        ),
        ["1.1.2.1"]
    );
    // Hierarchical (C-FIND) instance queries still need their series.
    let q = query(Level::Image, &[(STUDY_UID, "UI", "1.1")]);
    assert!(matches!(
        execute(index, &q, &mut |_| true),
        Err(QueryError::MissingParentKey { .. })
    ));
}

/// Each test above runs on the embedded index and on PostgreSQL (a throwaway cluster).
mod rocks {
    use super::*;

    #[test]
    fn study_queries_by_each_index_and_by_scan() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = RocksIndex::open(dir.path().join("i")).expect("open");
        super::study_queries_by_each_index_and_by_scan(&index);
    }

    #[test]
    fn relational_queries_search_across_studies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = RocksIndex::open(dir.path().join("i")).expect("open");
        super::relational_queries_search_across_studies(&index);
    }
}

#[cfg(feature = "postgres")]
mod postgres {

    #[test]
    fn study_queries_by_each_index_and_by_scan() {
        let db = crate::pg::testing::Postgres::start();
        let index = crate::pg::PgIndex::open(&db.settings()).expect("open");
        super::study_queries_by_each_index_and_by_scan(&index);
    }

    #[test]
    fn relational_queries_search_across_studies() {
        let db = crate::pg::testing::Postgres::start();
        let index = crate::pg::PgIndex::open(&db.settings()).expect("open");
        super::relational_queries_search_across_studies(&index);
    }
}
