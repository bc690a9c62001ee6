//! Deletes instances hidden by rejection notes for longer than `[rejection_notes]
//! purge_after_days`, with an audit record per run that purged something.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pacs_storage::audit::{AuditEntry, Interface, Outcome};
use pacs_storage::rejection_admin;
use pacs_storage::Store;
use tokio_util::sync::CancellationToken;

/// How often to look: a short delay is honoured closely, a long one costs one scan an hour.
fn check_every(delay: Duration) -> Duration {
    (delay / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600))
}

pub async fn run(store: Arc<Store>, delay: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(check_every(delay));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let store = store.clone();
        let result = tokio::task::spawn_blocking(move || purge_once(&store, delay)).await;
        match result {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(instances = n, "purged rejected instances"),
            Ok(Err(e)) => tracing::error!(error = %e, "purge of rejected instances failed"),
            Err(e) => tracing::error!(error = %e, "purge of rejected instances panicked"),
        }
    }
}

fn purge_once(store: &Store, delay: Duration) -> Result<usize, pacs_storage::StorageError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let purged = rejection_admin::purge_expired(store, now, delay.as_millis() as u64)?;
    let mut studies: Vec<&str> = purged
        .iter()
        .map(|r| r.record.study_instance_uid.as_str())
        .collect();
    studies.sort_unstable();
    studies.dedup();
    for study in studies {
        let n = purged
            .iter()
            .filter(|r| r.record.study_instance_uid == study)
            .count();
        let mut e = AuditEntry::new(
            Interface::Cli,
            "system",
            "",
            "instance.purge",
            Outcome::Success,
        );
        e.study_uid = Some(study.to_string());
        e.detail = Some(format!(
            "{n} rejected instances deleted for good after {:.1} days hidden",
            delay.as_secs_f64() / 86_400.0
        ));
        if let Err(err) = store.audit.record(e) {
            tracing::error!(error = %err, "cannot record the purge in the audit trail");
        }
    }
    Ok(purged.len())
}
