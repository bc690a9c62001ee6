//! `pacs serve`: open the store, start the DICOM, HTTP and HL7 listeners, run until
//! SIGINT/SIGTERM, then stop accepting, let in-flight stores finish, and close the index.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pacs_auth::accounts::Accounts;
use pacs_auth::jwt::JwtValidator;
use pacs_storage::query::MatchOptions;
use pacs_storage::Store;
use pacs_viewer_api::access::authn::Authenticator;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ServeSettings;
use crate::dimse::access::AccessPolicy;
use crate::dimse::admission::Admission;
use crate::dimse::association::DimseSettings;
use crate::dimse::identity::IdentityChecker;
use crate::dimse::listener::DimseListener;
use crate::error::AppError;
use crate::tls::ClientAuth;

/// How long in-flight associations get to finish at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(settings: ServeSettings) -> Result<(), AppError> {
    // Handlers first, so a signal during start-up is not fatal and SIGXFSZ never kills us.
    let signals = Signals::install()?;
    let store_settings = settings.store.clone();
    let store = tokio::task::spawn_blocking(move || {
        Store::open(&store_settings.data, store_settings.options())
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
    // Bound (and logged) before DICOM and HTTP, so whoever reads the log for the ports
    // (the tests) has HL7's when the others appear.
    let hl7 = match &settings.hl7 {
        Some(h) => {
            let listener = TcpListener::bind(h.addr)
                .await
                .map_err(|e| AppError::Bind {
                    addr: h.addr,
                    source: e,
                })?;
            let local = listener.local_addr().map_err(AppError::Io)?;
            tracing::info!("HL7 MLLP listening on {local}");
            Some((listener, h.mllp.clone()))
        }
        None => None,
    };
    let dicom_local = dicom.local_addr().map_err(AppError::Io)?;
    let http_local = http.local_addr().map_err(AppError::Io)?;
    tracing::info!(
        data = %settings.store.data.display(),
        ae_title = %settings.ae_title,
        "DICOM listening on {dicom_local}"
    );
    let tls = TlsListeners::configure(&settings).await?;
    if tls.https.is_some() {
        tracing::info!("HTTPS listening on {http_local}");
    } else {
        tracing::info!("HTTP listening on {http_local}");
    }
    open_dicom_warning(&settings);

    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let admission = Admission::new(settings.limits.dimse.clone());
    let authenticator = authenticator(&settings).await?;
    // Password guessing over DICOM user identity and the HTTP login counts together.
    let login_throttle = Arc::new(pacs_viewer_api::access::login_api::Throttle::default());
    let dimse_settings = Arc::new(DimseSettings {
        ae_title: settings.ae_title.clone(),
        max_pdu: settings.max_pdu,
        idle_timeout: settings.idle_timeout,
        nodes: settings.nodes.clone(),
        access: AccessPolicy::new(settings.restrict_to_nodes, &settings.nodes),
        match_options: MatchOptions {
            case_insensitive_names: settings.case_insensitive_names,
        },
        identity: IdentityChecker {
            policy: settings.dicom_user_identity,
            accounts: authenticator.accounts.clone(),
            jwt: authenticator.jwt.clone(),
            throttle: login_throttle.clone(),
        },
    });
    let listener = DimseListener {
        listener: dicom,
        settings: dimse_settings.clone(),
        tls: None,
        admission: admission.clone(),
    };
    let dimse_task = tokio::spawn(listener.run(store.clone(), shutdown.clone(), tracker.clone()));
    // Storage commitment reports that missed their association (e.g. across a restart).
    {
        let (store, settings) = (store.clone(), dimse_settings.clone());
        tracker.spawn(owned(
            &store.clone(),
            "commitment-reports",
            &shutdown,
            move |token| {
                crate::dimse::commitment_delivery::run(store.clone(), settings.clone(), token)
            },
        ));
    }
    let dimse_tls_task = tls.dicom.map(|(listener, acceptor)| {
        let listener = DimseListener {
            listener,
            settings: dimse_settings.clone(),
            tls: Some(acceptor),
            admission: admission.clone(),
        };
        tokio::spawn(listener.run(store.clone(), shutdown.clone(), tracker.clone()))
    });

    if let Some(dir) = &settings.viewer_dir {
        if !dir.join("index.html").is_file() {
            tracing::warn!(dir = %dir.display(), "viewer directory has no index.html");
        }
    }
    let share_secret = crate::workers::share_secret(&settings.store.data)?;
    // Several nodes: the site's secret (the first node's), so a link made on one node
    // opens on every other.
    let share_secret = {
        let (store, own) = (store.clone(), share_secret.clone());
        tokio::task::spawn_blocking(move || store.secrets.shared_secret("share", &own))
            .await
            .map_err(|e| AppError::Internal(e.to_string()))??
            .unwrap_or(share_secret)
    };
    let auth_required = authenticator.required;
    let mut api = pacs_viewer_api::ApiState::new(
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
            deid_profiles: settings.deid_profiles.clone(),
            ai_project: settings
                .workers
                .ai
                .as_ref()
                .filter(|t| t.enabled && t.profile.is_some())
                .map(|t| t.project.clone().unwrap_or_else(|| "ai".into())),
        },
        authenticator,
    )
    .map_err(|e| AppError::Internal(e.to_string()))?;
    api.login_throttle = login_throttle;
    let remotes = Arc::new(crate::remote::DimseRemotes {
        nodes: settings.nodes.clone(),
        our_ae: settings.ae_title.clone(),
        max_pdu: settings.max_pdu,
    });
    api.remote = Some(remotes.clone());
    let app = pacs_viewer_api::router(api);
    if !auth_required {
        tracing::warn!(
            "HTTP API without authentication: every caller acts as an administrator (configure [auth])"
        );
    }
    let stability = tokio::spawn(crate::workers::stability::run(
        store.outbox.clone(),
        settings.stable_after,
        shutdown.clone(),
    ));
    let purge_task = settings.rejected_purge_after.map(|delay| {
        let purged = store.clone();
        tokio::spawn(owned(&store, "rejected-purge", &shutdown, move |token| {
            crate::workers::rejected_purge::run(purged.clone(), delay, token)
        }))
    });
    // Absolute URLs the workers hand out (ImagingStudy endpoint, portal links).
    let public_base = crate::workers::public_base(
        settings.public_url.as_deref(),
        http_local,
        tls.https.is_some(),
    );
    let mut worker_tasks = Vec::new();
    let share = crate::workers::ShareSettings {
        secret: share_secret.clone(),
        ttl_secs: settings.share_link_ttl.as_secs().max(1),
    };
    for (target, worker) in crate::workers::configured(
        &settings.workers,
        &public_base,
        &share,
        &settings.deid_profiles,
    ) {
        let dispatcher = crate::workers::dispatch::Dispatcher::new(worker, store.clone(), &target)?;
        tracing::info!(worker = dispatcher.worker.name(), url = %target.url, "worker enabled");
        worker_tasks.push(run_dispatcher(&store, dispatcher, &shutdown));
    }
    if let Some(priors) = &settings.priors {
        let worker = crate::workers::priors::PriorsWorker::new(priors, remotes.clone());
        let dispatcher = crate::workers::dispatch::Dispatcher::new(
            Arc::new(worker),
            store.clone(),
            &priors.target(),
        )?;
        start_at_head(&store, "priors").await?;
        tracing::info!(from = %priors.from, "fetching priors");
        worker_tasks.push(run_dispatcher(&store, dispatcher, &shutdown));
    }
    for route in settings.routes.iter().filter(|r| r.enabled) {
        let worker = route_worker(&settings, route, &store, &share_secret, &shutdown)?;
        start_at_head(&store, &route.worker_name()).await?;
        let dispatcher = crate::workers::dispatch::Dispatcher::new(
            Arc::new(worker),
            store.clone(),
            &route.target(),
        )?;
        tracing::info!(worker = dispatcher.worker.name(), "route enabled");
        worker_tasks.push(run_dispatcher(&store, dispatcher, &shutdown));
    }
    let hl7_task = hl7.map(|(listener, mllp)| {
        let handler = Arc::new(crate::hl7_intake::IntakeHandler {
            store: store.clone(),
        });
        tokio::spawn(pacs_hl7::server::serve(
            listener,
            mllp,
            handler,
            shutdown.clone(),
        ))
    });
    let http_task = tokio::spawn(crate::http_listener::serve(
        http,
        tls.https.clone(),
        app,
        settings.limits.http.clone(),
        shutdown.clone(),
    ));

    signals.wait().await;
    tracing::info!("shutting down: no new associations; finishing in-flight stores");
    shutdown.cancel();
    let _ = stability.await;
    if let Some(t) = purge_task {
        let _ = t.await;
    }
    for t in worker_tasks {
        let _ = t.await;
    }
    let _ = dimse_task.await;
    if let Some(t) = dimse_tls_task {
        let _ = t.await;
    }
    if let Some(t) = hl7_task {
        // Open connections finish the message they are in (bounded by its deadline).
        if tokio::time::timeout(DRAIN_TIMEOUT, t).await.is_err() {
            tracing::warn!("HL7 connections still open after {DRAIN_TIMEOUT:?}; closing anyway");
        }
    }
    tracker.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("associations still open after {DRAIN_TIMEOUT:?}; closing anyway");
    }
    if tokio::time::timeout(Duration::from_secs(5), http_task)
        .await
        .is_err()
    {
        tracing::warn!("HTTP connections still open; closing anyway");
    }
    // Dropping the last handle joins the index writer and closes RocksDB.
    tokio::task::spawn_blocking(move || drop(store))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?;
    tracing::info!("stopped");
    Ok(())
}

