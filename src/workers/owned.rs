//! Running a job on one node at a time: wait for its lease, run it until the lease is lost
//! or the server stops, then wait again. With the embedded index the lease is always ours;
//! on PostgreSQL another node takes the job over within seconds of this one dying.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use pacs_storage::lease::Leases;
use tokio_util::sync::CancellationToken;

/// How often a node asks for a job another node holds, and checks that it still holds its own.
const CHECK_EVERY: Duration = Duration::from_secs(1);

pub async fn run_owned<F, Fut>(
    leases: Arc<dyn Leases>,
    job: String,
    shutdown: CancellationToken,
    mut start: F,
) where
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut waiting_logged = false;
    loop {
        let asked = leases.clone();
        let name = job.clone();
        let lease = match tokio::task::spawn_blocking(move || asked.try_acquire(&name)).await {
            Ok(Ok(Some(lease))) => lease,
            Ok(Ok(None)) => {
                if !waiting_logged {
                    tracing::info!(%job, "another node runs this job; standing by");
                    waiting_logged = true;
                }
                if pause(&shutdown).await {
                    return;
                }
                continue;
            }
            Ok(Err(e)) => {
                tracing::warn!(%job, error = %e, "cannot take the job's lease; trying again");
                if pause(&shutdown).await {
                    return;
                }
                continue;
            }
            Err(e) => {
                tracing::error!(%job, error = %e, "lease task failed");
                return;
            }
        };
        tracing::info!(%job, "this node runs the job");
        waiting_logged = false;
        let token = shutdown.child_token();
        let watch = {
            let token = token.clone();
            async move {
                while lease.held() {
                    tokio::select! {
                        _ = token.cancelled() => return,
                        _ = tokio::time::sleep(CHECK_EVERY) => {}
                    }
                }
                token.cancel();
            }
        };
        tokio::join!(start(token.clone()), watch);
        if shutdown.is_cancelled() {
            return;
        }
        tracing::warn!(%job, "lost the job's lease; stopped it here");
    }
}

/// Wait a little; true when the server is stopping.
async fn pause(shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(CHECK_EVERY) => false,
    }
}
