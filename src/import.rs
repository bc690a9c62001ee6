//! `pacs import DIR...`: bulk-load Part 10 files from disk through the same ingest path as
//! C-STORE. Non-DICOM files are skipped and reported; a bad file never stops the run.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use pacs_storage::audit::{AuditEntry, Interface, Outcome};
use pacs_storage::part10::has_part10_magic;
use pacs_storage::{Expected, IngestOutcome, IngestSource, Receiver, Store};

use crate::config::StoreSettings;
use crate::error::AppError;

/// Files are read and fsynced in parallel; the index writer groups their commits.
const IMPORT_THREADS: usize = 4;
/// Rejections listed individually in the summary.
const SHOWN_REJECTIONS: usize = 20;

#[derive(Debug, Default)]
struct Summary {
    stored: usize,
    duplicates: usize,
    not_dicom: Vec<PathBuf>,
    rejected: Vec<(PathBuf, String)>,
}

enum FileResult {
    Outcome(IngestOutcome),
    NotDicom,
    Rejected(String),
}

pub fn run(settings: &StoreSettings, inputs: &[PathBuf], quiet: bool) -> Result<(), AppError> {
    let files = collect_files(inputs);
    let store = Store::open(&settings.data, settings.options())?;
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(files.len() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} files {per_sec} eta {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let next = AtomicUsize::new(0);
    let summary = Mutex::new(Summary::default());
    std::thread::scope(|scope| {
        for _ in 0..IMPORT_THREADS {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = files.get(i) else { break };
                let result = import_one(&store, path);
                let mut s = summary
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match result {
                    FileResult::Outcome(IngestOutcome::Duplicate) => s.duplicates += 1,
                    FileResult::Outcome(_) => s.stored += 1,
                    FileResult::NotDicom => s.not_dicom.push(path.clone()),
                    FileResult::Rejected(reason) => s.rejected.push((path.clone(), reason)),
                }
                bar.inc(1);
            });
        }
    });
    bar.finish_and_clear();
    let s = summary
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    println!(
        "import: {} files: {} stored, {} duplicates, {} rejected, {} skipped (not DICOM)",
        files.len(),
        s.stored,
        s.duplicates,
        s.rejected.len(),
        s.not_dicom.len()
    );
    for (path, reason) in s.rejected.iter().take(SHOWN_REJECTIONS) {
        println!("  rejected {}: {reason}", path.display());
    }
    for path in s.not_dicom.iter().take(SHOWN_REJECTIONS) {
        println!("  skipped {}: not a DICOM Part 10 file", path.display());
    }
    let hidden = s.rejected.len().saturating_sub(SHOWN_REJECTIONS)
        + s.not_dicom.len().saturating_sub(SHOWN_REJECTIONS);
    if hidden > 0 {
        println!("  ... and {hidden} more");
    }
    // The import is a change to the archive: it goes to the audit trail like any other.
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "cli".into());
    let mut entry = AuditEntry::new(
        Interface::Cli,
        user,
        "local",
        "cli.import",
        if s.rejected.is_empty() {
            Outcome::Success
        } else {
            Outcome::Failure
        },
    );
    entry.target = Some(
        inputs
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" "),
    );
    entry.detail = Some(format!(
        "{} stored, {} duplicates, {} rejected, {} not DICOM",
        s.stored,
        s.duplicates,
        s.rejected.len(),
        s.not_dicom.len()
    ));
    store
        .audit
        .record(entry)
        .and_then(|()| store.audit.flush())
        .map_err(|e| AppError::Internal(format!("audit trail: {e}")))?;
    Ok(())
}

fn collect_files(inputs: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for input in inputs {
        for entry in walkdir::WalkDir::new(input)
            .follow_links(true)
            .sort_by_file_name()
        {
            match entry {
                Ok(e) if e.file_type().is_file() => files.push(e.into_path()),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read a path; skipped"),
            }
        }
    }
    files
}

fn import_one(store: &Store, path: &Path) -> FileResult {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return FileResult::Rejected(format!("cannot open: {e}")),
    };
    let mut head = [0u8; 132];
    match file.read_exact(&mut head) {
        Ok(()) if has_part10_magic(&head) => {}
        Ok(()) => return FileResult::NotDicom,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return FileResult::NotDicom,
        Err(e) => return FileResult::Rejected(format!("cannot read: {e}")),
    }
    let mut receiver = match Receiver::begin(store.blobs.as_ref()) {
        Ok(r) => r,
        Err(e) => return FileResult::Rejected(e.to_string()),
    };
    let mut chunk = vec![0u8; 256 * 1024];
    let mut bytes: &[u8] = &head;
    loop {
        if let Err(e) = receiver.write(bytes) {
            receiver.abandon(store.blobs.as_ref());
            return FileResult::Rejected(format!("cannot copy: {e}"));
        }
        match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => bytes = &chunk[..n],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => bytes = &[],
            Err(e) => {
                receiver.abandon(store.blobs.as_ref());
                return FileResult::Rejected(format!("cannot read: {e}"));
            }
        }
    }
    match receiver.finish(store, &IngestSource::Import, &Expected::default()) {
        Ok(done) => FileResult::Outcome(done.outcome),
        Err(e) => FileResult::Rejected(e.to_string()),
    }
}
