//! The audit trail as the rest of the server sees it, so a site can later keep it elsewhere
//! (a remote audit repository, another database) behind the same four calls.

use super::error::AuditError;
use super::filter::AuditFilter;
use super::model::{AuditEntry, AuditRecord};
use super::report::VerifyReport;

pub trait AuditTrail: Send + Sync {
    /// Queues one entry; must not drop it.
    fn record(&self, entry: AuditEntry) -> Result<(), AuditError>;
    /// Returns once everything recorded before the call is durable.
    fn flush(&self) -> Result<(), AuditError>;
    /// A page of matching records; `after_seq` is the cursor (0 = first page).
    fn query(
        &self,
        filter: &AuditFilter,
        after_seq: u64,
        limit: usize,
        newest_first: bool,
    ) -> Result<Vec<AuditRecord>, AuditError>;
    /// Checks that nothing was altered, inserted or removed.
    fn verify(&self) -> Result<VerifyReport, AuditError>;
}
