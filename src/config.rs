//! Settings: built-in defaults, overridden by `pacs.toml` (or `--config FILE`), overridden by
//! `PACS_*` environment variables, overridden by flags. Clap merges flags and environment;
//! this module layers the result over the file and the defaults.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use pacs_storage::DuplicatePolicy;

use crate::dimse::access::RemoteNode;
use crate::dimse::identity::IdentityPolicy;
use crate::workers::settings::WorkersConfig;
use serde::Deserialize;

pub const DEFAULT_CONFIG_FILE: &str = "pacs.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid setting: {0}")]
    Invalid(String),
    #[error("invalid setting: {0}")]
    Workers(#[from] crate::workers::settings::SettingsError),
}

/// Options shared by every command that opens the data directory.
#[derive(Debug, Clone, Args, Default)]
pub struct StoreArgs {
    /// Config file (TOML). Default: ./pacs.toml when it exists.
    #[arg(long, env = "PACS_CONFIG", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Data directory: RocksDB index and blob files [default: ./pacs-data]
    #[arg(long, env = "PACS_DATA", value_name = "DIR", global = true)]
    pub data: Option<PathBuf>,
    /// What to do with an instance whose SOP Instance UID is already stored [default: keep]
    #[arg(long, env = "PACS_DUPLICATES", value_enum, global = true)]
    pub duplicates: Option<DuplicateArg>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DuplicateArg {
    /// Keep the stored copy, answer success
    Keep,
    /// Replace the stored copy
    Overwrite,
}

/// Options of `pacs serve`.
#[derive(Debug, Clone, Args, Default)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Our DICOM Application Entity title [default: PACS]
    #[arg(long, env = "PACS_AE_TITLE")]
    pub ae_title: Option<String>,
    /// DICOM port (0 picks a free port) [default: 11112]
    #[arg(long, env = "PACS_DICOM_PORT")]
    pub dicom_port: Option<u16>,
    /// Address the DICOM listener binds to [default: 0.0.0.0]
    #[arg(long, env = "PACS_DICOM_BIND")]
    pub dicom_bind: Option<IpAddr>,
    /// HTTP port (0 picks a free port) [default: 8080]
    #[arg(long, env = "PACS_HTTP_PORT")]
    pub http_port: Option<u16>,
    /// Address the HTTP listener binds to [default: 127.0.0.1]
    #[arg(long, env = "PACS_HTTP_BIND")]
    pub http_bind: Option<IpAddr>,
    /// Most associations served at once; more are rejected (transient) [default: 64]
    #[arg(long, env = "PACS_MAX_ASSOCIATIONS")]
    pub max_associations: Option<usize>,
    /// Serve a static viewer build (e.g. OHIF's dist/) at /viewer
    #[arg(long, env = "PACS_VIEWER_DIR")]
    pub viewer_dir: Option<PathBuf>,
    /// HL7 v2 (MLLP) order intake port (0 picks a free port) [default: off]
    #[arg(long, env = "PACS_HL7_PORT")]
    pub hl7_port: Option<u16>,
    /// Public base URL for absolute links (RetrieveURL, BulkDataURI) behind a proxy,
    /// e.g. https://pacs.example.org [default: from the request's Host]
    #[arg(long, env = "PACS_PUBLIC_URL")]
    pub public_url: Option<String>,
}

