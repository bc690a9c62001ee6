//! The RocksDB handle under the index: its column families, typed reads of records,
//! statistics, secondary keys and counters, and synced writes. Both the index's reads and its
//! write transactions go through it, so neither has to reach into the other.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{
    BoundColumnFamily, ColumnFamilyDescriptor, DBWithThreadMode, MultiThreaded, Options,
};
use serde::de::DeserializeOwned;

use super::keys::{index_prefix, uid_of_entry, value_of_entry};
use super::{Lookup, SecondaryKey, Statistics};
use crate::error::StorageError;

pub(crate) const CF_PATIENTS: &str = "patients";
pub(crate) const CF_STUDIES: &str = "studies";
pub(crate) const CF_SERIES: &str = "series";
pub(crate) const CF_INSTANCES: &str = "instances";
pub(crate) const CF_SECONDARY: &str = "secondary";
pub(crate) const CF_META: &str = "meta";
pub(crate) const CF_EVENTS: &str = "events";
pub(crate) const CF_UNSTABLE: &str = "unstable";
pub(crate) const CF_DELIVERIES: &str = "deliveries";
pub(crate) const CF_FLAGS: &str = "flags";
pub(crate) const CF_ORDERS: &str = "orders";
pub(crate) const CF_WORKLIST: &str = "worklist";
pub(crate) const CF_MPPS: &str = "mpps";
pub(crate) const CF_COMMITMENTS: &str = "commitments";
pub(crate) const CF_PSEUDONYMS: &str = "pseudonyms";
pub(crate) const CF_REJECTED: &str = "rejected";
const ALL_CFS: &[&str] = &[
    CF_PATIENTS,
    CF_STUDIES,
    CF_SERIES,
    CF_INSTANCES,
    CF_SECONDARY,
    CF_META,
    CF_EVENTS,
    CF_UNSTABLE,
    CF_DELIVERIES,
    CF_FLAGS,
    CF_ORDERS,
    CF_WORKLIST,
    CF_MPPS,
    CF_COMMITMENTS,
    CF_PSEUDONYMS,
    CF_REJECTED,
];
/// Key of the archive-wide statistics in `meta`.
pub(crate) const STATS_KEY: &[u8] = b"statistics";

pub(crate) type Db = DBWithThreadMode<MultiThreaded>;

pub(crate) struct RocksDb {
    db: Db,
    path: PathBuf,
}

impl RocksDb {
    pub(crate) fn open(path: &Path) -> Result<Self, StorageError> {
        let path = path.to_path_buf();
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        opts.set_keep_log_file_num(5);
        opts.increase_parallelism(2);
        let cfs = ALL_CFS.iter().map(|name| {
            let mut cf_opts = Options::default();
            cf_opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
            ColumnFamilyDescriptor::new(*name, cf_opts)
        });
        let db = Db::open_cf_descriptors(&opts, &path, cfs).map_err(|source| {
            let detail = source.to_string();
            if detail.contains("lock") || detail.contains("LOCK") {
                StorageError::Locked {
                    path: path.clone(),
                    detail,
                }
            } else {
                StorageError::Db {
                    context: "opening the index",
                    source,
                }
            }
        })?;
        Ok(RocksDb { db, path })
    }

