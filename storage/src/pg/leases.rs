//! Leases on PostgreSQL: a session advisory lock on a connection of its own (outside the
//! pool), pinged every few seconds. The lease is held while that connection lives; when the
//! node dies its connection closes and PostgreSQL releases the lock, and when the database
//! goes away or stops answering the node gives the job up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::conn::{pg_error, PgPool};
use super::PgIndex;
use crate::error::StorageError;
use crate::lease::{Lease, Leases, SharedSecrets};

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
    let connect = pool.connect_unpooled();
    let job = format!("pacs job {job}");
    pool.run(move |_| async move {
        let client = connect.await.map_err(pg_error("connecting for a lease"))?;
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

impl SharedSecrets for PgIndex {
    fn shared_secret(&self, name: &str, candidate: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        // The first node's candidate wins; every later one reads it.
        let rows = self.rows(
            "reading a shared secret",
            "WITH put AS (INSERT INTO secrets (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO NOTHING RETURNING value) \
             SELECT value FROM put UNION ALL SELECT value FROM secrets WHERE name = $1",
            vec![Box::new(name.to_string()), Box::new(candidate.to_vec())],
        )?;
        Ok(rows.first().map(|r| r.get(0)))
    }
}