/// The `pacs.toml` file: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data: Option<PathBuf>,
    pub duplicates: Option<DuplicateArg>,
    pub ae_title: Option<String>,
    pub dicom_port: Option<u16>,
    pub dicom_bind: Option<IpAddr>,
    pub http_port: Option<u16>,
    pub http_bind: Option<IpAddr>,
    pub max_associations: Option<usize>,
    /// Largest PDU we accept, in bytes [default: 262138]
    pub max_pdu: Option<u32>,
    /// Seconds an association may stay silent before it is aborted [default: 120]
    pub idle_timeout_secs: Option<u64>,
    /// Remote DICOM nodes (C-MOVE destinations, and per-node access).
    #[serde(default)]
    pub nodes: Vec<RemoteNode>,
    /// Only listed nodes, connecting from their host, may associate [default: false].
    pub restrict_to_nodes: Option<bool>,
    /// Match person names in queries regardless of case [default: false].
    pub case_insensitive_names: Option<bool>,
    /// DICOM user identity (PS3.7 D.3.3.7): "none", "accepted" or "required"; a node's
    /// `user_identity` overrides it [default: "accepted"].
    pub dicom_user_identity: Option<IdentityPolicy>,
    pub viewer_dir: Option<PathBuf>,
    pub public_url: Option<String>,
    /// Origins allowed to call the HTTP API from a browser (CORS); "*" for any.
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// Largest STOW-RS request body in bytes [default: 4 GiB].
    pub max_stow_bytes: Option<u64>,
    /// Threads decoding and rendering images [default: one per core].
    pub render_threads: Option<usize>,
    /// Rendered thumbnails kept in memory [default: 4096].
    pub thumbnail_cache_entries: Option<usize>,
    /// De-identification profiles (PS3.15 Annex E options) by name; "basic" (no option) is
    /// always there unless a profile of that name replaces it.
    #[serde(default)]
    pub deid_profiles: Vec<pacs_deid::Profile>,
    /// Seconds without a new instance before SeriesStable/StudyStable [default: 60].
    pub stable_after_secs: Option<f64>,
    /// Lifetime of patient portal share links in hours [default: 72].
    pub share_link_hours: Option<f64>,
    /// Serve HTTP on a non-loopback address although it has no authentication yet
    /// [default: false: such a bind is refused].
    pub allow_unauthenticated_http: Option<bool>,
    /// Worker modules delivering events to hospital systems.
    #[serde(default)]
    pub workers: WorkersConfig,
    /// HTTPS for the HTTP API and DICOM TLS on its own port.
    pub tls: Option<TlsConfig>,
    /// Authentication of HTTP callers (local accounts, OIDC tokens).
    pub auth: Option<AuthConfig>,
    /// Encryption at rest of blob files.
    pub encryption: Option<EncryptionConfig>,
    /// What connections may cost before they are associations or requests.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// HL7 v2 order intake over MLLP (off without a port).
    pub hl7: Option<crate::hl7_intake::Hl7Config>,
    /// Blobs on S3-compatible storage (absent: files in `<data>/blobs`).
    pub blobs: Option<crate::config_blobs::BlobsConfig>,
    /// The index on PostgreSQL (absent: RocksDB in `<data>/index`).
    pub index: Option<crate::config_index::IndexConfig>,
    /// Fetch priors from an older archive (`[priors]`).
    pub priors: Option<crate::workers::priors::PriorsConfig>,
    /// Forwarding rules (`[[routes]]`).
    #[serde(default)]
    pub routes: Vec<crate::workers::route_settings::RouteConfig>,
    /// IHE IOCM rejection notes: what happens to the instances they hide.
    #[serde(default)]
    pub rejection_notes: RejectionNotesConfig,
}

/// `[rejection_notes]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectionNotesConfig {
    /// Days an instance stays hidden (restorable) before it and its files are deleted for
    /// good [default: never; an administrator purges them over the API].
    pub purge_after_days: Option<f64>,
}

/// `[limits]`: bounds on connections that have not yet proved anything (DICOM connections
/// still negotiating, HTTP connections and their request headers).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Seconds a DICOM connection has for its TLS handshake and whole A-ASSOCIATE-RQ (ARTIM)
    /// [default: 30].
    pub artim_timeout_secs: Option<u64>,
    /// DICOM connections negotiating at once; more are refused unread [default: 256].
    pub max_pending_associations: Option<usize>,
    /// Of those, from one address [default: 32].
    pub max_pending_per_address: Option<usize>,
    /// MiB that all negotiating DICOM connections may buffer together [default: 64].
    pub pending_memory_mib: Option<usize>,
    /// HTTP connections at once; more get 503 [default: 1024].
    pub http_max_connections: Option<usize>,
    /// Of those, from one address (raise it behind a reverse proxy) [default: 256].
    pub http_max_connections_per_address: Option<usize>,
    /// Seconds a client has to send a request's headers; also the longest an idle
    /// keep-alive connection stays open [default: 30].
    pub http_header_timeout_secs: Option<u64>,
}