    /// Open for reading only, beside a running server (no lock taken).
    pub(crate) fn open_read_only(path: &Path) -> Result<Self, StorageError> {
        let path = path.to_path_buf();
        let opts = Options::default();
        // An archive made by an older version lacks the newer column families; read what
        // it has (reads of the others fail with MissingColumnFamily).
        let existing = Db::list_cf(&opts, &path).unwrap_or_default();
        let cfs = ALL_CFS
            .iter()
            .copied()
            .filter(|cf| existing.is_empty() || existing.iter().any(|e| e == cf));
        let db = Db::open_cf_for_read_only(&opts, &path, cfs, false).map_err(|source| {
            StorageError::Db {
                context: "opening the index read-only",
                source,
            }
        })?;
        Ok(RocksDb { db, path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The database itself, for iterators over a column family.
    pub(crate) fn raw(&self) -> &Db {
        &self.db
    }

    pub(crate) fn cf(
        &self,
        name: &'static str,
    ) -> Result<Arc<BoundColumnFamily<'_>>, StorageError> {
        self.db
            .cf_handle(name)
            .ok_or(StorageError::MissingColumnFamily(name))
    }

    pub(crate) fn get_record<T: DeserializeOwned>(
        &self,
        cf: &'static str,
        key: &str,
    ) -> Result<Option<T>, StorageError> {
        let handle = self.cf(cf)?;
        let Some(bytes) = self
            .db
            .get_pinned_cf(&handle, key.as_bytes())
            .map_err(StorageError::db("reading a record"))?
        else {
            return Ok(None);
        };
        decode(cf, key, &bytes).map(Some)
    }

    pub(crate) fn statistics(&self) -> Result<Statistics, StorageError> {
        let meta = self.cf(CF_META)?;
        match self
            .db
            .get_pinned_cf(&meta, STATS_KEY)
            .map_err(StorageError::db("reading statistics"))?
        {
            Some(bytes) => decode(CF_META, "statistics", &bytes),
            None => Ok(Statistics::default()),
        }
    }

    /// A big-endian counter (0 when absent).
    pub(crate) fn read_u64(&self, cf: &'static str, key: &[u8]) -> Result<u64, StorageError> {
        let handle = self.cf(cf)?;
        Ok(self
            .db
            .get_pinned_cf(&handle, key)
            .map_err(StorageError::db("reading a counter"))?
            .and_then(|b| <[u8; 8]>::try_from(&b[..]).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0))
    }

    /// Keys of `cf` in key order, starting after `after` (paging).
    pub(crate) fn list_keys(
        &self,
        cf: &'static str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        let handle = self.cf(cf)?;
        let mode = match after {
            Some(a) => rocksdb::IteratorMode::From(a.as_bytes(), rocksdb::Direction::Forward),
            None => rocksdb::IteratorMode::Start,
        };
        let mut out = Vec::new();
        for item in self.db.iterator_cf(&handle, mode) {
            let (k, _) = item.map_err(StorageError::db("listing keys"))?;
            let key = String::from_utf8_lossy(&k).into_owned();
            if Some(key.as_str()) == after {
                continue;
            }
            if out.len() >= limit {
                break;
            }
            out.push(key);
        }
        Ok(out)
    }

    /// UIDs whose indexed value matches the key's value as `lookup` says, in key order.
    pub(crate) fn scan_secondary_by(
        &self,
        key: &SecondaryKey,
        lookup: &Lookup,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        let cf = self.cf(CF_SECONDARY)?;
        let (start, bound) = match lookup {
            Lookup::Exact => (key.exact_prefix(), key.exact_prefix()),
            Lookup::Prefix => (key.value_prefix(), key.value_prefix()),
            Lookup::Range { .. } => (key.value_prefix(), index_prefix(key)),
        };
        let mut out = Vec::new();
        let mode = rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward);
        for item in self.db.iterator_cf(&cf, mode) {
            let (k, _) = item.map_err(StorageError::db("scanning a secondary index"))?;
            if !k.starts_with(&bound) || out.len() >= limit {
                break;
            }
            if let Lookup::Range { upper: Some(upper) } = lookup {
                if value_of_entry(&k).is_some_and(|v| v > upper.as_str()) {
                    break;
                }
            }
            if let Some(uid) = uid_of_entry(&k) {
                out.push(uid.to_string());
            }
        }
        Ok(out)
    }

    /// Write `batch` and sync the log before returning: a change is durable once it returns.
    pub(crate) fn write_synced(
        &self,
        batch: rocksdb::WriteBatch,
        context: &'static str,
    ) -> Result<(), StorageError> {
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(true);
        self.db
            .write_opt(batch, &wo)
            .map_err(StorageError::db(context))
    }
}

/// Every value (records, statistics, events, deliveries) in the index's one encoding.
pub(crate) use super::codec::{decode, encode};