/// Say plainly what an open DICOM port lets anyone do (the easy first run's default).
fn open_dicom_warning(settings: &ServeSettings) {
    if settings.restrict_to_nodes {
        return;
    }
    let everywhere = settings.dicom_bind.is_unspecified();
    tracing::warn!(
        bind = %settings.dicom_bind,
        "DICOM is open: any calling AE title{} may store, query and retrieve (C-STORE, C-FIND, \
         C-MOVE, C-GET), and a listed node's `allow` list does not bind a peer that calls with \
         another AE title; set restrict_to_nodes = true and list the [[nodes]] to close it",
        if everywhere { " from any address" } else { "" }
    );
}

/// How HTTP callers are authenticated, from `[auth]` and `[tls]`.
async fn authenticator(settings: &ServeSettings) -> Result<Authenticator, AppError> {
    let mut a = Authenticator::open();
    let accounts = Accounts::open(&settings.users_file).map_err(AppError::LocalAccounts)?;
    a.accounts = Some(accounts);
    a.client_certificates = settings
        .tls
        .as_ref()
        .is_some_and(|t| t.http_client_ca.is_some());
    if let Some(auth) = &settings.auth {
        a.required = auth.required.unwrap_or(true);
        a.session_ttl = Duration::from_secs(60 * auth.session_minutes.unwrap_or(15).max(1));
        if let Some(oidc) = &auth.oidc {
            a.jwt = Some(Arc::new(
                JwtValidator::new(oidc.clone())
                    .await
                    .map_err(AppError::Oidc)?,
            ));
        }
    }
    Ok(a)
}