impl LimitsConfig {
    fn resolve(&self, max_associations: usize) -> Result<Limits, ConfigError> {
        let positive = |name: &str, v: Option<usize>, default: usize| match v {
            Some(0) => Err(ConfigError::Invalid(format!(
                "limits.{name} must be at least 1"
            ))),
            v => Ok(v.unwrap_or(default)),
        };
        let secs = |name: &str, v: Option<u64>, default: u64| match v {
            Some(0) => Err(ConfigError::Invalid(format!(
                "limits.{name} must be at least 1"
            ))),
            v => Ok(Duration::from_secs(v.unwrap_or(default))),
        };
        Ok(Limits {
            dimse: crate::dimse::admission::AdmissionLimits {
                max_associations,
                max_handshakes: positive(
                    "max_pending_associations",
                    self.max_pending_associations,
                    256,
                )?,
                max_handshakes_per_peer: positive(
                    "max_pending_per_address",
                    self.max_pending_per_address,
                    32,
                )?,
                handshake_memory: positive("pending_memory_mib", self.pending_memory_mib, 64)?
                    .saturating_mul(1 << 20),
                artim: secs("artim_timeout_secs", self.artim_timeout_secs, 30)?,
            },
            http: crate::http_listener::HttpLimits {
                max_connections: positive("http_max_connections", self.http_max_connections, 1024)?,
                max_per_address: positive(
                    "http_max_connections_per_address",
                    self.http_max_connections_per_address,
                    256,
                )?,
                header_timeout: secs(
                    "http_header_timeout_secs",
                    self.http_header_timeout_secs,
                    30,
                )?,
            },
        })
    }
}

/// The resolved `[limits]`.
#[derive(Debug, Clone)]
pub struct Limits {
    pub dimse: crate::dimse::admission::AdmissionLimits,
    pub http: crate::http_listener::HttpLimits,
}

/// `[encryption]`: blob files sealed with AES-256-GCM. The key (64 hex digits or 32 raw
/// bytes) comes from `key_file` or the `PACS_BLOB_KEY` environment variable (hex).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    pub key_file: Option<PathBuf>,
}

/// `[auth]`: who may call the HTTP API. With this section, every request needs credentials.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Refuse requests without credentials [default: true].
    pub required: Option<bool>,
    /// Local accounts file (`pacs user ...`) [default: <data>/users.toml].
    pub users_file: Option<PathBuf>,
    /// Lifetime of a login session in minutes [default: 15].
    pub session_minutes: Option<u64>,
    /// OIDC / OAuth2 bearer tokens from the site's identity provider.
    pub oidc: Option<pacs_auth::jwt::OidcConfig>,
}

/// `[tls]`: PEM certificate chain and key; HTTPS replaces plain HTTP, DICOM TLS listens
/// beside the plain DICOM port.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Serve the HTTP API over HTTPS [default: true].
    pub https: Option<bool>,
    /// DICOM TLS port (0 picks a free port) [default: 2762].
    pub dicom_port: Option<u16>,
    /// Listen for DICOM TLS [default: true].
    pub dicom: Option<bool>,
    /// CA (PEM) that DICOM peers' certificates must chain to: mutual TLS for DIMSE.
    pub dicom_client_ca: Option<PathBuf>,
    /// CA (PEM) for HTTPS client certificates: a verified certificate whose common name is a
    /// local account (a service account) authenticates as that account.
    pub http_client_ca: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub data: PathBuf,
    pub duplicates: DuplicatePolicy,
    /// Encryption at rest of blob files, when a key is configured.
    pub blob_key: Option<pacs_storage::blob_crypto::BlobKeyMaterial>,
    /// Blobs in an S3-compatible bucket (`[blobs]`); None: files in `<data>/blobs`.
    pub blobs: Option<pacs_storage::blob::S3Settings>,
    /// The index on PostgreSQL (`[index]`); None: RocksDB in `<data>/index`.
    pub index: Option<pacs_storage::IndexSettings>,
}

