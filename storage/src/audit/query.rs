//! Reading the trail back: filter and page by seq.
//!
//! A query scans records in seq order and filters each one; there is no secondary index.
//! That is fine for the volumes an audit review reads page by page; an index by time
//! (and by user / patient) is future work if whole-log searches get slow.

use std::path::Path;

use rocksdb::{Direction, IteratorMode, DB};

use super::db;
use super::error::AuditError;
use super::model::{AuditRecord, Interface, Outcome};

/// Every set field must match; `None` matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub user: Option<String>,
    /// Prefix: "wado." matches "wado.retrieve" and "wado.rendered".
    pub action: Option<String>,
    pub patient_id: Option<String>,
    pub study_uid: Option<String>,
    pub outcome: Option<Outcome>,
    pub interface: Option<Interface>,
    /// RFC 3339 lower bound, inclusive, compared as strings (so "2026-11-25" works too).
    pub since: Option<String>,
    /// RFC 3339 upper bound, exclusive, compared as strings.
    pub until: Option<String>,
}

impl AuditFilter {
    pub fn matches(&self, record: &AuditRecord) -> bool {
        let e = &record.entry;
        fn eq(want: &Option<String>, have: &str) -> bool {
            want.as_deref().is_none_or(|w| w == have)
        }
        fn eq_opt(want: &Option<String>, have: &Option<String>) -> bool {
            want.is_none() || want == have
        }
        eq(&self.user, &e.user)
            && self
                .action
                .as_deref()
                .is_none_or(|prefix| e.action.starts_with(prefix))
            && eq_opt(&self.patient_id, &e.patient_id)
            && eq_opt(&self.study_uid, &e.study_uid)
            && self.outcome.is_none_or(|o| o == e.outcome)
            && self.interface.is_none_or(|i| i == e.interface)
            && self
                .since
                .as_deref()
                .is_none_or(|since| record.time.as_str() >= since)
            && self
                .until
                .as_deref()
                .is_none_or(|until| record.time.as_str() < until)
    }
}

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