/// What `[tls]` asks for: an HTTPS acceptor and a bound DICOM TLS listener.
struct TlsListeners {
    https: Option<TlsAcceptor>,
    dicom: Option<(TcpListener, TlsAcceptor)>,
}

impl TlsListeners {
    async fn configure(settings: &ServeSettings) -> Result<Self, AppError> {
        let Some(t) = &settings.tls else {
            return Ok(TlsListeners {
                https: None,
                dicom: None,
            });
        };
        let https = if t.https.unwrap_or(true) {
            let auth = if t.http_client_ca.is_some() {
                ClientAuth::Optional
            } else {
                ClientAuth::None
            };
            let config = crate::tls::server_config(
                &t.cert,
                &t.key,
                t.http_client_ca.as_deref(),
                auth,
                &[b"http/1.1"],
            )?;
            Some(TlsAcceptor::from(config))
        } else {
            None
        };
        let dicom = if t.dicom.unwrap_or(true) {
            let auth = if t.dicom_client_ca.is_some() {
                ClientAuth::Required
            } else {
                ClientAuth::None
            };
            let config = crate::tls::server_config(
                &t.cert,
                &t.key,
                t.dicom_client_ca.as_deref(),
                auth,
                &[],
            )?;
            let addr = SocketAddr::new(settings.dicom_bind, t.dicom_port.unwrap_or(2762));
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| AppError::Bind { addr, source: e })?;
            let local = listener.local_addr().map_err(AppError::Io)?;
            tracing::info!(
                mutual = t.dicom_client_ca.is_some(),
                "DICOM-TLS listening on {local}"
            );
            Some((listener, TlsAcceptor::from(config)))
        } else {
            None
        };
        Ok(TlsListeners { https, dicom })
    }
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