impl StoreSettings {
    pub fn options(&self) -> pacs_storage::StoreOptions {
        pacs_storage::StoreOptions {
            duplicate_policy: self.duplicates,
            blob_key: self.blob_key.clone(),
            blobs: self.blobs.clone(),
            index: self.index.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub store: StoreSettings,
    pub ae_title: String,
    pub dicom_bind: IpAddr,
    pub dicom_port: u16,
    pub http_bind: IpAddr,
    pub http_port: u16,
    pub max_pdu: u32,
    pub idle_timeout: Duration,
    pub limits: Limits,
    pub nodes: Vec<RemoteNode>,
    pub restrict_to_nodes: bool,
    pub case_insensitive_names: bool,
    pub dicom_user_identity: IdentityPolicy,
    pub viewer_dir: Option<PathBuf>,
    pub public_url: Option<String>,
    pub cors_origins: Vec<String>,
    pub max_stow_bytes: u64,
    pub render_threads: usize,
    pub thumbnail_cache_entries: usize,
    pub deid_profiles: Vec<pacs_deid::Profile>,
    pub stable_after: Duration,
    pub workers: WorkersConfig,
    pub share_link_ttl: Duration,
    pub tls: Option<TlsConfig>,
    pub auth: Option<AuthConfig>,
    /// Accounts file of `pacs user` and the login API.
    pub users_file: PathBuf,
    /// The HL7 listener, when a port is configured.
    pub hl7: Option<crate::hl7_intake::Hl7Settings>,
    /// Where priors are fetched from, checked against the nodes.
    pub priors: Option<crate::workers::priors::PriorsConfig>,
    /// Forwarding rules, checked against the nodes and profiles.
    pub routes: Vec<crate::workers::route_settings::RouteConfig>,
    /// How long rejected instances are kept before the purge (None: until an admin purges).
    pub rejected_purge_after: Option<Duration>,
}

fn load_file(explicit: Option<&Path>) -> Result<FileConfig, ConfigError> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None if Path::new(DEFAULT_CONFIG_FILE).exists() => PathBuf::from(DEFAULT_CONFIG_FILE),
        None => return Ok(FileConfig::default()),
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path,
        source: Box::new(source),
    })
}

/// The local accounts file: `[auth] users_file` (relative to the config file) or
/// `<data>/users.toml`.
pub fn users_file(auth: Option<&AuthConfig>, data: &Path, config_file: Option<&Path>) -> PathBuf {
    match auth.and_then(|a| a.users_file.as_deref()) {
        Some(p) => beside_config(p, config_file),
        None => data.join("users.toml"),
    }
}

/// A path named in the config file: a relative one is taken from the config file's folder,
/// like a site expects.
fn beside_config(p: &Path, config_file: Option<&Path>) -> PathBuf {
    match config_file.and_then(Path::parent) {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p.to_path_buf(),
    }
}

/// Paths in `[tls]`, taken from the config file's folder.
fn resolve_relative(mut t: TlsConfig, config_file: Option<&Path>) -> TlsConfig {
    for p in [&mut t.cert, &mut t.key].into_iter().chain(
        [&mut t.dicom_client_ca, &mut t.http_client_ca]
            .into_iter()
            .flatten(),
    ) {
        *p = beside_config(p, config_file);
    }
    t
}

