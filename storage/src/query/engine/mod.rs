//! Query execution: candidates from the most selective index a key allows, then filtering.

use crate::error::StorageError;
use crate::index::{normalize_name, Index, Lookup, SecondaryKey};
use crate::records::{
    patient_key, AttrValue, Attributes, InstanceRecord, PatientRecord, SeriesRecord, StudyRecord,
};

use super::matching::Matcher;
use super::model::*;

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
    let patient = if with_patient {
        index.patient(&s.patient_key)?
    } else {
        None
    };
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
    if let Some(p) = patient {
        patient_view(&p, &mut a);
    }
    Ok(a)
}

/// A series' attributes over those of its study (`study`: the study's view).
fn series_view(s: &SeriesRecord, study: &Attributes) -> Attributes {
    let mut a = s.attributes.clone();
    a.insert(
        SERIES_UID.into(),
        AttrValue {
            vr: "UI".into(),
            values: vec![s.series_instance_uid.clone()],
        },
    );
    a.insert(NUM_SERIES_INSTANCES.into(), number(s.num_instances));
    fill(&mut a, study);
    a
}

/// Study views by UID, each built once per query (series and instances share them).
#[derive(Default)]
struct StudyViews(std::collections::HashMap<String, Attributes>);

impl StudyViews {
    fn get(&mut self, index: &dyn Index, uid: &str) -> Result<&Attributes, StorageError> {
        if !self.0.contains_key(uid) {
            let view = match index.study(uid)? {
                Some(study) => study_view(index, study)?,
                None => Attributes::new(),
            };
            self.0.insert(uid.to_string(), view);
        }
        Ok(&self.0[uid])
    }
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
                let (studies, more) = study_candidates(index, query, after.as_deref())?;
                after = studies.last().map(|s| s.study_instance_uid.clone());
                for s in studies {
                    if study_may_match(query, &s) && !emit(study_view_with(index, s, with_patient)?)
                    {
                        return Ok(());
                    }
                }
                if !more {
                    break;
                }
            }
        }
        Level::Series => {
            let mut views = StudyViews::default();
            for study in parent_studies(index, query, "SERIES")? {
                let series = match uids_of(query.key(SERIES_UID)) {
                    Some(list) => {
                        let mut out = Vec::new();
                        for uid in list {
                            out.extend(index.series(&uid)?);
                        }
                        out
                    }
                    None => index.study_series(&study)?,
                };
                for s in series {
                    let upper = views.get(index, &s.study_instance_uid)?;
                    if !emit(series_view(&s, upper)) {
                        return Ok(());
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
                        all.extend(index.series_uids(&study)?);
                    }
                    all
                }
            };
            let mut views = StudyViews::default();
            for series_uid in series_list {
                let Some(series) = index.series(&series_uid)? else {
                    continue;
                };
                let upper = series_view(&series, views.get(index, &series.study_instance_uid)?);
                let instances = match uids_of(query.key(SOP_UID)) {
                    Some(list) => {
                        let mut out = Vec::new();
                        for sop in list {
                            out.extend(index.instance(&sop)?);
                        }
                        out
                    }
                    None => index.series_instances(&series_uid)?,
                };
                for rec in instances {
                    if rec.series_instance_uid != series.series_instance_uid {
                        continue;
                    }
                    let mut a = rec.attributes;
                    fill(&mut a, &upper);
                    if !emit(a) {
                        return Ok(());
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
        let (studies, more) = study_candidates(index, query, after.as_deref())?;
        after = studies.last().map(|s| s.study_instance_uid.clone());
        found.extend(
            studies
                .into_iter()
                .filter(|s| study_may_match(query, s))
                .map(|s| s.study_instance_uid),
        );
        if !more {
            return Ok(found);
        }
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
    index.find(query, &mut |m| {
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

/// A page of candidate study records and whether more pages follow (full scans only).
fn study_candidates(
    index: &dyn Index,
    query: &Query,
    after: Option<&str>,
) -> Result<(Vec<StudyRecord>, bool), StorageError> {
    if let Some(uids) = uids_of(query.key(STUDY_UID)) {
        return Ok((index.studies_in(&uids)?, false));
    }
    let indexed =
        |key: SecondaryKey, lookup: Lookup| -> Result<(Vec<StudyRecord>, bool), StorageError> {
            Ok((index.studies_by(&key, &lookup, usize::MAX)?, false))
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
    let page = index.studies_page(after, PAGE)?;
    let more = page.len() == PAGE;
    Ok((page, more))
}

#[cfg(test)]
mod tests;
