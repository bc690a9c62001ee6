//! The single ingest path used by C-STORE, STOW-RS and `pacs import`.
//!
//! An instance arrives as a staged Part 10 file. We parse its header (up to Pixel Data, so
//! memory does not grow with instance size), check it, make the blob durable, then hand the
//! index change to one writer thread. The writer commits whatever is queued as one synced
//! RocksDB batch (group commit), so parallel associations share fsyncs.
//!
//! WARNING: blob before index — see `blob.rs`.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use dicom_dictionary_std::tags;
use dicom_object::OpenFileOptions;

use crate::attrs::ParsedInstance;
use crate::blob::{BlobStore, StagedBlob};
use crate::error::{IngestError, StorageError};
pub use crate::index::DuplicatePolicy;
use crate::index::{Index, NewInstance, StoreDecision};
use crate::records::{patient_key, InstanceRecord};
use crate::rejection::{RejectionNote, RejectionReason};

/// Largest number of instances committed in one batch.
const MAX_GROUP: usize = 256;

/// Who sent an instance, as recorded in its index record and file meta.
#[derive(Debug, Clone)]
pub enum IngestSource {
    Dimse { calling_ae: String },
    Stow,
    Import,
}

impl IngestSource {
    pub fn label(&self) -> &str {
        match self {
            IngestSource::Dimse { calling_ae } => calling_ae,
            IngestSource::Stow => "STOW-RS",
            IngestSource::Import => "IMPORT",
        }
    }
}

/// What the sender announced about the instance, checked against its data set.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    pub sop_instance_uid: Option<String>,
    pub sop_class_uid: Option<String>,
    pub study_instance_uid: Option<String>,
}

/// Result of ingesting one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    Stored,
    /// Already stored; the stored copy was kept.
    Duplicate,
    /// Already stored; replaced by the new copy (overwrite policy).
    Replaced,
}

#[derive(Debug, Clone)]
pub struct Ingested {
    pub outcome: IngestOutcome,
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    /// Patient ID of the instance (audit trail).
    pub patient_id: String,
    /// The instance was a rejection note: why, and how many instances it hid now.
    pub rejection: Option<(RejectionReason, usize)>,
}

struct Job {
    item: NewInstance,
    reply: SyncSender<Result<StoreDecision, StorageError>>,
}

/// Ingest front: parse and check, persist the blob, and queue the index change.
pub struct Ingestor {
    index: Arc<dyn Index>,
    blobs: Arc<dyn BlobStore>,
    policy: DuplicatePolicy,
    jobs: Option<SyncSender<Job>>,
    writer: Option<JoinHandle<()>>,
    /// When an instance last started arriving (ms since the epoch), so background work can
    /// yield to ingest.
    last_activity_ms: Arc<std::sync::atomic::AtomicU64>,
}

impl Ingestor {
    pub fn new(index: Arc<dyn Index>, blobs: Arc<dyn BlobStore>, policy: DuplicatePolicy) -> Self {
        let (tx, rx) = mpsc::sync_channel::<Job>(MAX_GROUP);
        let writer_index = index.clone();
        let writer = std::thread::Builder::new()
            .name("index-writer".into())
            .spawn(move || run_writer(writer_index, rx, policy))
            .ok();
        Ingestor {
            index,
            blobs,
            policy,
            jobs: Some(tx),
            writer,
            last_activity_ms: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        }
    }