/// The blob key: `PACS_BLOB_KEY` (hex) wins over `[encryption] key_file`.
fn blob_key(
    enc: Option<&EncryptionConfig>,
    config_file: Option<&Path>,
) -> Result<Option<pacs_storage::blob_crypto::BlobKeyMaterial>, ConfigError> {
    use pacs_storage::blob_crypto::BlobKeyMaterial;
    let bad = |e: pacs_storage::StorageError| ConfigError::Invalid(e.to_string());
    if let Ok(hex) = std::env::var("PACS_BLOB_KEY") {
        return BlobKeyMaterial::parse(hex.as_bytes())
            .map(Some)
            .map_err(bad);
    }
    match enc.and_then(|e| e.key_file.as_ref()) {
        Some(p) => BlobKeyMaterial::from_file(&beside_config(p, config_file))
            .map(Some)
            .map_err(bad),
        None if enc.is_some() => Err(ConfigError::Invalid(
            "[encryption] needs key_file or the PACS_BLOB_KEY environment variable".into(),
        )),
        None => Ok(None),
    }
}

fn policy(arg: DuplicateArg) -> DuplicatePolicy {
    match arg {
        DuplicateArg::Keep => DuplicatePolicy::Keep,
        DuplicateArg::Overwrite => DuplicatePolicy::Overwrite,
    }
}

impl StoreArgs {
    pub fn resolve(&self) -> Result<(StoreSettings, FileConfig), ConfigError> {
        let file = load_file(self.config.as_deref())?;
        let settings = StoreSettings {
            data: self
                .data
                .clone()
                .or_else(|| file.data.clone())
                .unwrap_or_else(|| PathBuf::from("pacs-data")),
            duplicates: policy(
                self.duplicates
                    .or(file.duplicates)
                    .unwrap_or(DuplicateArg::Keep),
            ),
            blob_key: blob_key(file.encryption.as_ref(), self.config.as_deref())?,
            blobs: crate::config_blobs::resolve(file.blobs.as_ref())?,
            index: crate::config_index::resolve(file.index.as_ref())?,
        };
        Ok((settings, file))
    }
}

