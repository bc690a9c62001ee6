//! `pacs serve`: open the store, start the DICOM and HTTP listeners, run until SIGINT/SIGTERM,
//! then stop accepting, let in-flight stores finish, and close the index.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pacs_storage::query::MatchOptions;
use pacs_storage::{Store, StoreOptions};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ServeSettings;
use crate::dimse::access::AccessPolicy;
use crate::dimse::association::DimseSettings;
use crate::dimse::listener::DimseListener;
use crate::error::AppError;

/// How long in-flight associations get to finish at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(settings: ServeSettings) -> Result<(), AppError> {
    // Handlers first, so a signal during start-up is not fatal and SIGXFSZ never kills us.
    let signals = Signals::install()?;
    let store_settings = settings.store.clone();
    let store = tokio::task::spawn_blocking(move || {
        Store::open(
            &store_settings.data,
            StoreOptions {
                duplicate_policy: store_settings.duplicates,
            },
        )
    })
    .await
    .map_err(|e| AppError::Internal(e.to_string()))??;
    let store = Arc::new(store);

    let dicom_addr = SocketAddr::new(settings.dicom_bind, settings.dicom_port);
    let dicom = TcpListener::bind(dicom_addr)
        .await
        .map_err(|e| AppError::Bind {
            addr: dicom_addr,
            source: e,
        })?;
    let http_addr = SocketAddr::new(settings.http_bind, settings.http_port);
    let http = TcpListener::bind(http_addr)
        .await
        .map_err(|e| AppError::Bind {
            addr: http_addr,
            source: e,
        })?;
    let dicom_local = dicom.local_addr().map_err(AppError::Io)?;
    let http_local = http.local_addr().map_err(AppError::Io)?;
    tracing::info!(
        data = %settings.store.data.display(),
        ae_title = %settings.ae_title,
        "DICOM listening on {dicom_local}"
    );
    tracing::info!("HTTP listening on {http_local}");

    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let listener = DimseListener {
        listener: dicom,
        settings: Arc::new(DimseSettings {
            ae_title: settings.ae_title.clone(),
            max_pdu: settings.max_pdu,
            artim_timeout: Duration::from_secs(30),
            idle_timeout: settings.idle_timeout,
            nodes: settings.nodes.clone(),
            access: AccessPolicy::new(settings.restrict_to_nodes, &settings.nodes),
            match_options: MatchOptions {
                case_insensitive_names: settings.case_insensitive_names,
            },
        }),
        max_associations: settings.max_associations,
    };
    let dimse_task = tokio::spawn(listener.run(store.clone(), shutdown.clone(), tracker.clone()));

    if let Some(dir) = &settings.viewer_dir {
        if !dir.join("index.html").is_file() {
            tracing::warn!(dir = %dir.display(), "viewer directory has no index.html");
        }
    }
    let share_secret = crate::workers::share_secret(&settings.store.data)?;
    let api = pacs_viewer_api::ApiState::new(
        store.clone(),
        pacs_viewer_api::ApiConfig {
            public_url: settings.public_url.clone(),
            max_stow_bytes: settings.max_stow_bytes,
            cors_origins: settings.cors_origins.clone(),
            viewer_dir: settings.viewer_dir.clone(),
            match_options: MatchOptions {
                case_insensitive_names: settings.case_insensitive_names,
            },
            local_addr: http_local.to_string(),
            render_threads: settings.render_threads,
            thumbnail_cache_entries: settings.thumbnail_cache_entries,
            share_secret: share_secret.clone(),
        },
    )
    .map_err(|e| AppError::Internal(e.to_string()))?;
    let app = pacs_viewer_api::router(api);
    let stability = tokio::spawn(crate::workers::stability::run(
        store.outbox.clone(),
        settings.stable_after,
        shutdown.clone(),
    ));
    let wado_base = match &settings.public_url {
        Some(u) => format!("{}/dicom-web", u.trim_end_matches('/')),
        None => format!("http://{http_local}/dicom-web"),
    };
    let mut worker_tasks = Vec::new();
    let share = crate::workers::ShareSettings {
        secret: share_secret.clone(),
        ttl_secs: settings.share_link_ttl.as_secs().max(1),
    };
    for (target, worker) in crate::workers::configured(&settings.workers, &wado_base, &share) {
        let dispatcher = crate::workers::dispatch::Dispatcher {
            worker,
            store: store.clone(),
            retry: crate::workers::dispatch::RetryPolicy::from_target(&target),
            client: crate::workers::dispatch::http_client()?,
        };
        tracing::info!(worker = dispatcher.worker.name(), url = %target.url, "worker enabled");
        worker_tasks.push(tokio::spawn(dispatcher.run(shutdown.clone())));
    }
    let http_shutdown = shutdown.clone();
    let http_task = tokio::spawn(async move {
        axum::serve(http, app)
            .with_graceful_shutdown(async move { http_shutdown.cancelled().await })
            .await
    });

    signals.wait().await;
    tracing::info!("shutting down: no new associations; finishing in-flight stores");
    shutdown.cancel();
    let _ = stability.await;
    for t in worker_tasks {
        let _ = t.await;
    }
    let _ = dimse_task.await;
    tracker.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("associations still open after {DRAIN_TIMEOUT:?}; closing anyway");
    }
    match tokio::time::timeout(Duration::from_secs(5), http_task).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP server ended with an error"),
        Err(_) => tracing::warn!("HTTP connections still open; closing anyway"),
        _ => {}
    }
    // Dropping the last handle joins the index writer and closes RocksDB.
    tokio::task::spawn_blocking(move || drop(store))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?;
    tracing::info!("stopped");
    Ok(())
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    xfsz: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self, AppError> {
        Ok(Signals {
            term: signal(SignalKind::terminate()).map_err(AppError::Io)?,
            int: signal(SignalKind::interrupt()).map_err(AppError::Io)?,
            // A write past RLIMIT_FSIZE would kill the process; with a handler it fails with
            // EFBIG instead, which the store answers as "out of resources".
            xfsz: signal(SignalKind::from_raw(25)).map_err(AppError::Io)?,
        })
    }

    /// Until SIGINT or SIGTERM.
    async fn wait(mut self) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return,
                _ = self.int.recv() => return,
                _ = self.xfsz.recv() => tracing::warn!("file size limit reached (SIGXFSZ)"),
            }
        }
    }
}
