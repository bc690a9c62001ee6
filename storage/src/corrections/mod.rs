//! Corrections of stored data: a study's or a patient's attributes, two patients merged, a
//! series moved to another study, a study split. Each one writes new versions of the
//! instances it touches (the old files stay, see [`crate::records::PriorVersion`]) and is one
//! atomic index change with its outbox events, so the EHR, billing and portal workers fix
//! their copies ([`crate::events::EventKind::is_correction`]).

mod edits;
mod orders_follow;
mod rewrite;

pub use orders_follow::follow_orders;

use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use serde::Serialize;

pub use edits::{AttributeEdits, Edit};
pub use rewrite::MAX_INSTANCES;

use crate::attrs::{tag_key, PATIENT_TAGS, STUDY_TAGS};
use crate::audit::Interface;
use crate::error::StorageError;
use crate::events::{EventKind, NewEvent};
use crate::index::SecondaryKey;
use crate::records::{first_value, patient_key, Attributes, InstanceRecord, StudyRecord};
use crate::store::Store;
use rewrite::{rewrite_and_commit, Plan};

/// Why a correction was not made (nothing was changed).
#[derive(Debug, thiserror::Error)]
pub enum CorrectionError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("invalid correction: {0}")]
    Invalid(String),
    #[error("cannot write the corrected instance {sop_instance_uid}: {source}")]
    Rewrite {
        sop_instance_uid: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What a correction did, for the answer and the audit record.
#[derive(Debug, Clone, Serialize)]
pub struct Corrected {
    /// The studies as they are now (a moved series' new study first).
    pub studies: Vec<String>,
    pub instances: usize,
    /// The changed attributes before and after (DICOM keyword → value), for the audit.
    pub before: serde_json::Map<String, serde_json::Value>,
    pub after: serde_json::Map<String, serde_json::Value>,
}

impl Corrected {
    /// One line for the audit trail: what changed, from what to what.
    pub fn audit_detail(&self) -> String {
        serde_json::json!({
            "studies": self.studies,
            "instances": self.instances,
            "before": self.before,
            "after": self.after,
        })
        .to_string()
    }
}

/// Set attributes of one study (and of its patient, as the study's files carry them). A new
/// PatientID moves the study to that patient.
pub fn update_study(
    store: &Store,
    study_uid: &str,
    edits: &AttributeEdits,
    via: Interface,
) -> Result<Corrected, CorrectionError> {
    let study = study_record(store, study_uid)?;
    let old_key = study.patient_key.clone();
    let new_key = edited_patient_key(&study.attributes, edits);
    let (before, after) = compare(&study.attributes, edits);
    if before == after {
        // Nothing changes: no new versions, no event (an EHR may re-send the same values).
        return Ok(unchanged(vec![study_uid.to_string()], before));
    }
    let patient = edits.patient_attributes();
    let plan = Plan {
        instances: store.index.study_instances(study_uid)?,
        reason: "study.update",
        edit: &|_, obj| {
            edits.apply(obj);
            Ok(())
        },
        events: vec![event(
            EventKind::StudyUpdated,
            study_uid,
            None,
            &new_key,
            None,
            (new_key != old_key).then_some(old_key),
        )],
        patient_attributes: (!patient.is_empty()).then(|| (new_key.clone(), patient)),
    };
    let instances = rewrite_and_commit(store, plan, via)?;
    Ok(Corrected {
        studies: vec![study_uid.to_string()],
        instances,
        before,
        after,
    })
}

/// Set patient attributes in every study of a patient.
pub fn update_patient(
    store: &Store,
    key: &str,
    edits: &AttributeEdits,
    via: Interface,
) -> Result<Corrected, CorrectionError> {
    if !edits.patient_only() {
        return Err(CorrectionError::Invalid(
            "only patient attributes are corrected on a patient; study attributes on its study"
                .into(),
        ));
    }
    let patient = store
        .index
        .patient(key)?
        .ok_or_else(|| CorrectionError::NotFound(format!("patient {}", display_key(key))))?;
    let new_key = edited_patient_key(&patient.attributes, edits);
    let (before, after) = compare(&patient.attributes, edits);
    let studies = studies_of_patient(store, key)?;
    if before == after {
        return Ok(unchanged(studies, before));
    }
    let previous = (new_key != key).then_some(key);
    let events = study_events(&studies, EventKind::PatientUpdated, &new_key, previous);
    let plan = Plan {
        instances: instances_of(store, &studies)?,
        reason: "patient.update",
        edit: &|_, obj| {
            edits.apply(obj);
            Ok(())
        },
        events,
        patient_attributes: Some((new_key.clone(), edits.patient_attributes())),
    };
    let instances = rewrite_and_commit(store, plan, via)?;
    Ok(Corrected {
        studies,
        instances,
        before,
        after,
    })
}

/// Move every study of patient `from` to patient `into`: their files take `into`'s patient
/// attributes, and `from` is gone afterwards.
pub fn merge_patients(
    store: &Store,
    from: &str,
    into: &str,
    via: Interface,
) -> Result<Corrected, CorrectionError> {
    if from == into {
        return Err(CorrectionError::Invalid(
            "a patient cannot be merged into itself".into(),
        ));
    }
    let source = store.index.patient(from)?.ok_or_else(|| {
        CorrectionError::NotFound(format!("patient to merge {}", display_key(from)))
    })?;
    let target = store.index.patient(into)?.ok_or_else(|| {
        CorrectionError::NotFound(format!("patient to merge into {}", display_key(into)))
    })?;
    let edits = AttributeEdits::from_record(&target.attributes, PATIENT_TAGS);
    let (before, after) = compare(&source.attributes, &edits);
    let studies = studies_of_patient(store, from)?;
    let events = study_events(&studies, EventKind::PatientsMerged, into, Some(from));
    let plan = Plan {
        instances: instances_of(store, &studies)?,
        reason: "patient.merge",
        edit: &|_, obj| {
            edits.apply(obj);
            Ok(())
        },
        events,
        patient_attributes: None,
    };
    let instances = rewrite_and_commit(store, plan, via)?;
    // The worklist follows too: orders placed for the merged patient.
    let a = &target.attributes;
    let surviving = crate::orders::OrderPatient {
        id: first_value(a, "00100020").to_string(),
        issuer: first_value(a, "00100021").to_string(),
        name: first_value(a, "00100010").to_string(),
        birth_date: first_value(a, "00100030").to_string(),
        sex: first_value(a, "00100040").to_string(),
    };
    let s = &source.attributes;
    follow_orders(
        store,
        first_value(s, "00100020"),
        first_value(s, "00100021"),
        &surviving,
        crate::ingest::now_ms(),
    )?;
    Ok(Corrected {
        studies,
        instances,
        before,
        after,
    })
}

/// Move a series into another stored study: its files take that study's UID and its study
/// and patient attributes.
pub fn move_series(
    store: &Store,
    series_uid: &str,
    to_study: &str,
    via: Interface,
) -> Result<Corrected, CorrectionError> {
    let series = store
        .index
        .series(series_uid)?
        .ok_or_else(|| CorrectionError::NotFound(format!("series {series_uid}")))?;
    let source = study_record(store, &series.study_instance_uid)?;
    if source.study_instance_uid == to_study {
        return Err(CorrectionError::Invalid(format!(
            "series {series_uid} is already in study {to_study}"
        )));
    }
    let target = store
        .index
        .study(to_study)?
        .ok_or_else(|| CorrectionError::NotFound(format!("study to move into {to_study}")))?;
    let level_tags: Vec<Tag> = PATIENT_TAGS
        .iter()
        .chain(STUDY_TAGS)
        .copied()
        .filter(|t| *t != tags::SPECIFIC_CHARACTER_SET && *t != tags::STUDY_INSTANCE_UID)
        .collect();
    let edits = AttributeEdits::from_record(&target.attributes, &level_tags);
    let before = uid_change(&source.study_instance_uid);
    let after = uid_change(to_study);
    let events = vec![
        event(
            EventKind::SeriesMoved,
            to_study,
            Some(series_uid),
            &target.patient_key,
            Some(&source.study_instance_uid),
            (target.patient_key != source.patient_key).then(|| source.patient_key.clone()),
        ),
        event(
            EventKind::StudyUpdated,
            &source.study_instance_uid,
            None,
            &source.patient_key,
            None,
            None,
        ),
    ];
    let plan = Plan {
        instances: store.index.series_instances(series_uid)?,
        reason: "series.move",
        edit: &|_, obj| {
            edits.apply(obj);
            set_study_uid(obj, to_study);
            Ok(())
        },
        events,
        patient_attributes: None,
    };
    let instances = rewrite_and_commit(store, plan, via)?;
    Ok(Corrected {
        studies: vec![to_study.to_string(), source.study_instance_uid],
        instances,
        before,
        after,
    })
}

/// Move some series of a study into a new study (same patient and study attributes, a new
/// Study Instance UID); returns the new study first.
pub fn split_study(
    store: &Store,
    study_uid: &str,
    series: &[String],
    via: Interface,
) -> Result<Corrected, CorrectionError> {
    let study = study_record(store, study_uid)?;
    if series.is_empty() {
        return Err(CorrectionError::Invalid(
            "name the series to split off".into(),
        ));
    }
    let all = store.index.series_uids(study_uid)?;
    if let Some(stray) = series.iter().find(|s| !all.contains(s)) {
        return Err(CorrectionError::NotFound(format!(
            "series {stray} in study {study_uid}"
        )));
    }
    if all.iter().all(|s| series.contains(s)) {
        return Err(CorrectionError::Invalid(
            "splitting off every series would leave the study empty".into(),
        ));
    }
    let new_uid = new_study_uid();
    let mut instances = Vec::new();
    let mut events = Vec::new();
    for s in series {
        instances.extend(store.index.series_instances(s)?);
        events.push(event(
            EventKind::SeriesMoved,
            &new_uid,
            Some(s),
            &study.patient_key,
            Some(study_uid),
            None,
        ));
    }
    events.push(event(
        EventKind::StudyUpdated,
        study_uid,
        None,
        &study.patient_key,
        None,
        None,
    ));
    let plan = Plan {
        instances,
        reason: "study.split",
        edit: &|_, obj| {
            set_study_uid(obj, &new_uid);
            Ok(())
        },
        events,
        patient_attributes: None,
    };
    let instances = rewrite_and_commit(store, plan, via)?;
    Ok(Corrected {
        studies: vec![new_uid.clone(), study_uid.to_string()],
        instances,
        before: uid_change(study_uid),
        after: uid_change(&new_uid),
    })
}

/// The stored key of a patient named by PatientID and, optionally, its issuer. Without an
/// issuer, the one patient with that ID (refused when several issuers use it).
pub fn find_patient(
    store: &Store,
    patient_id: &str,
    issuer: Option<&str>,
) -> Result<Option<String>, CorrectionError> {
    if let Some(issuer) = issuer {
        let key = patient_key(patient_id, issuer);
        return Ok(store.index.patient(&key)?.map(|_| key));
    }
    let studies = store
        .index
        .scan_secondary(&SecondaryKey::StudiesByPatientId(patient_id.into()), 10_000)?;
    let mut keys: Vec<String> = Vec::new();
    for uid in studies {
        if let Some(s) = store.index.study(&uid)? {
            if first_value(&s.attributes, "00100020") == patient_id
                && !keys.contains(&s.patient_key)
            {
                keys.push(s.patient_key);
            }
        }
    }
    match keys.len() {
        0 => Ok(None),
        1 => Ok(keys.pop()),
        _ => Err(CorrectionError::Invalid(format!(
            "PatientID {patient_id} is used by {} issuers; name the issuer",
            keys.len()
        ))),
    }
}

/// A patient key as people read it: `ID` or `ID (issuer)`.
pub fn display_key(key: &str) -> String {
    match key.split_once('\u{1}') {
        Some((id, "")) => id.to_string(),
        Some((id, issuer)) => format!("{id} ({issuer})"),
        None => key.to_string(),
    }
}

fn study_record(store: &Store, uid: &str) -> Result<StudyRecord, CorrectionError> {
    store
        .index
        .study(uid)?
        .ok_or_else(|| CorrectionError::NotFound(format!("study {uid}")))
}

fn studies_of_patient(store: &Store, key: &str) -> Result<Vec<String>, CorrectionError> {
    Ok(store
        .index
        .scan_secondary(&SecondaryKey::StudiesOfPatient(key.into()), usize::MAX)?)
}

fn instances_of(store: &Store, studies: &[String]) -> Result<Vec<InstanceRecord>, CorrectionError> {
    let mut out = Vec::new();
    for s in studies {
        out.extend(store.index.study_instances(s)?);
        if out.len() > MAX_INSTANCES {
            break;
        }
    }
    Ok(out)
}

/// The patient key after the edits (a new PatientID or issuer makes another patient).
fn edited_patient_key(attrs: &Attributes, edits: &AttributeEdits) -> String {
    let value = |tag: Tag, key: &str| match edits.get(tag) {
        Some(e) => e.values.first().cloned().unwrap_or_default(),
        None => first_value(attrs, key).to_string(),
    };
    patient_key(
        &value(tags::PATIENT_ID, "00100020"),
        &value(tags::ISSUER_OF_PATIENT_ID, "00100021"),
    )
}

type Changes = serde_json::Map<String, serde_json::Value>;

/// The edited attributes as they were and as they will be, by keyword.
fn compare(attrs: &Attributes, edits: &AttributeEdits) -> (Changes, Changes) {
    let mut before = Changes::new();
    let mut after = Changes::new();
    for e in &edits.edits {
        let name = keyword(e.tag);
        let old = attrs
            .get(&tag_key(e.tag))
            .map(|v| v.values.join("\\"))
            .unwrap_or_default();
        before.insert(name.clone(), old.into());
        after.insert(name, e.values.join("\\").into());
    }
    (before, after)
}

/// The answer of a correction that would change nothing.
fn unchanged(studies: Vec<String>, values: Changes) -> Corrected {
    Corrected {
        studies,
        instances: 0,
        before: values.clone(),
        after: values,
    }
}

fn uid_change(study: &str) -> Changes {
    let mut m = Changes::new();
    m.insert("StudyInstanceUID".into(), study.into());
    m
}

fn keyword(tag: Tag) -> String {
    use dicom_core::dictionary::DataDictionary;
    dicom_dictionary_std::StandardDataDictionary
        .by_tag(tag)
        .map(|e| e.alias.to_string())
        .unwrap_or_else(|| tag_key(tag))
}

fn set_study_uid(obj: &mut InMemDicomObject, uid: &str) {
    obj.put(edits::element(
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        &[uid.to_string()],
    ));
}

/// A new UID under the UUID root (PS3.5 B.2).
fn new_study_uid() -> String {
    format!("2.25.{}", uuid::Uuid::new_v4().as_u128())
}

/// One event per study of a patient whose key is now `key` (and was `previous`).
fn study_events(
    studies: &[String],
    kind: EventKind,
    key: &str,
    previous: Option<&str>,
) -> Vec<NewEvent> {
    studies
        .iter()
        .map(|s| event(kind, s, None, key, None, previous.map(str::to_string)))
        .collect()
}

fn event(
    kind: EventKind,
    study: &str,
    series: Option<&str>,
    patient_key: &str,
    previous_study: Option<&str>,
    previous_patient_key: Option<String>,
) -> NewEvent {
    NewEvent {
        kind,
        study_instance_uid: study.to_string(),
        series_instance_uid: series.map(str::to_string),
        sop_instance_uid: None,
        patient_key: patient_key.to_string(),
        accession_number: None,
        previous_study_instance_uid: previous_study.map(str::to_string),
        previous_patient_key,
    }
}
