//! Query execution: candidates from the most selective index a key allows, then filtering.

use std::collections::HashSet;
use std::sync::OnceLock;

use crate::attrs::{tag_key, INSTANCE_TAGS, PATIENT_TAGS, SERIES_TAGS, STUDY_TAGS};
use crate::error::StorageError;
use crate::index::{normalize_name, Index, Lookup, SecondaryKey};
use crate::records::{
    patient_key, AttrValue, Attributes, InstanceRecord, PatientRecord, SeriesRecord, StudyRecord,
};

use super::matching::{MatchOptions, Matcher};

/// Query/Retrieve level (PS3.4 C.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Patient,
    Study,
    Series,
    Image,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PATIENT" => Some(Level::Patient),
            "STUDY" => Some(Level::Study),
            "SERIES" => Some(Level::Series),
            "IMAGE" | "INSTANCE" => Some(Level::Image),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Patient => "PATIENT",
            Level::Study => "STUDY",
            Level::Series => "SERIES",
            Level::Image => "IMAGE",
        }
    }
}

#[derive(Debug, Clone)]
pub struct QueryKey {
    /// Tag as 8 hex digits.
    pub tag: String,
    pub vr: String,
    pub matcher: Matcher,
}

#[derive(Debug, Clone)]
pub struct Query {
    pub level: Level,
    pub keys: Vec<QueryKey>,
    pub options: MatchOptions,
    /// Relational query (QIDO-RS `/series`, `/instances`): a series or instance query may
    /// omit its parent UIDs and is answered across all studies. C-FIND is hierarchical.
    pub relational: bool,
}

