//! Patient → study → series → instance kept consistent by every write: a study keeps the
//! first patient it was seen with, each level counts what is under it, the archive-wide
//! statistics follow, and a level left empty goes away. Backend-neutral: only [`IndexTxn`].

use std::collections::BTreeSet;

use super::txn::IndexTxn;
use super::{NewInstance, Statistics};
use crate::error::StorageError;
use crate::records::{
    first_value, Attributes, InstanceRecord, PatientRecord, SeriesRecord, StudyRecord,
};

const MODALITY: &str = "00080060";

/// Add one instance under its series, study and patient (creating those that are new);
/// returns the patient key it was indexed under, which is the study's when they differ.
pub(super) fn add_instance(
    txn: &mut dyn IndexTxn,
    stats: &mut Statistics,
    item: NewInstance,
) -> Result<String, StorageError> {
    let mut rec = item.record;
    let size = rec.size;
    let modality = first_value(&item.series, MODALITY).to_string();
    let existing_study = txn.study(&rec.study_instance_uid)?;
    if let Some(study) = &existing_study {
        if study.patient_key != rec.patient_key {
            // A study belongs to one patient: keep the first one seen, and say so.
            tracing::warn!(
                study = %study.study_instance_uid,
                sop = %rec.sop_instance_uid,
                "instance names another patient than its study; indexed under the study's patient"
            );
            rec.patient_key = study.patient_key.clone();
        }
    }
    let pkey = rec.patient_key.clone();

    let mut patient = match txn.patient(&pkey)? {
        Some(mut p) => {
            fill_missing(&mut p.attributes, &item.patient);
            p
        }
        None => {
            stats.patients += 1;
            PatientRecord {
                key: pkey.clone(),
                attributes: item.patient.clone(),
                num_studies: 0,
                num_series: 0,
                num_instances: 0,
            }
        }
    };
    let mut study = match existing_study {
        Some(mut s) => {
            fill_missing(&mut s.attributes, &item.study);
            s
        }
        None => {
            stats.studies += 1;
            patient.num_studies += 1;
            let mut attributes = item.study.clone();
            // Patient attributes are copied into the study so study-level answers need one read.
            fill_missing(&mut attributes, &item.patient);
            StudyRecord {
                study_instance_uid: rec.study_instance_uid.clone(),
                patient_key: pkey.clone(),
                attributes,
                modalities: BTreeSet::new(),
                sop_classes: BTreeSet::new(),
                num_series: 0,
                num_instances: 0,
                bytes: 0,
                last_update_ms: 0,
            }
        }
    };
    let mut series = match txn.series(&rec.series_instance_uid)? {
        Some(mut s) => {
            fill_missing(&mut s.attributes, &item.series);
            s
        }
        None => {
            stats.series += 1;
            study.num_series += 1;
            patient.num_series += 1;
            SeriesRecord {
                series_instance_uid: rec.series_instance_uid.clone(),
                study_instance_uid: rec.study_instance_uid.clone(),
                attributes: item.series.clone(),
                num_instances: 0,
                bytes: 0,
                last_update_ms: 0,
            }
        }
    };

    series.num_instances += 1;
    series.bytes += size;
    series.last_update_ms = rec.received_ms;
    study.num_instances += 1;
    study.bytes += size;
    study.last_update_ms = rec.received_ms;
    if !modality.is_empty() {
        study.modalities.insert(modality);
    }
    study.sop_classes.insert(rec.sop_class_uid.clone());
    patient.num_instances += 1;
    stats.instances += 1;
    stats.bytes += size;

    txn.put_patient(patient)?;
    txn.put_study(study)?;
    txn.put_series(series)?;
    txn.put_instance(rec)?;
    Ok(pkey)
}

/// Take an instance out of the counts, removing the levels it leaves empty.
pub(super) fn remove_instance(
    txn: &mut dyn IndexTxn,
    stats: &mut Statistics,
    rec: &InstanceRecord,
) -> Result<(), StorageError> {
    txn.delete_instance(&rec.sop_instance_uid)?;
    stats.instances = stats.instances.saturating_sub(1);
    stats.bytes = stats.bytes.saturating_sub(rec.size);

    let Some(mut series) = txn.series(&rec.series_instance_uid)? else {
        return Ok(());
    };
    series.num_instances = series.num_instances.saturating_sub(1);
    series.bytes = series.bytes.saturating_sub(rec.size);
    let series_gone = series.num_instances == 0;
    if series_gone {
        txn.delete_series(&rec.series_instance_uid)?;
    } else {
        txn.put_series(series)?;
    }

    let Some(mut study) = txn.study(&rec.study_instance_uid)? else {
        return Ok(());
    };
    // The study's patient, which is the one the counts were kept under.
    let study_patient = study.patient_key.clone();
    study.num_instances = study.num_instances.saturating_sub(1);
    study.bytes = study.bytes.saturating_sub(rec.size);
    if series_gone {
        study.num_series = study.num_series.saturating_sub(1);
        stats.series = stats.series.saturating_sub(1);
    }
    let study_gone = study.num_instances == 0;
    if study_gone {
        txn.delete_study(&rec.study_instance_uid)?;
    } else {
        txn.put_study(study)?;
    }

    let Some(mut patient) = txn.patient(&study_patient)? else {
        return Ok(());
    };
    patient.num_instances = patient.num_instances.saturating_sub(1);
    if series_gone {
        patient.num_series = patient.num_series.saturating_sub(1);
    }
    if study_gone {
        patient.num_studies = patient.num_studies.saturating_sub(1);
        stats.studies = stats.studies.saturating_sub(1);
    }
    if patient.num_studies == 0 {
        stats.patients = stats.patients.saturating_sub(1);
        txn.delete_patient(&study_patient)?;
    } else {
        txn.put_patient(patient)?;
    }
    Ok(())
}

/// After removals: each surviving study's ModalitiesInStudy from its remaining series.
pub(super) fn refresh_modalities(
    txn: &mut dyn IndexTxn,
    removed: &[InstanceRecord],
) -> Result<(), StorageError> {
    let studies: BTreeSet<&str> = removed
        .iter()
        .map(|r| r.study_instance_uid.as_str())
        .collect();
    for uid in studies {
        let Some(mut study) = txn.study(uid)? else {
            continue;
        };
        let mut modalities = BTreeSet::new();
        for series_uid in txn.series_of_study(uid)? {
            if let Some(series) = txn.series(&series_uid)? {
                let m = first_value(&series.attributes, MODALITY);
                if !m.is_empty() {
                    modalities.insert(m.to_string());
                }
            }
        }
        study.modalities = modalities;
        txn.put_study(study)?;
    }
    Ok(())
}

/// Attributes a level already has win; new ones are added.
fn fill_missing(into: &mut Attributes, from: &Attributes) {
    for (k, v) in from {
        into.entry(k.clone()).or_insert_with(|| v.clone());
    }
}