    /// When an instance was last handed to the ingest path (ms since the epoch; 0: never).
    pub fn last_activity_ms(&self) -> u64 {
        self.last_activity_ms
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Store one staged instance. Blocking: call from a blocking thread.
    pub fn ingest(
        &self,
        staged: StagedBlob,
        source: &IngestSource,
        expected: &Expected,
    ) -> Result<Ingested, IngestError> {
        self.last_activity_ms.store(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            std::sync::atomic::Ordering::Relaxed,
        );
        let checked = check_staged(&staged, expected).and_then(|c| {
            if let Some(note) = &c.4 {
                self.check_note(note)?;
            }
            Ok(c)
        });
        let (parsed, transfer_syntax_uid, size, sha256, note) = match checked {
            Ok(v) => v,
            Err(e) => {
                self.blobs.discard(staged);
                return Err(e);
            }
        };
        let mut ingested = Ingested {
            outcome: IngestOutcome::Stored,
            sop_instance_uid: parsed.sop_instance_uid.clone(),
            sop_class_uid: parsed.sop_class_uid.clone(),
            study_instance_uid: parsed.study_instance_uid.clone(),
            series_instance_uid: parsed.series_instance_uid.clone(),
            patient_id: parsed.patient_id.clone(),
            rejection: None,
        };
        // Cheap early answer for a resend: no fsync for a copy we will not keep.
        if self.policy == DuplicatePolicy::Keep
            && self.index.instance(&parsed.sop_instance_uid)?.is_some()
        {
            self.blobs.discard(staged);
            ingested.outcome = IngestOutcome::Duplicate;
            return Ok(ingested);
        }

        let blob = self.blobs.persist(staged)?;
        let record = InstanceRecord {
            sop_instance_uid: parsed.sop_instance_uid,
            sop_class_uid: parsed.sop_class_uid,
            series_instance_uid: parsed.series_instance_uid,
            study_instance_uid: parsed.study_instance_uid,
            patient_key: patient_key(&parsed.patient_id, &parsed.issuer_of_patient_id),
            transfer_syntax_uid,
            size,
            blob: blob.clone(),
            sha256: Some(sha256),
            received_ms: now_ms(),
            source: source.label().to_string(),
            attributes: parsed.instance,
            versions: Vec::new(),
        };
        let item = NewInstance {
            record,
            patient: parsed.patient,
            study: parsed.study,
            series: parsed.series,
        };
        let submitted = match &note {
            // Rare, and it must see the index as it is: straight to the index, not the group.
            Some(note) => self
                .index
                .apply_rejection(item, note, source.label(), self.policy)
                .map(|applied| {
                    ingested.rejection = Some((note.reason, applied.hidden.len()));
                    applied.note
                }),
            None => self.submit(item),
        };
        let decision = match submitted {
            Ok(d) => d,
            Err(e) => {
                let _ = self.blobs.delete(&blob);
                return Err(e.into());
            }
        };
        match decision {
            StoreDecision::Stored => {}
            StoreDecision::Duplicate => {
                ingested.outcome = IngestOutcome::Duplicate;
                self.blobs.delete(&blob)?;
            }
            StoreDecision::Replaced { old_blobs } => {
                ingested.outcome = IngestOutcome::Replaced;
                for old in &old_blobs {
                    self.blobs.delete(old)?;
                }
            }
            StoreDecision::PreviouslyRejected { reason } => {
                self.blobs.delete(&blob)?;
                return Err(IngestError::PreviouslyRejected {
                    sop_instance_uid: ingested.sop_instance_uid,
                    reason,
                });
            }
        }
        Ok(ingested)
    }

    /// Before the blob is written: a rejection note must name only instances the archive
    /// holds, in the study it says. (A rejected instance sent again is refused by the index
    /// write itself, so ordinary instances pay no extra read here.)
    fn check_note(&self, note: &RejectionNote) -> Result<(), IngestError> {
        let mut unknown = Vec::new();
        for r in &note.references {
            let study = match self.index.instance(&r.sop_instance_uid)? {
                Some(rec) => rec.study_instance_uid,
                None => match self.index.rejected_instance(&r.sop_instance_uid)? {
                    Some(hidden) => hidden.record.study_instance_uid,
                    None => {
                        unknown.push(r.sop_instance_uid.as_str());
                        continue;
                    }
                },
            };
            if study != r.study_instance_uid {
                return Err(IngestError::RejectionRefused(format!(
                    "it names instance {} in study {}, but the archive holds it in study {study}",
                    r.sop_instance_uid, r.study_instance_uid
                )));
            }
        }
        if let Some(first) = unknown.first() {
            return Err(IngestError::RejectionRefused(format!(
                "{} of the {} instances it names are not in the archive (first: {first}); \
                 nothing was rejected",
                unknown.len(),
                note.references.len()
            )));
        }
        Ok(())
    }

    fn submit(&self, item: NewInstance) -> Result<StoreDecision, StorageError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let jobs = self.jobs.as_ref().ok_or(StorageError::WriterGone)?;
        jobs.send(Job { item, reply })
            .map_err(|_| StorageError::WriterGone)?;
        answer.recv().map_err(|_| StorageError::WriterGone)?
    }
}

impl Drop for Ingestor {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what is queued and stop.
        self.jobs.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn run_writer(index: Arc<dyn Index>, jobs: Receiver<Job>, policy: DuplicatePolicy) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let (items, replies): (Vec<_>, Vec<_>) =
            group.into_iter().map(|j| (j.item, j.reply)).unzip();
        match index.store_instances(items, policy) {
            Ok(decisions) => {
                for (reply, decision) in replies.into_iter().zip(decisions) {
                    let _ = reply.send(Ok(decision));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "index batch failed");
                let out_of_space = e.is_out_of_space();
                for reply in replies {
                    let _ = reply.send(Err(StorageError::BatchFailed {
                        detail: e.to_string(),
                        out_of_space,
                    }));
                }
            }
        }
    }
}

/// Parse the staged file's header and check it against what the sender announced.
type Checked = (ParsedInstance, String, u64, String, Option<RejectionNote>);

