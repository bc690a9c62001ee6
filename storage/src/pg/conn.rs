//! Connections to PostgreSQL: a `deadpool-postgres` pool on a small tokio runtime of the
//! index's own. The index's interface is blocking (ingest and the readers run on blocking
//! threads, some in async handlers), so each call runs as a task on that runtime and the
//! caller waits on a channel: never `block_on` inside someone else's runtime.

use std::future::Future;
use std::sync::mpsc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::tls;

use crate::error::StorageError;

/// How long a caller waits for a free connection, or for a new one to be made, before the
/// call fails as "unavailable" (a C-STORE then answers with a retryable status).
const WAIT: Duration = Duration::from_secs(10);

pub use crate::store::IndexSettings as PgSettings;

pub(crate) struct PgPool {
    pool: Pool,
    /// For connections outside the pool (leases).
    config: tokio_postgres::Config,
    tls: Option<MakeRustlsConnect>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for PgPool {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            // The last handle may go in async code, where a blocking shutdown panics.
            rt.shutdown_background();
        }
    }
}

pub(crate) fn pg_error(
    context: &'static str,
) -> impl FnOnce(tokio_postgres::Error) -> StorageError {
    move |source| StorageError::Postgres { context, source }
}

pub(crate) fn pool_error(
    context: &'static str,
) -> impl FnOnce(deadpool_postgres::PoolError) -> StorageError {
    move |source| StorageError::PostgresPool { context, source }
}

async fn drive<F: Future<Output = Result<(), tokio_postgres::Error>>>(connection: F) {
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "unpooled PostgreSQL connection ended");
    }
}

/// Records as stored in `bytea` columns: the same encoding the embedded index keeps.
pub(crate) use crate::index::codec::{decode, encode};

impl PgPool {
    pub(crate) fn open(settings: &PgSettings) -> Result<Self, StorageError> {
        let tls::Target { config, tls } = tls::target(&settings.url)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pacs-pg")
            .enable_all()
            .build()
            .map_err(|e| StorageError::io("starting the PostgreSQL runtime", "", e))?;
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &tls {
            Some(tls) => Manager::from_config(config.clone(), tls.clone(), manager_config),
            None => Manager::from_config(config.clone(), NoTls, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(settings.max_connections.max(2))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(WAIT))
            .create_timeout(Some(WAIT))
            .recycle_timeout(Some(WAIT))
            .build()
            .map_err(|e| StorageError::IndexConfig(format!("PostgreSQL pool: {e}")))?;
        Ok(PgPool {
            pool,
            config,
            tls,
            runtime: Some(runtime),
        })
    }

    /// A connection of its own, outside the pool, over the same TLS as the pool's (call
    /// on the index's runtime: its I/O runs as a task there until the client is dropped).
    pub(crate) fn connect_unpooled(
        &self,
    ) -> impl Future<Output = Result<tokio_postgres::Client, tokio_postgres::Error>> + Send + 'static
    {
        let config = self.config.clone();
        let tls = self.tls.clone();
        async move {
            match tls {
                Some(tls) => {
                    let (client, connection) = config.connect(tls).await?;
                    tokio::spawn(drive(connection));
                    Ok(client)
                }
                None => {
                    let (client, connection) = config.connect(NoTls).await?;
                    tokio::spawn(drive(connection));
                    Ok(client)
                }
            }
        }
    }

    /// Run `work` on the index's runtime and wait for its answer.
    pub(crate) fn run<T, F, Fut>(&self, work: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(Pool) -> Fut,
        Fut: Future<Output = Result<T, StorageError>> + Send + 'static,
    {
        let runtime = self.runtime.as_ref().ok_or(StorageError::WriterGone)?;
        let (tx, rx) = mpsc::sync_channel(1);
        let fut = work(self.pool.clone());
        runtime.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().map_err(|_| StorageError::WriterGone)?
    }

    /// Run `work` with one pooled connection (a single statement or a read).
    pub(crate) fn with_client<T, F, Fut>(
        &self,
        context: &'static str,
        work: F,
    ) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StorageError>> + Send + 'static,
    {
        self.run(move |pool| async move {
            let client = pool.get().await.map_err(pool_error(context))?;
            work(client).await
        })
    }

    /// A connection for a transaction (back to the pool when dropped, or detached).
    pub(crate) fn take(&self, context: &'static str) -> Result<Object, StorageError> {
        self.run(move |pool| async move { pool.get().await.map_err(pool_error(context)) })
    }

    /// Run `work` on a connection the caller holds, handing it back with the answer.
    pub(crate) fn on<T, F, Fut>(
        &self,
        client: Object,
        work: F,
    ) -> (Option<Object>, Result<T, StorageError>)
    where
        T: Send + 'static,
        F: FnOnce(Object) -> Fut,
        Fut: Future<Output = (Object, Result<T, StorageError>)> + Send + 'static,
    {
        let Some(runtime) = self.runtime.as_ref() else {
            return (None, Err(StorageError::WriterGone));
        };
        let (tx, rx) = mpsc::sync_channel(1);
        let fut = work(client);
        runtime.spawn(async move {
            let _ = tx.send(fut.await);
        });
        match rx.recv() {
            Ok((client, out)) => (Some(client), out),
            Err(_) => (None, Err(StorageError::WriterGone)),
        }
    }
}
