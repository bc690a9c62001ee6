//! Leases on PostgreSQL: a session advisory lock on a connection of its own (outside the
//! pool), pinged every few seconds. The lease is held while that connection lives; when the
//! node dies its connection closes and PostgreSQL releases the lock, and when the database
//! goes away or stops answering the node gives the job up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::NoTls;

use super::conn::{pg_error, PgPool};
use super::PgIndex;
use crate::error::StorageError;
use crate::lease::{Lease, Leases};

const PING_EVERY: Duration = Duration::from_secs(2);
const PING_TIMEOUT: Duration = Duration::from_secs(5);

struct PgLease {
    alive: Arc<AtomicBool>,
    /// Dropped with the lease: ends the ping task, which closes the connection.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Lease for PgLease {
    fn held(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }
}

impl Leases for PgIndex {
    fn try_acquire(&self, job: &str) -> Result<Option<Box<dyn Lease>>, StorageError> {
        acquire(&self.pool, job)
    }
}

fn acquire(pool: &PgPool, job: &str) -> Result<Option<Box<dyn Lease>>, StorageError> {
    let config = pool.config().clone();
    let job = format!("pacs job {job}");
    pool.run(move |_| async move {
        let (client, connection) = config
            .connect(NoTls)
            .await
            .map_err(pg_error("connecting for a lease"))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "lease connection ended");
            }
        });
        let row = client
            .query_one(
                "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
                &[&job],
            )
            .await
            .map_err(pg_error("taking a lease"))?;
        if !row.get::<_, bool>(0) {
            return Ok(None);
        }
        let alive = Arc::new(AtomicBool::new(true));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let flag = alive.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tokio::time::sleep(PING_EVERY) => {}
                }
                let ping =
                    tokio::time::timeout(PING_TIMEOUT, client.simple_query("SELECT 1")).await;
                if !matches!(ping, Ok(Ok(_))) {
                    tracing::warn!(%job, "lost the database connection holding a job's lease");
                    break;
                }
            }
            flag.store(false, Ordering::Release);
            // The client drops here: the connection closes and the lock is released.
        });
        Ok(Some(
            Box::new(PgLease { alive, _stop: stop }) as Box<dyn Lease>
        ))
    })
}
