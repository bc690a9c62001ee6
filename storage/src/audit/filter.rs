//! Which records a reader of the trail asks for.
//!
//! A query scans records in seq order and filters each one; there is no secondary index.
//! That is fine for the volumes an audit review reads page by page; an index by time
//! (and by user / patient) is future work if whole-log searches get slow.

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
