//! Integrity of stored blobs (HIPAA §164.312(c)): each instance's SHA-256 is recorded at
//! ingest, and `check` compares a blob on disk with its index record.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::blob::BlobStore;
use crate::records::InstanceRecord;

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// SHA-256 (hex) and length of everything `reader` yields.
pub fn sha256_of(mut reader: impl Read) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex(&hasher.finalize()), total))
}

/// SHA-256 (hex) and length of a file.
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    sha256_of(std::fs::File::open(path)?)
}

pub use crate::error::IntegrityProblem;

/// Compare one instance's blob with its record.
pub fn check(blobs: &dyn BlobStore, record: &InstanceRecord) -> Result<(), IntegrityProblem> {
    let key = record.blob.0.clone();
    let reader = match blobs.open(&record.blob) {
        Ok(r) => r,
        Err(crate::StorageError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            return Err(IntegrityProblem::Missing(key))
        }
        Err(e) => {
            return Err(IntegrityProblem::Unreadable {
                key,
                reason: e.to_string(),
            })
        }
    };
    let (found, size) = sha256_of(reader).map_err(|e| IntegrityProblem::Unreadable {
        key: key.clone(),
        reason: e.to_string(),
    })?;
    if size != record.size {
        return Err(IntegrityProblem::SizeChanged {
            key,
            recorded: record.size,
            found: size,
        });
    }
    match &record.sha256 {
        None => Err(IntegrityProblem::NoChecksum(key)),
        Some(recorded) if *recorded != found => Err(IntegrityProblem::ContentChanged {
            key,
            recorded: recorded.clone(),
            found,
        }),
        Some(_) => Ok(()),
    }
}

/// What to do when a [`Verified`] reader finds a blob that is not the one recorded.
pub type OnMismatch = Box<dyn FnOnce(&IntegrityProblem) + Send>;

/// A stored blob's bytes, checked as they are read: once the reader reaches the end, the
/// length and SHA-256 must be those recorded at ingest, or the last read fails (and
/// `on_mismatch` is told). A caller that streams the bytes out therefore fails the transfer
/// at its end, after at most one pass over the data.
pub struct Verified<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
    key: String,
    recorded_size: u64,
    recorded: Option<String>,
    on_mismatch: Option<OnMismatch>,
    checked: bool,
    found: Option<IntegrityProblem>,
}

impl<R: Read> Verified<R> {
    pub fn new(inner: R, record: &InstanceRecord, on_mismatch: OnMismatch) -> Self {
        Verified {
            inner,
            hasher: Sha256::new(),
            size: 0,
            key: record.blob.0.clone(),
            recorded_size: record.size,
            recorded: record.sha256.clone(),
            on_mismatch: Some(on_mismatch),
            checked: false,
            found: None,
        }
    }

    fn problem(&mut self) -> Option<IntegrityProblem> {
        if self.size != self.recorded_size {
            return Some(IntegrityProblem::SizeChanged {
                key: self.key.clone(),
                recorded: self.recorded_size,
                found: self.size,
            });
        }
        let recorded = self.recorded.as_ref()?;
        let found = hex(&std::mem::take(&mut self.hasher).finalize());
        (*recorded != found).then(|| IntegrityProblem::ContentChanged {
            key: self.key.clone(),
            recorded: recorded.clone(),
            found,
        })
    }
}

impl<R: Read> Read for Verified<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.hasher.update(&buf[..n]);
            self.size += n as u64;
            if self.size > self.recorded_size && !self.checked {
                // Longer than recorded: no need to read on to know.
                self.checked = true;
                let problem = IntegrityProblem::SizeChanged {
                    key: self.key.clone(),
                    recorded: self.recorded_size,
                    found: self.size,
                };
                return Err(self.fail(problem));
            }
            return Ok(n);
        }
        if !self.checked && !buf.is_empty() {
            self.checked = true;
            if let Some(problem) = self.problem() {
                return Err(self.fail(problem));
            }
        }
        Ok(0)
    }
}

impl<R> Verified<R> {
    fn fail(&mut self, problem: IntegrityProblem) -> std::io::Error {
        if let Some(tell) = self.on_mismatch.take() {
            tell(&problem);
        }
        self.found = Some(problem.clone());
        std::io::Error::new(std::io::ErrorKind::InvalidData, problem)
    }

    /// What the check found, once the end was reached and the blob was not as recorded.
    pub fn problem_found(&self) -> Option<&IntegrityProblem> {
        self.found.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record_of(bytes: &[u8]) -> InstanceRecord {
        let (sha, size) = sha256_of(bytes).expect("hash");
        InstanceRecord {
            sop_instance_uid: "1.2.3".into(),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            series_instance_uid: "1.2".into(),
            study_instance_uid: "1".into(),
            patient_key: String::new(),
            transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
            size,
            blob: crate::BlobKey("ab/x.dcm".into()),
            sha256: Some(sha),
            received_ms: 0,
            source: "TEST".into(),
            attributes: Default::default(),
            versions: Vec::new(),
        }
    }

    #[test]
    fn a_verified_reader_fails_at_the_end_of_a_changed_blob() {
        let rec = record_of(b"stored bytes");
        let mut out = Vec::new();
        let told = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let t = told.clone();
        let tell: OnMismatch = Box::new(move |p| t.lock().expect("lock").push(p.to_string()));
        std::io::copy(
            &mut Verified::new(&b"stored bytes"[..], &rec, tell),
            &mut out,
        )
        .expect("unchanged blob reads");
        assert_eq!(out, b"stored bytes");
        assert!(told.lock().expect("lock").is_empty());
        for tampered in [&b"stored bytez"[..], b"stored byte", b"stored bytes!"] {
            let t = told.clone();
            let tell: OnMismatch = Box::new(move |p| t.lock().expect("lock").push(p.to_string()));
            let err = std::io::copy(&mut Verified::new(tampered, &rec, tell), &mut Vec::new())
                .expect_err("tampered");
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
        }
        assert_eq!(told.lock().expect("lock").len(), 3);
    }

    #[test]
    fn sha256_of_known_input() -> std::io::Result<()> {
        let (h, n) = sha256_of(&b"abc"[..])?;
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(n, 3);
        Ok(())
    }
}
