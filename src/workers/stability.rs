//! Emits SeriesStable / StudyStable once a study has received nothing for the quiet period.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pacs_storage::Outbox;
use tokio_util::sync::CancellationToken;

/// How often to look: often enough that events follow the quiet period closely.
fn check_every(quiet: Duration) -> Duration {
    (quiet / 4).clamp(Duration::from_millis(200), Duration::from_secs(5))
}

pub async fn run(outbox: Arc<dyn Outbox>, quiet: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(check_every(quiet));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let outbox = outbox.clone();
        let quiet_ms = quiet.as_millis() as u64;
        let result = tokio::task::spawn_blocking(move || {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            outbox.mark_stable(now, quiet_ms)
        })
        .await;
        match result {
            Ok(Ok(events)) => {
                for e in events {
                    tracing::info!(seq = e.seq, kind = ?e.kind, study = %e.study_instance_uid, "stable");
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "stability check failed"),
            Err(e) => tracing::error!(error = %e, "stability check panicked"),
        }
    }
}