fn check_staged(staged: &StagedBlob, expected: &Expected) -> Result<Checked, IngestError> {
    // Read back what was written (from the page cache): the checksum covers the bytes on disk.
    let (sha256, size) =
        crate::integrity::sha256_file(&staged.path).map_err(|e| StorageError::Io {
            context: "reading back",
            path: staged.path.clone(),
            source: e,
        })?;
    // dicom-parser allocates what an element declares before reading it: check the whole
    // file first (later reads of the stored file go past Pixel Data).
    match crate::lengths::check_part10_file(&staged.path) {
        Ok(()) => {}
        Err(crate::lengths::LengthError::Io(e)) => {
            return Err(StorageError::Io {
                context: "checking",
                path: staged.path.clone(),
                source: e,
            }
            .into())
        }
        Err(e) => return Err(IngestError::Unparseable(e.to_string())),
    }
    let mut obj = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(&staged.path)
        .map_err(|e| {
            let chain = error_chain(&e);
            // dicom-object refuses such meta UIDs before we see the data set: say it plainly.
            if chain.contains("Invalid UID") {
                let (attribute, value) = crate::part10::meta_uids(&staged.path)
                    .into_iter()
                    .flatten()
                    .find(|(_, uid)| !crate::attrs::is_valid_uid(uid))
                    .unwrap_or(("File Meta Information", chain));
                IngestError::InvalidUid { attribute, value }
            } else {
                IngestError::Unparseable(chain)
            }
        })?;
    crate::un_vr::resolve_un(&mut obj);
    let ts = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_string();
    let parsed = ParsedInstance::from_object(&obj)?;
    check_expected(
        "SOPInstanceUID",
        &expected.sop_instance_uid,
        &parsed.sop_instance_uid,
    )?;
    check_expected(
        "SOPClassUID",
        &expected.sop_class_uid,
        &parsed.sop_class_uid,
    )?;
    check_expected(
        "StudyInstanceUID",
        &expected.study_instance_uid,
        &parsed.study_instance_uid,
    )?;
    let note = crate::rejection::rejection_note(&obj)?;
    Ok((parsed, ts, size, sha256, note))
}

fn check_expected(
    attribute: &'static str,
    expected: &Option<String>,
    found: &str,
) -> Result<(), IngestError> {
    match expected {
        Some(e) if e.trim_end_matches('\0') != found => Err(IngestError::Mismatch {
            attribute,
            expected: e.clone(),
            found: found.to_string(),
        }),
        _ => Ok(()),
    }
}

/// An error and its sources on one line (dicom-rs errors put the useful part in the source).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::PathBuf;

    use super::*;
    use crate::store::{Store, StoreOptions};

    fn sample(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../sample-dicom")
            .join(name)
    }

    fn staged_copy(store: &Store, bytes: &[u8]) -> StagedBlob {
        let mut staged = store.blobs.stage().expect("stage");
        staged.file.write_all(bytes).expect("write");
        staged
    }

    #[test]
    fn stores_once_then_reports_duplicates_and_refuses_bad_input() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), StoreOptions::default()).expect("open");
        let bytes = std::fs::read(sample("ct_jpegls_lossless.dcm")).expect("sample");

        let done = store
            .ingestor
            .ingest(
                staged_copy(&store, &bytes),
                &IngestSource::Import,
                &Expected::default(),
            )
            .expect("ingest");
        assert_eq!(done.outcome, IngestOutcome::Stored);
        let rec = store
            .index
            .instance(&done.sop_instance_uid)
            .expect("get")
            .expect("record");
        assert_eq!(rec.transfer_syntax_uid, "1.2.840.10008.1.2.4.80");
        assert_eq!(rec.size, bytes.len() as u64);
        assert_eq!(rec.attributes["00280010"].values, vec!["512"]);

        let again = store
            .ingestor
            .ingest(
                staged_copy(&store, &bytes),
                &IngestSource::Import,
                &Expected::default(),
            )
            .expect("ingest");
        assert_eq!(again.outcome, IngestOutcome::Duplicate);

        let wrong = Expected {
            sop_instance_uid: Some("1.2.3".into()),
            ..Default::default()
        };
        let err = store
            .ingestor
            .ingest(staged_copy(&store, &bytes), &IngestSource::Import, &wrong)
            .expect_err("mismatch");
        assert!(matches!(err, IngestError::Mismatch { .. }), "{err}");

        let mut garbage = bytes[..400].to_vec();
        garbage.extend_from_slice(&[0xFF; 64]);
        let err = store
            .ingestor
            .ingest(
                staged_copy(&store, &garbage[..200]),
                &IngestSource::Import,
                &Expected::default(),
            )
            .expect_err("garbage");
        assert!(
            matches!(
                err,
                IngestError::Unparseable(_) | IngestError::MissingAttribute(_)
            ),
            "{err}"
        );

        assert_eq!(store.index.statistics().expect("stats").instances, 1);
        let blob_dirs: Vec<_> = std::fs::read_dir(dir.path().join("blobs"))
            .expect("blobs")
            .filter_map(Result::ok)
            .flat_map(|d| {
                std::fs::read_dir(d.path())
                    .expect("dir")
                    .filter_map(Result::ok)
            })
            .map(|f| f.path())
            .collect();
        assert_eq!(
            blob_dirs.len(),
            1,
            "one blob, no staged leftovers: {blob_dirs:?}"
        );
    }
}
