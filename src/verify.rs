//! `pacs verify`: compare every stored blob with the SHA-256 and size in its index record and
//! report files that changed or vanished. Reads the index read-only, so it runs beside a
//! live server.

use pacs_storage::index::RocksIndex;
use pacs_storage::integrity::{self, IntegrityProblem};
use std::collections::HashSet;
use std::sync::Arc;

use pacs_storage::InstanceRecord;

use pacs_storage::blob_crypto::EncryptedBlobStore;
use pacs_storage::key_check::check_blob_key;
use pacs_storage::{BlobStore, FsBlobStore, Index};
use rayon::prelude::*;

use crate::config::StoreSettings;
use crate::error::AppError;

/// Instances checked per page of the index.
const PAGE: usize = 1000;

#[derive(Debug, Default)]
pub struct VerifyReport {
    pub checked: u64,
    pub problems: Vec<(String, IntegrityProblem)>,
    /// With a sweep: the blobs listed and the orphans removed.
    pub orphans: Option<crate::orphans::OrphanReport>,
}

impl VerifyReport {
    /// Problems that mean data changed or vanished (not merely an old record without a sum).
    pub fn damaged(&self) -> usize {
        self.problems
            .iter()
            .filter(|(_, p)| !matches!(p, IntegrityProblem::NoChecksum(_)))
            .count()
    }
}

/// The index and blob store `pacs verify` reads.
type Opened = (Box<dyn Index>, Arc<dyn BlobStore>);

/// Open what `pacs verify` reads, beside a running server.
fn open(settings: &StoreSettings) -> Result<Opened, AppError> {
    // Beside a running server: the embedded index read-only, or the shared database.
    let index: Box<dyn Index> = match &settings.index {
        Some(db) => Box::new(pacs_storage::pg::PgIndex::open(db)?),
        None => Box::new(RocksIndex::open_read_only(settings.data.join("index"))?),
    };
    // A wrong or missing key would report every sealed blob as damaged.
    check_blob_key(&settings.data, settings.blob_key.as_ref(), false)?;
    let files: Arc<dyn BlobStore> = match &settings.blobs {
        Some(s3) => Arc::new(pacs_storage::blob_s3::S3BlobStore::open(
            &settings.data,
            s3,
        )?),
        None => Arc::new(FsBlobStore::open_existing(&settings.data)?),
    };
    let blobs: Arc<dyn BlobStore> = match &settings.blob_key {
        Some(key) => Arc::new(EncryptedBlobStore::new(files, key)),
        None => files,
    };
    Ok((index, blobs))
}

/// Check every instance; with `sweep_orphans_older_than` (seconds), also remove the blobs
/// no record names, found in the same walk over the index.
pub fn verify(
    settings: &StoreSettings,
    sweep_orphans_older_than: Option<u64>,
) -> Result<VerifyReport, AppError> {
    let (index, blobs) = open(settings)?;
    let mut report = VerifyReport::default();
    // Listed before the records are read: a blob committed meanwhile is then named by them.
    let listed = match sweep_orphans_older_than {
        Some(_) => Some(blobs.list()?),
        None => None,
    };
    let mut named: HashSet<String> = HashSet::new();
    let mut note = |rec: &InstanceRecord| {
        if listed.is_some() {
            named.extend(rec.all_blobs().map(|k| k.0.clone()));
        }
    };
    let mut after: Option<String> = None;
    loop {
        let uids = index.list_instances(after.as_deref(), PAGE)?;
        let Some(last) = uids.last().cloned() else {
            break;
        };
        type Checked = (String, Option<InstanceRecord>, Result<(), IntegrityProblem>);
        let results: Vec<Checked> = uids
            .into_par_iter()
            .filter_map(|uid| match index.instance(&uid) {
                Ok(Some(rec)) => {
                    let r = integrity::check(blobs.as_ref(), &rec);
                    Some((uid, Some(rec), r))
                }
                // Deleted between the listing and the read.
                Ok(None) => None,
                Err(e) => Some((
                    uid,
                    None,
                    Err(IntegrityProblem::Unreadable {
                        key: "(index record)".into(),
                        reason: e.to_string(),
                    }),
                )),
            })
            .collect();
        for (uid, rec, r) in results {
            report.checked += 1;
            if let Some(rec) = &rec {
                note(rec);
            }
            if let Err(p) = r {
                report.problems.push((uid, p));
            }
        }
        after = Some(last);
    }
    // Hidden instances are restorable, so their files are checked too.
    let mut after: Option<String> = None;
    loop {
        let page = index.list_rejected(after.as_deref(), PAGE)?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.record.sop_instance_uid.clone());
        page.iter().for_each(|r| note(&r.record));
        let results: Vec<(String, Result<(), IntegrityProblem>)> = page
            .into_par_iter()
            .map(|r| {
                let uid = r.record.sop_instance_uid.clone();
                (uid, integrity::check(blobs.as_ref(), &r.record))
            })
            .collect();
        for (uid, r) in results {
            report.checked += 1;
            if let Err(p) = r {
                report.problems.push((format!("{uid} (rejected)"), p));
            }
        }
    }
    if let (Some(listed), Some(secs)) = (listed, sweep_orphans_older_than) {
        report.orphans = Some(crate::orphans::remove(
            blobs.as_ref(),
            listed,
            &named,
            secs.saturating_mul(1000),
        )?);
    }
    Ok(report)
}

/// Run `pacs verify` and print its report; an error when anything changed or vanished.
/// With `sweep_orphans_older_than`, blobs nothing refers to are removed too.
pub fn run(
    settings: &StoreSettings,
    sweep_orphans_older_than: Option<u64>,
) -> Result<(), AppError> {
    let started = std::time::Instant::now();
    let report = verify(settings, sweep_orphans_older_than)?;
    if let (Some(swept), Some(secs)) = (&report.orphans, sweep_orphans_older_than) {
        for key in &swept.removed {
            println!("orphan removed: {key}");
        }
        println!(
            "listed {} blobs: {} orphans older than {secs} s removed",
            swept.listed,
            swept.removed.len()
        );
    }
    for (uid, problem) in &report.problems {
        println!("{uid}: {problem}");
    }
    let damaged = report.damaged();
    println!(
        "checked {} instances in {:.1} s: {} changed or missing, {} without a checksum",
        report.checked,
        started.elapsed().as_secs_f64(),
        damaged,
        report.problems.len() - damaged
    );
    if damaged > 0 {
        return Err(AppError::Integrity(damaged));
    }
    Ok(())
}
