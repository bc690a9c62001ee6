//! The hash chain.
//!
//! Canonicalization: `hash = hex(SHA-256(prev_hash ‖ J))` where `prev_hash` is the 64 ASCII
//! hex characters of the previous record's hash and `J` is the compact `serde_json`
//! serialization of the record with `hash` set to the empty string. `serde_json` writes
//! struct fields in declaration order, skips `None` fields and escapes strings one way, so
//! `J` is a pure function of the record's content.
//!
//! A record is stored as exactly `serde_json::to_vec(record)` (with its hash); verification
//! also requires the stored bytes to equal that serialization, so edits that leave the
//! decoded content unchanged (extra fields, whitespace) are caught as well.
//!
//! The chain is unkeyed: someone who can write the database and recompute every later hash
//! (and the head) is not detected. Exporting records (syslog) or noting the head hash
//! elsewhere anchors the chain against that.

use sha2::{Digest, Sha256};

use super::error::AuditError;
use super::model::AuditRecord;

/// Hex SHA-256 that `record` must carry, given its content and `prev_hash`.
pub fn expected_hash(record: &AuditRecord) -> Result<String, AuditError> {
    let mut unsealed = record.clone();
    unsealed.hash.clear();
    let body = serde_json::to_vec(&unsealed).map_err(|source| AuditError::Encode {
        what: "record",
        source,
    })?;
    let mut hasher = Sha256::new();
    hasher.update(record.prev_hash.as_bytes());
    hasher.update(&body);
    Ok(hex(&hasher.finalize()))
}

/// Sets `record.hash` and returns the bytes to store (the RocksDB writer's job).
#[cfg(feature = "rocksdb")]
pub(super) fn seal(record: &mut AuditRecord) -> Result<Vec<u8>, AuditError> {
    record.hash = expected_hash(record)?;
    serde_json::to_vec(record).map_err(|source| AuditError::Encode {
        what: "record",
        source,
    })
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::model::{AuditEntry, Interface, Outcome, GENESIS_HASH};

    fn record() -> AuditRecord {
        AuditRecord {
            seq: 1,
            time: "2026-11-25T19:01:02.345Z".into(),
            entry: AuditEntry::new(
                Interface::Http,
                "alice",
                "127.0.0.1:5000",
                "wado.retrieve",
                Outcome::Success,
            ),
            prev_hash: GENESIS_HASH.into(),
            hash: String::new(),
        }
    }

    #[test]
    fn audit_hex_encodes_lowercase() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }

    #[test]
    fn audit_hash_is_deterministic_and_covers_content() {
        let mut a = record();
        let bytes = seal(&mut a).expect("seal");
        assert_eq!(a.hash.len(), 64);
        // Documented layout: prev_hash, then the JSON with an empty hash.
        let mut unsealed = a.clone();
        unsealed.hash.clear();
        let mut input = GENESIS_HASH.as_bytes().to_vec();
        input.extend(serde_json::to_vec(&unsealed).expect("json"));
        assert_eq!(a.hash, hex(&Sha256::digest(&input)));
        // Stored bytes decode to the same record and hash the same again.
        let back: AuditRecord = serde_json::from_slice(&bytes).expect("decode");
        assert_eq!(back, a);
        assert_eq!(expected_hash(&back).expect("hash"), a.hash);
        // Optional fields are left out, not written as null.
        assert!(!String::from_utf8_lossy(&bytes).contains("null"));

        let mut b = record();
        b.entry.user = "mallory".into();
        seal(&mut b).expect("seal");
        assert_ne!(a.hash, b.hash);
    }
}
