//! The audit trail's own RocksDB database: key layout, opening, and reading links.
//!
//! Keys: `r` + seq (u64 big-endian, so byte order is seq order) → record JSON, and
//! `head` → [`Head`] JSON of the last record. `head` sorts before every `r…` key.

use std::path::Path;

use rocksdb::{Direction, IteratorMode, Options, DB};

use super::error::AuditError;
use super::model::{AuditRecord, Head};

pub const HEAD_KEY: &[u8] = b"head";
const RECORD_TAG: u8 = b'r';

pub fn record_key(seq: u64) -> [u8; 9] {
    let mut key = [RECORD_TAG; 9];
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// The seq of a record key, `None` for any other key.
pub fn seq_of_key(key: &[u8]) -> Option<u64> {
    match key {
        [RECORD_TAG, rest @ ..] => rest.try_into().ok().map(u64::from_be_bytes),
        _ => None,
    }
}

/// Opens (creating when writable) the database in `dir`.
pub fn open(dir: &Path, read_only: bool) -> Result<DB, AuditError> {
    let mut opts = Options::default();
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    opts.set_keep_log_file_num(5);
    let opened = if read_only {
        // No lock is taken, so this works beside a running server; it sees the data as of now.
        DB::open_for_read_only(&opts, dir, false)
    } else {
        opts.create_if_missing(true);
        std::fs::create_dir_all(dir).map_err(|source| AuditError::Io {
            context: "creating audit directory",
            path: dir.to_path_buf(),
            source,
        })?;
        DB::open(&opts, dir)
    };
    opened.map_err(|source| {
        let detail = source.to_string();
        if !read_only && (detail.contains("lock") || detail.contains("LOCK")) {
            AuditError::Locked {
                path: dir.to_path_buf(),
                detail,
            }
        } else {
            AuditError::Db {
                context: if read_only {
                    "opening read-only"
                } else {
                    "opening"
                },
                path: dir.to_path_buf(),
                source,
            }
        }
    })
}

pub fn decode_head(bytes: &[u8]) -> Result<Head, AuditError> {
    serde_json::from_slice(bytes).map_err(|source| AuditError::Decode {
        what: "head".into(),
        source,
    })
}

pub fn decode_record(seq: u64, bytes: &[u8]) -> Result<AuditRecord, AuditError> {
    serde_json::from_slice(bytes).map_err(|source| AuditError::Decode {
        what: format!("record {seq}"),
        source,
    })
}

pub fn read_head(db: &DB, dir: &Path) -> Result<Option<Head>, AuditError> {
    db.get(HEAD_KEY)
        .map_err(AuditError::db("reading the head", dir))?
        .map(|bytes| decode_head(&bytes))
        .transpose()
}

/// Seq and stored bytes of the record with the highest key, whatever the head says.
pub fn read_last_raw(db: &DB, dir: &Path) -> Result<Option<(u64, Vec<u8>)>, AuditError> {
    let from = record_key(u64::MAX);
    let mut iter = db.iterator(IteratorMode::From(&from, Direction::Reverse));
    let Some(item) = iter.next() else {
        return Ok(None);
    };
    let (key, value) = item.map_err(AuditError::db("reading the last record", dir))?;
    Ok(seq_of_key(&key).map(|seq| (seq, value.into_vec())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_keys_sort_by_seq_and_round_trip() {
        assert!(record_key(255) < record_key(256));
        assert!(HEAD_KEY < &record_key(0)[..]);
        assert_eq!(seq_of_key(&record_key(42)), Some(42));
        assert_eq!(seq_of_key(HEAD_KEY), None);
        assert_eq!(seq_of_key(b"r123"), None);
    }
}
