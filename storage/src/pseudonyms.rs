//! The pseudonym table: what each de-identified export replaced, per project, so a site can
//! re-identify what comes back (a research result naming a pseudonymous patient or UID).

use serde::{Deserialize, Serialize};

use crate::error::StorageError;

/// One replacement: within `project`, `replacement` stands for `original` (a UID, or for
/// `patient-id` / `patient-name` the patient key: PatientID and issuer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PseudonymEntry {
    pub project: String,
    /// `uid`, `patient-id` or `patient-name`.
    pub kind: String,
    pub original: String,
    pub replacement: String,
}

pub trait PseudonymTable: Send + Sync {
    /// Record replacements (an idempotent upsert), synced.
    fn put_pseudonyms(&self, entries: &[PseudonymEntry]) -> Result<(), StorageError>;
    /// What a pseudonymous value stands for in a project (one entry per kind).
    fn reidentify(
        &self,
        project: &str,
        replacement: &str,
    ) -> Result<Vec<PseudonymEntry>, StorageError>;
}

/// The table's key: project, replacement and kind, NUL-separated (none of them holds a NUL),
/// so one prefix scan finds every kind of one replacement.
pub fn key(project: &str, replacement: &str, kind: &str) -> String {
    format!("{project}\0{replacement}\0{kind}")
}
