//! Pseudonyms: consistent replacements for UIDs, patient identity and date offsets.

use std::collections::HashSet;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Source of consistent replacements; one per project.
pub trait Pseudonyms {
    /// The replacement of a UID: the same original always gives the same replacement within a project.
    fn uid(&mut self, original: &str) -> String;
    /// Pseudonymous Patient ID and Patient Name for a patient (PatientID + IssuerOfPatientID).
    fn patient(&mut self, patient_id: &str, issuer: &str) -> PatientPseudonym;
    /// Days to shift every date of this patient by (used by DateOption::Modified).
    fn date_offset_days(&mut self, patient_id: &str, issuer: &str) -> i64;
}

/// A patient's pseudonymous identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientPseudonym {
    /// Replacement Patient ID (LO).
    pub id: String,
    /// Replacement Patient's Name (PN).
    pub name: String,
}

/// What a mapping replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MappingKind {
    /// A UID; `original` is the original UID.
    Uid,
    /// A Patient ID; `original` is the patient key (see [`patient_key`]).
    PatientId,
    /// A Patient's Name; `original` is the patient key too: the pseudonymous name is derived from
    /// the patient's identifiers, not from the original name.
    PatientName,
}

/// One replacement handed out, for the caller's pseudonym table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// What was replaced.
    pub kind: MappingKind,
    /// The original value.
    pub original: String,
    /// The pseudonymous value.
    pub replacement: String,
}

/// The key of a patient in mappings: the Patient ID, followed HL7 CX-style by `^^^issuer`
/// when an Issuer of Patient ID is known (the same ID from two issuers is two patients).
pub fn patient_key(patient_id: &str, issuer: &str) -> String {
    if issuer.is_empty() {
        patient_id.to_owned()
    } else {
        format!("{patient_id}^^^{issuer}")
    }
}

/// Longest date shift back, in days (about ten years); offsets are in `-MAX..=-1`, never 0,
/// so a modified date always differs from the original.
pub const MAX_DATE_OFFSET_DAYS: i64 = 3650;

/// Deterministic pseudonyms: HMAC-SHA256 keyed by the project secret over the project name,
/// the kind of value and the original value. Without the secret the replacements cannot be
/// reversed or recomputed; with it they are the same on every run, so exports of the same
/// project stay consistent across runs and servers.
///
/// UIDs become `2.25.<decimal of the first 128 bits>` (PS3.5 B.2, UUID-derived form), Patient
/// IDs `PSN` and 20 hex digits, names `ANON^` and 10 hex digits, and date offsets fall in
/// `-MAX_DATE_OFFSET_DAYS..=-1`.
pub struct HashedPseudonyms {
    project: String,
    mac: Hmac<Sha256>,
    pending: Vec<Mapping>,
    // Dedupes within one batch only, so memory stays bounded by the batch: a mapping handed out
    // again after `take_mappings` is reported again (storing it is an idempotent upsert).
    seen: HashSet<(MappingKind, String)>,
}