/// One matching entity: every attribute the index holds for it and the levels above it,
/// plus the computed attributes of PS3.4 C.3.4.
#[derive(Debug, Clone, Default)]
pub struct QueryMatch {
    pub attributes: Attributes,
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("a {level} level query needs {key} (hierarchical query, PS3.4 C.4.1.2.1)")]
    MissingParentKey {
        level: &'static str,
        key: &'static str,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

// Computed attributes (PS3.4 C.3.4) and keys we need by name.
const PATIENT_ID: &str = "00100020";
const PATIENT_NAME: &str = "00100010";
const ISSUER_OF_PATIENT_ID: &str = "00100021";
const STUDY_UID: &str = "0020000D";
const SERIES_UID: &str = "0020000E";
const SOP_UID: &str = "00080018";
const ACCESSION: &str = "00080050";
const STUDY_DATE: &str = "00080020";
const MODALITY: &str = "00080060";
const MODALITIES_IN_STUDY: &str = "00080061";
const SOP_CLASSES_IN_STUDY: &str = "00080062";
const NUM_PATIENT_STUDIES: &str = "00201200";
const NUM_PATIENT_SERIES: &str = "00201202";
const NUM_PATIENT_INSTANCES: &str = "00201204";
const NUM_STUDY_SERIES: &str = "00201206";
const NUM_STUDY_INSTANCES: &str = "00201208";
const NUM_SERIES_INSTANCES: &str = "00201209";
const COMPUTED: &[&str] = &[
    MODALITIES_IN_STUDY,
    SOP_CLASSES_IN_STUDY,
    NUM_PATIENT_STUDIES,
    NUM_PATIENT_SERIES,
    NUM_PATIENT_INSTANCES,
    NUM_STUDY_SERIES,
    NUM_STUDY_INSTANCES,
    NUM_SERIES_INSTANCES,
];

/// Keys the index can match on; others are ignored for matching (PS3.4 C.2.2.1.3 allows it)
/// and returned empty.
pub fn is_supported(tag: &str) -> bool {
    static SUPPORTED: OnceLock<HashSet<String>> = OnceLock::new();
    SUPPORTED
        .get_or_init(|| {
            [PATIENT_TAGS, STUDY_TAGS, SERIES_TAGS, INSTANCE_TAGS]
                .iter()
                .flat_map(|list| list.iter().map(|t| tag_key(*t)))
                .chain(COMPUTED.iter().map(|t| t.to_string()))
                .collect()
        })
        .contains(tag)
}

/// A cheap look at a study record alone: false only when a key certainly does not match,
/// so the full view (with its patient record) is built for plausible candidates only.
fn study_may_match(query: &Query, s: &StudyRecord) -> bool {
    query.keys.iter().all(|k| {
        if matches!(k.matcher, Matcher::Universal) || !is_supported(&k.tag) {
            return true;
        }
        let owned;
        let value = match k.tag.as_str() {
            MODALITIES_IN_STUDY => {
                owned = AttrValue {
                    vr: "CS".into(),
                    values: s.modalities.iter().cloned().collect(),
                };
                &owned
            }
            STUDY_UID => {
                return k.matcher.matches(
                    "UI",
                    std::slice::from_ref(&s.study_instance_uid),
                    query.options,
                )
            }
            tag => match s.attributes.get(tag) {
                Some(v) => v,
                None => return true,
            },
        };
        k.matcher.matches(&value.vr, &value.values, query.options)
    })
}

const PAGE: usize = 1000;

impl Query {
    fn key(&self, tag: &str) -> Option<&Matcher> {
        self.keys.iter().find(|k| k.tag == tag).map(|k| &k.matcher)
    }

    fn accepts(&self, m: &QueryMatch) -> bool {
        self.keys
            .iter()
            .filter(|k| is_supported(&k.tag))
            .all(|k| match m.attributes.get(&k.tag) {
                Some(v) => k.matcher.matches(&v.vr, &v.values, self.options),
                None => matches!(k.matcher, Matcher::Universal),
            })
    }
}

fn number(n: u64) -> AttrValue {
    AttrValue {
        vr: "IS".into(),
        values: vec![n.to_string()],
    }
}

fn fill(into: &mut Attributes, from: &Attributes) {
    for (k, v) in from {
        into.entry(k.clone()).or_insert_with(|| v.clone());
    }
}

fn patient_view(p: &PatientRecord, into: &mut Attributes) {
    fill(into, &p.attributes);
    into.insert(NUM_PATIENT_STUDIES.into(), number(p.num_studies));
    into.insert(NUM_PATIENT_SERIES.into(), number(p.num_series));
    into.insert(NUM_PATIENT_INSTANCES.into(), number(p.num_instances));
}

fn study_view(index: &dyn Index, s: StudyRecord) -> Result<Attributes, StorageError> {
    study_view_with(index, s, true)
}

/// The study's attributes; the patient record (for the NumberOfPatientRelated* counts, the
/// only patient values not copied into the study) is read only when `with_patient`.
fn study_view_with(
    index: &dyn Index,
    s: StudyRecord,
    with_patient: bool,
) -> Result<Attributes, StorageError> {
    let mut a = s.attributes;
    a.insert(
        STUDY_UID.into(),
        AttrValue {
            vr: "UI".into(),
            values: vec![s.study_instance_uid],
        },
    );
    a.insert(NUM_STUDY_SERIES.into(), number(s.num_series));
    a.insert(NUM_STUDY_INSTANCES.into(), number(s.num_instances));
    a.insert(
        MODALITIES_IN_STUDY.into(),
        AttrValue {
            vr: "CS".into(),
            values: s.modalities.into_iter().collect(),
        },
    );
    a.insert(
        SOP_CLASSES_IN_STUDY.into(),
        AttrValue {
            vr: "UI".into(),
            values: s.sop_classes.into_iter().collect(),
        },
    );
    if with_patient {
        if let Some(p) = index.patient(&s.patient_key)? {
            patient_view(&p, &mut a);
        }
    }
    Ok(a)
}

fn series_view(index: &dyn Index, s: &SeriesRecord) -> Result<Attributes, StorageError> {
    let mut a = s.attributes.clone();
    a.insert(
        SERIES_UID.into(),
        AttrValue {
            vr: "UI".into(),
            values: vec![s.series_instance_uid.clone()],
        },
    );
    a.insert(NUM_SERIES_INSTANCES.into(), number(s.num_instances));
    if let Some(study) = index.study(&s.study_instance_uid)? {
        fill(&mut a, &study_view(index, study)?);
    }
    Ok(a)
}

/// UIDs named by a Single or UID-list key.
fn uids_of(m: Option<&Matcher>) -> Option<Vec<String>> {
    match m? {
        Matcher::Single(u) => Some(vec![u.clone()]),
        Matcher::UidList(list) => Some(list.clone()),
        _ => None,
    }
}

/// Run `query`, calling `on_match` for each match until it returns false.
pub fn execute(
    index: &dyn Index,
    query: &Query,
    on_match: &mut dyn FnMut(QueryMatch) -> bool,
) -> Result<(), QueryError> {
    let mut emit = |attributes: Attributes| -> bool {
        let m = QueryMatch { attributes };
        if query.accepts(&m) {
            on_match(m)
        } else {
            true
        }
    };
    match query.level {
        Level::Patient => {
            for key in patient_candidates(index, query)? {
                if let Some(p) = index.patient(&key)? {
                    let mut a = Attributes::new();
                    patient_view(&p, &mut a);
                    if !emit(a) {
                        return Ok(());
                    }
                }
            }
        }
        Level::Study => {
            let with_patient = query.keys.iter().any(|k| {
                [
                    NUM_PATIENT_STUDIES,
                    NUM_PATIENT_SERIES,
                    NUM_PATIENT_INSTANCES,
                ]
                .contains(&k.tag.as_str())
            });
            let mut after: Option<String> = None;
            loop {
                let (uids, more) = study_candidates(index, query, after.as_deref())?;
                for uid in &uids {
                    if let Some(s) = index.study(uid)? {
                        if study_may_match(query, &s)
                            && !emit(study_view_with(index, s, with_patient)?)
                        {
                            return Ok(());
                        }
                    }
                }
                if !more {
                    break;
                }
                after = uids.last().cloned();
            }
        }
        Level::Series => {
            let studies = parent_studies(index, query, "SERIES")?;
            for study in studies {
                let series = match uids_of(query.key(SERIES_UID)) {
                    Some(list) => list,
                    None => {
                        index.scan_secondary(&SecondaryKey::SeriesOfStudy(study), usize::MAX)?
                    }
                };
                for uid in series {
                    if let Some(s) = index.series(&uid)? {
                        if !emit(series_view(index, &s)?) {
                            return Ok(());
                        }
                    }
                }
            }
        }
        Level::Image => {
            let series_list = match uids_of(query.key(SERIES_UID)) {
                Some(list) => list,
                None => {
                    if !query.relational {
                        return Err(QueryError::MissingParentKey {
                            level: "IMAGE",
                            key: "SeriesInstanceUID",
                        });
                    }
                    let mut all = Vec::new();
                    for study in parent_studies(index, query, "IMAGE")? {
                        all.extend(
                            index
                                .scan_secondary(&SecondaryKey::SeriesOfStudy(study), usize::MAX)?,
                        );
                    }
                    all
                }
            };
            for series_uid in series_list {
                let Some(series) = index.series(&series_uid)? else {
                    continue;
                };
                let upper = series_view(index, &series)?;
                let sops = match uids_of(query.key(SOP_UID)) {
                    Some(list) => list,
                    None => index
                        .scan_secondary(&SecondaryKey::InstancesOfSeries(series_uid), usize::MAX)?,
                };
                for sop in sops {
                    if let Some(rec) = index.instance(&sop)? {
                        if rec.series_instance_uid != series.series_instance_uid {
                            continue;
                        }
                        let mut a = rec.attributes.clone();
                        fill(&mut a, &upper);
                        if !emit(a) {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// The studies a series or instance query looks in: those its StudyInstanceUID key names, or,
/// for a relational query without one, every study whose own attributes may match (found
/// through the study indexes, so `PatientID=` or a date range stays cheap).
fn parent_studies(
    index: &dyn Index,
    query: &Query,
    level: &'static str,
) -> Result<Vec<String>, QueryError> {
    if let Some(uids) = uids_of(query.key(STUDY_UID)) {
        return Ok(uids);
    }
    if !query.relational {
        return Err(QueryError::MissingParentKey {
            level,
            key: if level == "SERIES" {
                "StudyInstanceUID"
            } else {
                "SeriesInstanceUID"
            },
        });
    }
    let mut found = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (uids, more) = study_candidates(index, query, after.as_deref())?;
        for uid in &uids {
            if let Some(s) = index.study(uid)? {
                if study_may_match(query, &s) {
                    found.push(uid.clone());
                }
            }
        }
        if !more {
            return Ok(found);
        }
        after = uids.last().cloned();
    }
}

/// The instances a C-MOVE or C-GET of `query` retrieves: every instance under each match.
pub fn resolve_instances(
    index: &dyn Index,
    query: &Query,
) -> Result<Vec<InstanceRecord>, QueryError> {
    let mut uids: Vec<String> = Vec::new();
    let mut failure: Option<StorageError> = None;
    let first = |m: &QueryMatch, tag: &str| -> Option<String> {
        m.attributes
            .get(tag)
            .and_then(|v| v.first())
            .map(str::to_string)
    };
    let expand_series = |series: String, uids: &mut Vec<String>| -> Result<(), StorageError> {
        uids.extend(index.scan_secondary(&SecondaryKey::InstancesOfSeries(series), usize::MAX)?);
        Ok(())
    };
    let expand_study = |study: String, uids: &mut Vec<String>| -> Result<(), StorageError> {
        for series in index.scan_secondary(&SecondaryKey::SeriesOfStudy(study), usize::MAX)? {
            expand_series(series, uids)?;
        }
        Ok(())
    };
    execute(index, query, &mut |m| {
        let step = match query.level {
            Level::Image => {
                uids.extend(first(&m, SOP_UID));
                Ok(())
            }
            Level::Series => first(&m, SERIES_UID).map_or(Ok(()), |s| expand_series(s, &mut uids)),
            Level::Study => first(&m, STUDY_UID).map_or(Ok(()), |s| expand_study(s, &mut uids)),
            Level::Patient => {
                let key = patient_key(
                    &first(&m, PATIENT_ID).unwrap_or_default(),
                    &first(&m, ISSUER_OF_PATIENT_ID).unwrap_or_default(),
                );
                index
                    .scan_secondary(&SecondaryKey::StudiesOfPatient(key), usize::MAX)
                    .and_then(|studies| {
                        studies
                            .into_iter()
                            .try_for_each(|s| expand_study(s, &mut uids))
                    })
            }
        };
        match step {
            Ok(()) => true,
            Err(e) => {
                failure = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = failure {
        return Err(e.into());
    }
    let mut out = Vec::with_capacity(uids.len());
    for uid in uids {
        if let Some(rec) = index.instance(&uid)? {
            out.push(rec);
        }
    }
    Ok(out)
}

fn patient_candidates(index: &dyn Index, query: &Query) -> Result<Vec<String>, StorageError> {
    if let Some(Matcher::Single(pid)) = query.key(PATIENT_ID) {
        let prefix = format!("{pid}\u{1}");
        let keys = index.list_patients(Some(pid), PAGE)?;
        return Ok(keys
            .into_iter()
            .take_while(|k| k.starts_with(&prefix))
            .collect());
    }
    if let Some(name) = query.key(PATIENT_NAME) {
        let lookup = match name {
            Matcher::Single(n) => Some((n.as_str(), Lookup::Exact)),
            m => m.literal_prefix().map(|p| (p, Lookup::Prefix)),
        };
        if let Some((value, lookup)) = lookup {
            let key = SecondaryKey::PatientsByName(normalize_name(value));
            return index.scan_secondary_by(&key, &lookup, usize::MAX);
        }
    }
    let mut all = Vec::new();
    loop {
        let page = index.list_patients(all.last().map(String::as_str), PAGE)?;
        let done = page.len() < PAGE;
        all.extend(page);
        if done {
            return Ok(all);
        }
    }
}

/// A page of candidate study UIDs and whether more pages follow (full scans only).
fn study_candidates(
    index: &dyn Index,
    query: &Query,
    after: Option<&str>,
) -> Result<(Vec<String>, bool), StorageError> {
    if let Some(uids) = uids_of(query.key(STUDY_UID)) {
        return Ok((uids, false));
    }
    let indexed =
        |key: SecondaryKey, lookup: Lookup| -> Result<(Vec<String>, bool), StorageError> {
            Ok((index.scan_secondary_by(&key, &lookup, usize::MAX)?, false))
        };
    if let Some(Matcher::Single(acc)) = query.key(ACCESSION) {
        return indexed(SecondaryKey::StudiesByAccession(acc.clone()), Lookup::Exact);
    }
    if let Some(Matcher::Single(pid)) = query.key(PATIENT_ID) {
        return indexed(SecondaryKey::StudiesByPatientId(pid.clone()), Lookup::Exact);
    }
    match query.key(STUDY_DATE) {
        Some(Matcher::Single(d)) => {
            return indexed(SecondaryKey::StudiesByDate(d.clone()), Lookup::Exact);
        }
        Some(Matcher::Range { lower, upper }) => {
            let key = SecondaryKey::StudiesByDate(lower.clone().unwrap_or_default());
            return indexed(
                key,
                Lookup::Range {
                    upper: upper.clone(),
                },
            );
        }
        _ => {}
    }
    if let Some(name) = query.key(PATIENT_NAME) {
        let value = match name {
            Matcher::Single(n) => Some(n.as_str()),
            m => m.literal_prefix(),
        };
        if let Some(v) = value {
            // Names are indexed upper-cased: a prefix scan finds a superset, filtering decides.
            return indexed(
                SecondaryKey::StudiesByPatientName(normalize_name(v)),
                Lookup::Prefix,
            );
        }
    }
    if let Some(Matcher::Single(m)) = query.key(MODALITIES_IN_STUDY) {
        return indexed(SecondaryKey::StudiesByModality(m.clone()), Lookup::Exact);
    }
    // A relational series or instance query by Modality: the studies holding that modality.
    if query.level != Level::Study {
        if let Some(Matcher::Single(m)) = query.key(MODALITY) {
            return indexed(SecondaryKey::StudiesByModality(m.clone()), Lookup::Exact);
        }
    }
    let page = index.list_studies(after, PAGE)?;
    let more = page.len() == PAGE;
    Ok((page, more))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{DuplicatePolicy, NewInstance, RocksIndex};
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

    fn run(index: &RocksIndex, level: Level, keys: &[(&str, &str, &str)]) -> Vec<Attributes> {
        let query = query(level, keys);
        let mut out = Vec::new();
        execute(index, &query, &mut |m| {
            out.push(m.attributes);
            true
        })
        .expect("execute");
        out
    }

    #[test]
    fn study_queries_by_each_index_and_by_scan() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = RocksIndex::open(dir.path().join("i")).expect("open");
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
            uids(run(&index, Level::Study, &[(PATIENT_ID, "LO", "P1")])),
            ["1.1"]
        );
        assert_eq!(
            uids(run(&index, Level::Study, &[(PATIENT_NAME, "PN", "SMI*")])),
            ["1.2"]
        );
        assert_eq!(
            uids(run(
                &index,
                Level::Study,
                &[(STUDY_DATE, "DA", "20240301-")]
            )),
            ["1.2"]
        );
        assert_eq!(
            uids(run(&index, Level::Study, &[(ACCESSION, "SH", "A1.1")])),
            ["1.1"]
        );
        assert_eq!(
            uids(run(
                &index,
                Level::Study,
                &[(MODALITIES_IN_STUDY, "CS", "SR")]
            )),
            ["1.1"]
        );
        assert_eq!(
            uids(run(&index, Level::Study, &[(STUDY_UID, "UI", "1.2\\1.1")])),
            ["1.2", "1.1"]
        );
        assert_eq!(
            uids(run(&index, Level::Study, &[("00081030", "LO", "")])).len(),
            2
        );
        let r = run(
            &index,
            Level::Study,
            &[(PATIENT_ID, "LO", "P1"), (NUM_PATIENT_INSTANCES, "IS", "")],
        );
        assert_eq!(r[0][NUM_STUDY_SERIES].values, ["2"]);
        assert_eq!(r[0][MODALITIES_IN_STUDY].values, ["CT", "SR"]);
        assert_eq!(r[0][NUM_PATIENT_INSTANCES].values, ["2"]);
        let series = run(
            &index,
            Level::Series,
            &[(STUDY_UID, "UI", "1.1"), ("00080060", "CS", "CT")],
        );
        assert_eq!(series.len(), 1);
        assert_eq!(
            run(&index, Level::Image, &[(SERIES_UID, "UI", "1.1.2")]).len(),
            1
        );
        assert_eq!(
            run(&index, Level::Patient, &[(PATIENT_NAME, "PN", "DOE*")]).len(),
            1
        );
        assert_eq!(run(&index, Level::Patient, &[]).len(), 2);
        let sops = |q: &Query| -> Vec<String> {
            resolve_instances(&index, q)
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
            execute(&index, &query, &mut |_| true),
            Err(QueryError::MissingParentKey { .. })
        ));
    }

    #[test]
    fn relational_queries_search_across_studies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = RocksIndex::open(dir.path().join("i")).expect("open");
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
            execute(&index, &q, &mut |m| {
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
            execute(&index, &q, &mut |_| true),
            Err(QueryError::MissingParentKey { .. })
        ));
    }
}