impl ServeArgs {
    pub fn resolve(&self) -> Result<ServeSettings, ConfigError> {
        let (store, file) = self.store.resolve()?;
        let ae_title = self
            .ae_title
            .clone()
            .or(file.ae_title)
            .unwrap_or_else(|| "PACS".into());
        if ae_title.is_empty()
            || ae_title.len() > 16
            || !ae_title.is_ascii()
            || ae_title.contains('\\')
        {
            return Err(ConfigError::Invalid(format!(
                "AE title {ae_title:?} must be 1 to 16 ASCII characters without backslash"
            )));
        }
        let max_associations = self
            .max_associations
            .or(file.max_associations)
            .unwrap_or(64);
        if max_associations == 0 {
            return Err(ConfigError::Invalid(
                "max_associations must be at least 1".into(),
            ));
        }
        let max_pdu = file.max_pdu.unwrap_or(262_138);
        if !(4096..=16 * 1024 * 1024).contains(&max_pdu) {
            return Err(ConfigError::Invalid(
                "max_pdu must be 4096..=16777216".into(),
            ));
        }
        let http_bind = self
            .http_bind
            .or(file.http_bind)
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        // Secure by default: without [auth] the HTTP API answers anyone, so it stays on
        // loopback unless the site configures authentication (or insists).
        let auth_required = file
            .auth
            .as_ref()
            .is_some_and(|a| a.required.unwrap_or(true));
        if !http_bind.is_loopback()
            && !auth_required
            && !file.allow_unauthenticated_http.unwrap_or(false)
        {
            return Err(ConfigError::Invalid(format!(
                "HTTP on {http_bind} would expose patient data without authentication: \
                 configure [auth] (local accounts or OIDC), bind 127.0.0.1 (the default), or \
                 set allow_unauthenticated_http = true in the config file"
            )));
        }
        let users_file = users_file(
            file.auth.as_ref(),
            &store.data,
            self.store.config.as_deref(),
        );
        let dicom_bind = self
            .dicom_bind
            .or(file.dicom_bind)
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let hl7 = file
            .hl7
            .clone()
            .unwrap_or_default()
            .resolve(self.hl7_port, dicom_bind)?;
        let deid_profiles = deid_profiles(file.deid_profiles)?;
        let routes = checked_routes(file.routes, &file.nodes, &deid_profiles)?;
        if let Some(name) = file.workers.ai.as_ref().and_then(|t| t.profile.as_ref()) {
            if !deid_profiles.iter().any(|p| &p.name == name) {
                return Err(ConfigError::Invalid(format!(
                    "workers.ai.profile {name:?} is not a configured de-identification profile"
                )));
            }
        }
        if let Some(p) = &file.priors {
            let aes: Vec<String> = file.nodes.iter().map(|n| n.ae_title.clone()).collect();
            p.check(&aes)?;
        }
        Ok(ServeSettings {
            store,
            ae_title,
            dicom_bind,
            dicom_port: self.dicom_port.or(file.dicom_port).unwrap_or(11112),
            http_bind,
            http_port: self.http_port.or(file.http_port).unwrap_or(8080),
            max_pdu,
            idle_timeout: Duration::from_secs(file.idle_timeout_secs.unwrap_or(120)),
            limits: file.limits.resolve(max_associations)?,
            nodes: file.nodes,
            restrict_to_nodes: file.restrict_to_nodes.unwrap_or(false),
            case_insensitive_names: file.case_insensitive_names.unwrap_or(false),
            dicom_user_identity: file.dicom_user_identity.unwrap_or_default(),
            viewer_dir: self.viewer_dir.clone().or(file.viewer_dir),
            public_url: self.public_url.clone().or(file.public_url),
            cors_origins: file.cors_origins,
            max_stow_bytes: file.max_stow_bytes.unwrap_or(4 << 30),
            render_threads: file.render_threads.unwrap_or(0),
            thumbnail_cache_entries: file.thumbnail_cache_entries.unwrap_or(4096),
            deid_profiles,
            routes,
            priors: file.priors,
            workers: {
                let mut w = file.workers.checked()?;
                w.quality.get_or_insert(true);
                w
            },
            share_link_ttl: Duration::from_secs_f64(
                file.share_link_hours
                    .unwrap_or(72.0)
                    .clamp(0.001, 24.0 * 365.0)
                    * 3600.0,
            ),
            stable_after: Duration::from_secs_f64(
                file.stable_after_secs.unwrap_or(60.0).clamp(0.1, 86_400.0),
            ),
            tls: file
                .tls
                .map(|t| resolve_relative(t, self.store.config.as_deref())),
            auth: file.auth.map(|mut a| {
                if let Some(j) = a.oidc.as_mut().and_then(|o| o.jwks_file.as_mut()) {
                    *j = beside_config(j, self.store.config.as_deref());
                }
                a
            }),
            users_file,
            hl7,
            rejected_purge_after: match file.rejection_notes.purge_after_days {
                Some(d) if d.is_finite() && d >= 0.0 => {
                    Some(Duration::from_secs_f64(d.min(36_500.0) * 86_400.0))
                }
                Some(d) => {
                    return Err(ConfigError::Invalid(format!(
                        "[rejection_notes] purge_after_days must be a number of days >= 0, not {d}"
                    )))
                }
                None => None,
            },
        })
    }
}

/// The configured profiles, names unique, with the built-in "basic" unless replaced.
/// Routes that can work: each checked, names unique.
fn checked_routes(
    routes: Vec<crate::workers::route_settings::RouteConfig>,
    nodes: &[RemoteNode],
    profiles: &[pacs_deid::Profile],
) -> Result<Vec<crate::workers::route_settings::RouteConfig>, ConfigError> {
    let node_aes: Vec<String> = nodes.iter().map(|n| n.ae_title.clone()).collect();
    let profile_names: Vec<String> = profiles.iter().map(|p| p.name.clone()).collect();
    let mut names = std::collections::BTreeSet::new();
    for r in &routes {
        r.check(&node_aes, &profile_names)?;
        if !names.insert(r.name.clone()) {
            return Err(ConfigError::Invalid(format!(
                "routes: the name {:?} is used twice",
                r.name
            )));
        }
    }
    Ok(routes)
}