/// The worker of one checked `[[routes]]` entry.
fn route_worker(
    settings: &ServeSettings,
    route: &crate::workers::route_settings::RouteConfig,
    store: &Arc<pacs_storage::Store>,
    share_secret: &[u8],
    shutdown: &CancellationToken,
) -> Result<crate::workers::route::RouteWorker, AppError> {
    use crate::workers::route::{Destination, RouteWorker};
    let destination = match (&route.to, &route.stow) {
        (Some(ae), _) => Destination::Node(
            settings
                .nodes
                .iter()
                .find(|n| &n.ae_title == ae)
                .cloned()
                .ok_or_else(|| AppError::Internal(format!("route node {ae} vanished")))?,
        ),
        (None, Some(url)) => Destination::Stow(pacs_viewer_api::ExportTarget {
            stow: url.clone(),
            token: route.token.clone(),
        }),
        (None, None) => return Err(AppError::Internal("route without a target".into())),
    };
    let deid = match &route.profile {
        Some(name) => Some(pacs_viewer_api::Deidentify {
            profile: settings
                .deid_profiles
                .iter()
                .find(|p| &p.name == name)
                .cloned()
                .ok_or_else(|| AppError::Internal(format!("profile {name} vanished")))?,
            project: route.project.clone().unwrap_or_else(|| "default".into()),
            secret: share_secret.to_vec(),
        }),
        None => None,
    };
    RouteWorker::new(
        route,
        destination,
        deid,
        &settings.ae_title,
        settings.max_pdu,
        store.clone(),
        shutdown.clone(),
    )
    .map_err(|e| AppError::Internal(e.to_string()))
}

/// A route (or the priors worker) seen for the first time starts with what arrives from now
/// on: adding a rule to an archive must not send, or fetch for, its whole history (the
/// other workers catch up from the start, which is what an EHR or billing system being
/// connected wants).
/// A job on this node while it holds the job's lease (always, with the embedded index).
fn owned<F, Fut>(
    store: &Arc<Store>,
    job: &str,
    shutdown: &CancellationToken,
    start: F,
) -> impl std::future::Future<Output = ()> + Send + 'static
where
    F: FnMut(CancellationToken) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    crate::workers::owned::run_owned(
        store.leases.clone(),
        job.to_string(),
        shutdown.clone(),
        start,
    )
}

/// A worker's deliveries, made by whichever node holds its lease.
fn run_dispatcher(
    store: &Arc<Store>,
    dispatcher: crate::workers::dispatch::Dispatcher,
    shutdown: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let job = format!("worker {}", dispatcher.worker.name());
    tokio::spawn(owned(store, &job, shutdown, move |token| {
        dispatcher.clone().run(token)
    }))
}

async fn start_at_head(store: &Arc<Store>, worker: &str) -> Result<(), AppError> {
    let (store, worker) = (store.clone(), worker.to_string());
    tokio::task::spawn_blocking(move || {
        if store.outbox.cursor(&worker)? == 0 {
            let head = store.outbox.last_seq()?;
            store.outbox.advance(&worker, head, &[])?;
        }
        Ok::<_, pacs_storage::StorageError>(())
    })
    .await
    .map_err(|e| AppError::Internal(e.to_string()))??;
    Ok(())
}
