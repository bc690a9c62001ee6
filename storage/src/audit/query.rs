//! Reading the trail back: filter and page by seq.
//!
//! A query scans records in seq order and filters each one; there is no secondary index.
//! That is fine for the volumes an audit review reads page by page; an index by time
//! (and by user / patient) is future work if whole-log searches get slow.

use std::path::Path;

use rocksdb::{Direction, IteratorMode, DB};

use super::db;
use super::error::AuditError;
use super::filter::AuditFilter;
use super::model::AuditRecord;

/// Up to `limit` records matching `filter`. `after_seq` is the paging cursor: the seq of
/// the last record of the previous page, 0 for the first page. Oldest first, a page holds
/// records with seq > `after_seq`; newest first, records with seq < `after_seq`.
///
/// Undecodable records are skipped with a warning (`verify` reports them), so one damaged
/// record does not make the trail unreadable.
pub fn run(
    db: &DB,
    dir: &Path,
    filter: &AuditFilter,
    after_seq: u64,
    limit: usize,
    newest_first: bool,
) -> Result<Vec<AuditRecord>, AuditError> {
    let start = match (newest_first, after_seq) {
        (false, u64::MAX) | (true, 1) => return Ok(Vec::new()),
        (false, n) => db::record_key(n + 1),
        (true, 0) => db::record_key(u64::MAX),
        (true, n) => db::record_key(n - 1),
    };
    let direction = if newest_first {
        Direction::Reverse
    } else {
        Direction::Forward
    };
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    for item in db.iterator(IteratorMode::From(&start, direction)) {
        let (key, value) = item.map_err(AuditError::db("reading records", dir))?;
        let Some(seq) = db::seq_of_key(&key) else {
            break; // past the record keys
        };
        let record = match db::decode_record(seq, &value) {
            Ok(record) => record,
            Err(e) => {
                tracing::warn!(seq, error = %e, "skipping an undecodable audit record");
                continue;
            }
        };
        if filter.matches(&record) {
            out.push(record);
            if out.len() >= limit {
                break;
            }
        }
    }
    Ok(out)
}
