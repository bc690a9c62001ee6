//! The pseudonym table on RocksDB: `pseudonyms` (project, replacement, kind → entry), each
//! write synced.

use rocksdb::WriteBatch;

use super::rocks::RocksIndex;
use super::rocks_db::{decode, encode, CF_PSEUDONYMS};
use crate::error::StorageError;
use crate::pseudonyms::{key, PseudonymEntry, PseudonymTable};

impl PseudonymTable for RocksIndex {
    fn put_pseudonyms(&self, entries: &[PseudonymEntry]) -> Result<(), StorageError> {
        if entries.is_empty() {
            return Ok(());
        }
        let handle = self.db().cf(CF_PSEUDONYMS)?;
        let mut batch = WriteBatch::default();
        for e in entries {
            let k = key(&e.project, &e.replacement, &e.kind);
            batch.put_cf(&handle, k.as_bytes(), encode(CF_PSEUDONYMS, &k, e)?);
        }
        self.db().write_synced(batch, "recording pseudonyms")
    }

    fn reidentify(
        &self,
        project: &str,
        replacement: &str,
    ) -> Result<Vec<PseudonymEntry>, StorageError> {
        let db = self.db();
        let handle = db.cf(CF_PSEUDONYMS)?;
        let prefix = format!("{project}\0{replacement}\0");
        let mut out = Vec::new();
        let mode = rocksdb::IteratorMode::From(prefix.as_bytes(), rocksdb::Direction::Forward);
        for item in db.raw().iterator_cf(&handle, mode) {
            let (k, v) = item.map_err(StorageError::db("reading pseudonyms"))?;
            if !k.starts_with(prefix.as_bytes()) || out.len() >= 16 {
                break;
            }
            out.push(decode(CF_PSEUDONYMS, &String::from_utf8_lossy(&k), &v)?);
        }
        Ok(out)
    }
}
