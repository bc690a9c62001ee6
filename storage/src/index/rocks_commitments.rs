//! Pending storage commitment requests on RocksDB: `commitments` (transaction UID →
//! request), each put and removal synced.

use rocksdb::WriteBatch;

use super::rocks::RocksIndex;
use super::rocks_db::{decode, encode, CF_COMMITMENTS};
use crate::commitment::{CommitmentRequest, Commitments};
use crate::error::StorageError;

impl Commitments for RocksIndex {
    fn put_commitment(&self, request: &CommitmentRequest) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            &self.db().cf(CF_COMMITMENTS)?,
            request.transaction_uid.as_bytes(),
            encode(CF_COMMITMENTS, &request.transaction_uid, request)?,
        );
        self.db()
            .write_synced(batch, "recording a storage commitment request")
    }

    fn pending_commitments(&self, limit: usize) -> Result<Vec<CommitmentRequest>, StorageError> {
        let db = self.db();
        let handle = db.cf(CF_COMMITMENTS)?;
        let mut out: Vec<CommitmentRequest> = Vec::new();
        for item in db.raw().iterator_cf(&handle, rocksdb::IteratorMode::Start) {
            let (k, v) = item.map_err(StorageError::db("reading commitment requests"))?;
            if out.len() >= limit {
                break;
            }
            out.push(decode(CF_COMMITMENTS, &String::from_utf8_lossy(&k), &v)?);
        }
        out.sort_by_key(|r| r.received_ms);
        Ok(out)
    }

    fn remove_commitment(&self, transaction_uid: &str) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.delete_cf(&self.db().cf(CF_COMMITMENTS)?, transaction_uid.as_bytes());
        self.db()
            .write_synced(batch, "removing a storage commitment request")
    }
}