impl std::fmt::Debug for HashedPseudonyms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of logs.
        f.debug_struct("HashedPseudonyms")
            .field("project", &self.project)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl HashedPseudonyms {
    /// Pseudonyms for `project` keyed by `secret`.
    pub fn new(project: &str, secret: &[u8]) -> Self {
        // HMAC accepts keys of any length (longer ones are hashed first), so this cannot fail.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        HashedPseudonyms {
            project: project.to_owned(),
            mac,
            pending: Vec::new(),
            seen: HashSet::new(),
        }
    }

    /// Mappings handed out since the last call (kind, original, replacement), each once.
    pub fn take_mappings(&mut self) -> Vec<Mapping> {
        self.seen.clear();
        std::mem::take(&mut self.pending)
    }

    fn digest(&self, kind: &str, original: &str) -> [u8; 32] {
        let mut mac = self.mac.clone();
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        for part in [
            self.project.as_bytes(),
            kind.as_bytes(),
            original.as_bytes(),
        ] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    fn record(&mut self, kind: MappingKind, original: &str, replacement: &str) {
        if self.seen.insert((kind, original.to_owned())) {
            self.pending.push(Mapping {
                kind,
                original: original.to_owned(),
                replacement: replacement.to_owned(),
            });
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

impl Pseudonyms for HashedPseudonyms {
    fn uid(&mut self, original: &str) -> String {
        let d = self.digest("uid", original);
        let mut first = [0u8; 16];
        first.copy_from_slice(&d[..16]);
        let replacement = format!("2.25.{}", u128::from_be_bytes(first));
        self.record(MappingKind::Uid, original, &replacement);
        replacement
    }

    fn patient(&mut self, patient_id: &str, issuer: &str) -> PatientPseudonym {
        let key = patient_key(patient_id, issuer);
        let d = self.digest("patient", &key);
        let pseudonym = PatientPseudonym {
            id: format!("PSN{}", hex(&d[..10])),
            name: format!("ANON^{}", hex(&d[10..15])),
        };
        self.record(MappingKind::PatientId, &key, &pseudonym.id);
        self.record(MappingKind::PatientName, &key, &pseudonym.name);
        pseudonym
    }

    fn date_offset_days(&mut self, patient_id: &str, issuer: &str) -> i64 {
        let d = self.digest("date-offset", &patient_key(patient_id, issuer));
        let mut first = [0u8; 8];
        first.copy_from_slice(&d[..8]);
        let n = u64::from_be_bytes(first) % (MAX_DATE_OFFSET_DAYS as u64);
        -(n as i64) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_input_same_pseudonym_and_project_separates() {
        let mut a = HashedPseudonyms::new("p1", b"secret");
        let mut b = HashedPseudonyms::new("p1", b"secret");
        let mut other_project = HashedPseudonyms::new("p2", b"secret");
        let mut other_secret = HashedPseudonyms::new("p1", b"other");
        let uid = "1.2.840.113619.2.55.3.604688119";
        assert_eq!(a.uid(uid), b.uid(uid));
        assert_eq!(a.uid(uid), a.uid(uid));
        assert_ne!(a.uid(uid), other_project.uid(uid));
        assert_ne!(a.uid(uid), other_secret.uid(uid));
        assert_ne!(a.uid(uid), a.uid("1.2.3"));
        assert_eq!(a.patient("123", "HOSP"), b.patient("123", "HOSP"));
        assert_ne!(a.patient("123", "HOSP"), a.patient("123", "OTHER"));
        assert_eq!(
            a.date_offset_days("123", "HOSP"),
            b.date_offset_days("123", "HOSP")
        );
    }

    #[test]
    fn uid_form_and_offset_range() {
        let mut p = HashedPseudonyms::new("p", b"k");
        for i in 0..500 {
            let u = p.uid(&format!("1.2.{i}"));
            assert!(u.starts_with("2.25.") && u.len() <= 64, "{u}");
            let digits = &u[5..];
            assert!(digits.bytes().all(|c| c.is_ascii_digit()));
            assert!(!digits.starts_with('0') || digits == "0", "{u}");
            let off = p.date_offset_days(&i.to_string(), "");
            assert!((-MAX_DATE_OFFSET_DAYS..=-1).contains(&off), "{off}");
        }
        let pp = p.patient("x", "");
        assert!(pp.id.len() <= 64 && pp.name.len() <= 64);
    }

    #[test]
    fn mappings_are_reported_once_per_batch() {
        let mut p = HashedPseudonyms::new("p", b"k");
        let u = p.uid("1.2.3");
        p.uid("1.2.3");
        let pat = p.patient("42", "");
        let m = p.take_mappings();
        assert_eq!(m.len(), 3);
        assert!(m.contains(&Mapping {
            kind: MappingKind::Uid,
            original: "1.2.3".into(),
            replacement: u
        }));
        assert!(m.contains(&Mapping {
            kind: MappingKind::PatientName,
            original: "42".into(),
            replacement: pat.name
        }));
        assert!(p.take_mappings().is_empty());
        p.uid("1.2.3");
        assert_eq!(p.take_mappings().len(), 1);
    }
}