fn deid_profiles(
    mut profiles: Vec<pacs_deid::Profile>,
) -> Result<Vec<pacs_deid::Profile>, ConfigError> {
    let mut names = std::collections::BTreeSet::new();
    for p in &profiles {
        if p.name.trim().is_empty() || !names.insert(p.name.clone()) {
            return Err(ConfigError::Invalid(format!(
                "deid_profiles: the name {:?} is empty or used twice",
                p.name
            )));
        }
    }
    if !names.contains("basic") {
        profiles.push(pacs_deid::Profile::basic());
    }
    Ok(profiles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("pacs.toml");
        std::fs::write(
            &cfg,
            "ae_title = \"FROMFILE\"\ndicom_port = 4242\nhttp_port = 9090\n\n\
             [[nodes]]\nae_title = \"WS1\"\nhost = \"10.0.0.7\"\nport = 104\n",
        )
        .expect("write");
        let args = ServeArgs {
            store: StoreArgs {
                config: Some(cfg),
                ..Default::default()
            },
            http_port: Some(7000),
            ..Default::default()
        };
        let s = args.resolve().expect("resolve");
        assert_eq!(s.ae_title, "FROMFILE");
        assert_eq!(s.dicom_port, 4242);
        assert_eq!(s.http_port, 7000);
        assert_eq!(s.store.data, PathBuf::from("pacs-data"));
        assert_eq!(s.http_bind, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(s.nodes.len(), 1);
        assert_eq!(s.nodes[0].ae_title, "WS1");
    }

    #[test]
    fn unknown_keys_and_bad_titles_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("pacs.toml");
        std::fs::write(&cfg, "ae_titel = \"X\"\n").expect("write");
        let args = ServeArgs {
            store: StoreArgs {
                config: Some(cfg),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(matches!(args.resolve(), Err(ConfigError::Parse { .. })));
        let args = ServeArgs {
            ae_title: Some("THIS_TITLE_IS_TOO_LONG".into()),
            ..Default::default()
        };
        assert!(matches!(args.resolve(), Err(ConfigError::Invalid(_))));
    }

    #[test]
    fn worker_timeouts_and_concurrency_must_be_usable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("pacs.toml");
        let resolve = |target: &str| {
            std::fs::write(
                &cfg,
                format!("[workers.ehr]\nurl = \"http://127.0.0.1:9/fhir\"\n{target}"),
            )
            .expect("write");
            ServeArgs {
                store: StoreArgs {
                    config: Some(cfg.clone()),
                    ..Default::default()
                },
                ..Default::default()
            }
            .resolve()
        };
        let ok = resolve("timeout_secs = 2.5\nmax_in_flight = 3\n").expect("valid");
        let ehr = ok.workers.ehr.expect("ehr");
        assert_eq!((ehr.timeout_secs, ehr.max_in_flight), (Some(2.5), Some(3)));
        for bad in [
            "timeout_secs = 0",
            "timeout_secs = -1",
            "timeout_secs = nan",
            "max_in_flight = 0",
        ] {
            let Err(ConfigError::Workers(why)) = resolve(bad) else {
                panic!("{bad} must be refused");
            };
            assert!(why.0.contains("workers.ehr."), "{why}");
        }
    }

    #[test]
    fn remote_http_without_authentication_is_refused_unless_allowed() {
        let remote = ServeArgs {
            http_bind: Some(IpAddr::from([0, 0, 0, 0])),
            ..Default::default()
        };
        let Err(ConfigError::Invalid(why)) = remote.resolve() else {
            panic!("a non-loopback HTTP bind without authentication must be refused");
        };
        assert!(why.contains("without authentication"), "{why}");
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("pacs.toml");
        std::fs::write(&cfg, "allow_unauthenticated_http = true\n").expect("write");
        let allowed = ServeArgs {
            store: StoreArgs {
                config: Some(cfg),
                ..Default::default()
            },
            http_bind: Some(IpAddr::from([0, 0, 0, 0])),
            ..Default::default()
        };
        assert!(allowed.resolve().is_ok());
    }
}
