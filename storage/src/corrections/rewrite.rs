//! Writing corrected instances: each one is read (checked against its recorded hash),
//! changed in memory, written to a new blob and made durable; then the whole correction is one
//! index change. The old file stays as a prior version. If any step fails, the new files are
//! removed again and the index is untouched: nothing is half-changed.

use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use dicom_object::InMemDicomObject;

use super::CorrectionError;
use crate::attrs::ParsedInstance;
use crate::audit::Interface;
use crate::blob::BlobKey;
use crate::events::NewEvent;
use crate::index::{IndexCorrection, NewInstance, Rewritten};
use crate::records::{patient_key, Attributes, InstanceRecord, PriorVersion};
use crate::store::Store;

/// Most instances one correction rewrites (its records are held in memory until the commit).
pub const MAX_INSTANCES: usize = 50_000;

/// Threads writing corrected files (reads, encodes and fsyncs overlap).
const WRITERS: usize = 4;

/// What changes in one instance's data set.
pub(super) type EditFn<'a> =
    dyn Fn(&InstanceRecord, &mut InMemDicomObject) -> Result<(), CorrectionError> + Sync + 'a;

/// The parts of a correction the index commits together.
pub(super) struct Plan<'a> {
    pub instances: Vec<InstanceRecord>,
    /// Names the change in each prior version ("study.update", "patient.merge", ...).
    pub reason: &'static str,
    pub edit: &'a EditFn<'a>,
    pub events: Vec<NewEvent>,
    pub patient_attributes: Option<(String, Attributes)>,
}

/// Rewrite every instance of the plan and commit; returns how many were rewritten.
pub(super) fn rewrite_and_commit(
    store: &Store,
    plan: Plan<'_>,
    via: Interface,
) -> Result<usize, CorrectionError> {
    if plan.instances.len() > MAX_INSTANCES {
        return Err(CorrectionError::Invalid(format!(
            "the correction would rewrite {} instances, more than {MAX_INSTANCES} at once; correct it study by study",
            plan.instances.len()
        )));
    }
    let count = plan.instances.len();
    let failed = AtomicBool::new(false);
    let threads = WRITERS.min(count.max(1));
    let chunk = count.div_ceil(threads).max(1);
    let results: Vec<(Vec<Rewritten>, Option<CorrectionError>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = plan
            .instances
            .chunks(chunk)
            .map(|part| {
                let failed = &failed;
                let edit = plan.edit;
                let reason = plan.reason;
                scope.spawn(move || {
                    let mut done = Vec::with_capacity(part.len());
                    for rec in part {
                        if failed.load(Ordering::Relaxed) {
                            break;
                        }
                        match rewrite_one(store, rec, reason, edit, via) {
                            Ok(r) => done.push(r),
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                return (done, Some(e));
                            }
                        }
                    }
                    (done, None)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    (
                        Vec::new(),
                        Some(CorrectionError::Invalid(
                            "a correction writer stopped unexpectedly".into(),
                        )),
                    )
                })
            })
            .collect()
    });
    let mut rewritten = Vec::with_capacity(count);
    let mut first_error = None;
    for (done, error) in results {
        rewritten.extend(done);
        if first_error.is_none() {
            first_error = error;
        }
    }
    if let Some(e) = first_error {
        remove_new_files(store, &rewritten);
        return Err(e);
    }
    let new_blobs: Vec<BlobKey> = rewritten
        .iter()
        .map(|r| r.item.record.blob.clone())
        .collect();
    let correction = IndexCorrection {
        rewritten,
        events: plan.events,
        patient_attributes: plan.patient_attributes,
    };
    if let Err(e) = store.index.correct_instances(correction) {
        for blob in &new_blobs {
            let _ = store.blobs.delete(blob);
        }
        return Err(e.into());
    }
    Ok(count)
}

fn remove_new_files(store: &Store, rewritten: &[Rewritten]) {
    for r in rewritten {
        if let Err(e) = store.blobs.delete(&r.item.record.blob) {
            tracing::warn!(blob = %r.item.record.blob, error = %e, "file of an abandoned correction not removed");
        }
    }
}

/// Read, change and store one instance as a new version.
fn rewrite_one(
    store: &Store,
    rec: &InstanceRecord,
    reason: &'static str,
    edit: &EditFn<'_>,
    via: Interface,
) -> Result<Rewritten, CorrectionError> {
    let sop = rec.sop_instance_uid.clone();
    let mut obj = store.read_verified(rec, via)?;
    crate::un_vr::resolve_un(&mut obj);
    edit(rec, &mut obj)?;
    let parsed = ParsedInstance::from_object(&obj).map_err(|e| CorrectionError::Rewrite {
        sop_instance_uid: sop.clone(),
        source: Box::new(e),
    })?;
    let staged = store.blobs.stage()?;
    let written = (|| {
        let mut out = BufWriter::new(&staged.file);
        obj.write_all(&mut out)
            .map_err(|e| CorrectionError::Rewrite {
                sop_instance_uid: sop.clone(),
                source: Box::new(e),
            })?;
        out.flush().map_err(|e| CorrectionError::Rewrite {
            sop_instance_uid: sop.clone(),
            source: Box::new(e),
        })?;
        drop(out);
        crate::integrity::sha256_file(&staged.path).map_err(|e| CorrectionError::Rewrite {
            sop_instance_uid: sop.clone(),
            source: Box::new(e),
        })
    })();
    let (sha256, size) = match written {
        Ok(v) => v,
        Err(e) => {
            store.blobs.discard(staged);
            return Err(e);
        }
    };
    let blob = store.blobs.persist(staged)?;
    let mut versions = rec.versions.clone();
    versions.push(PriorVersion {
        blob: rec.blob.clone(),
        size: rec.size,
        sha256: rec.sha256.clone(),
        transfer_syntax_uid: rec.transfer_syntax_uid.clone(),
        replaced_ms: crate::ingest::now_ms(),
        reason: reason.to_string(),
    });
    let record = InstanceRecord {
        sop_instance_uid: parsed.sop_instance_uid,
        sop_class_uid: parsed.sop_class_uid,
        series_instance_uid: parsed.series_instance_uid,
        study_instance_uid: parsed.study_instance_uid,
        patient_key: patient_key(&parsed.patient_id, &parsed.issuer_of_patient_id),
        transfer_syntax_uid: rec.transfer_syntax_uid.clone(),
        size,
        blob,
        sha256: Some(sha256),
        received_ms: rec.received_ms,
        source: rec.source.clone(),
        attributes: parsed.instance,
        versions,
    };
    Ok(Rewritten {
        expected_blob: rec.blob.clone(),
        item: NewInstance {
            record,
            patient: parsed.patient,
            study: parsed.study,
            series: parsed.series,
        },
    })
}
