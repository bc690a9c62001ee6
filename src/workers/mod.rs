//! Worker modules beside the server: each reacts to events of the outbox and delivers to a
//! hospital system through the dispatcher (at least once, in order per study, retried, dead
//! letters kept), plus the stability detector that emits the quiet-period events.

pub mod ai;
pub mod billing;
pub mod dispatch;
pub mod ehr;
pub mod pharmacy;
pub mod portal;
pub mod quality;
pub mod stability;

use pacs_storage::{Event, Store};

/// The enabled workers of the configuration, with their targets.
pub fn configured(
    config: &crate::config::WorkersConfig,
    wado_base: &str,
    share: &ShareSettings,
) -> Vec<(crate::config::TargetConfig, std::sync::Arc<dyn Worker>)> {
    let enabled = |t: &Option<crate::config::TargetConfig>| t.clone().filter(|t| t.enabled);
    let mut out: Vec<(crate::config::TargetConfig, std::sync::Arc<dyn Worker>)> = Vec::new();
    if let Some(t) = enabled(&config.ehr) {
        let w = ehr::EhrWorker {
            fhir_base: t.url.clone(),
            bearer: t.token.clone(),
            wado_base: wado_base.to_string(),
        };
        out.push((t, std::sync::Arc::new(w)));
    }
    if let Some(t) = enabled(&config.billing) {
        let w = billing::BillingWorker {
            url: t.url.clone(),
            bearer: t.token.clone(),
        };
        out.push((t, std::sync::Arc::new(w)));
    }
    if let Some(t) = enabled(&config.portal) {
        let w = portal::PortalWorker {
            url: t.url.clone(),
            bearer: t.token.clone(),
            secret: share.secret.clone(),
            public_base: wado_base.trim_end_matches("/dicom-web").to_string(),
            link_ttl_secs: share.ttl_secs,
        };
        out.push((t, std::sync::Arc::new(w)));
    }
    if let Some(t) = enabled(&config.ai) {
        let w = ai::AiWorker {
            url: t.url.clone(),
            bearer: t.token.clone(),
        };
        out.push((t, std::sync::Arc::new(w)));
    }
    if let Some(true) = config.quality {
        // Local analyzers: no target; retried like the others if the store fails.
        let t = crate::config::TargetConfig {
            enabled: true,
            url: "local:".into(),
            token: None,
            max_attempts: Some(3),
            backoff_ms: Some(1000),
            max_backoff_ms: Some(10_000),
        };
        out.push((t, std::sync::Arc::new(quality::QualityWorker)));
    }
    if let Some(t) = enabled(&config.pharmacy) {
        let w = pharmacy::PharmacyWorker {
            url: t.url.clone(),
            bearer: t.token.clone(),
        };
        out.push((t, std::sync::Arc::new(w)));
    }
    out
}

/// The key and lifetime of portal share links.
pub struct ShareSettings {
    pub secret: Vec<u8>,
    pub ttl_secs: u64,
}

/// The share-link key: `<data>/share.key`, made once (32 random bytes, owner-only).
pub fn share_secret(data: &std::path::Path) -> Result<Vec<u8>, crate::error::AppError> {
    let path = data.join("share.key");
    if let Ok(key) = std::fs::read(&path) {
        if key.len() >= 32 {
            return Ok(key);
        }
    }
    let mut key = uuid::Uuid::new_v4().as_bytes().to_vec();
    key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(crate::error::AppError::Io)?;
    f.write_all(&key).map_err(crate::error::AppError::Io)?;
    f.sync_all().map_err(crate::error::AppError::Io)?;
    Ok(key)
}

/// One request to a target system.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub method: reqwest::Method,
    pub url: String,
    pub content_type: String,
    pub body: Vec<u8>,
    pub bearer: Option<String>,
}

impl Outgoing {
    /// A FHIR JSON request.
    pub fn fhir(
        method: reqwest::Method,
        url: String,
        body: &serde_json::Value,
        bearer: Option<String>,
    ) -> Outgoing {
        Outgoing {
            method,
            url,
            content_type: "application/fhir+json".into(),
            body: body.to_string().into_bytes(),
            bearer,
        }
    }
}

/// What a worker makes of one event.
#[derive(Debug, Clone)]
pub enum Prepared {
    Send(Outgoing),
    /// Handled here, nothing to send (e.g. built-in analyzers writing flags).
    Done,
    /// Nothing to send for this event.
    Skip,
    /// Deliberately not sent; the reason is recorded and listed (`state=held`).
    Hold(String),
}

/// A worker: which events it wants and what it sends for one (built on a blocking thread, with
/// the store at hand).
pub trait Worker: Send + Sync {
    fn name(&self) -> &str;
    /// CPU- or I/O-heavy work (decoding, whole-series uploads) that waits while instances are
    /// arriving, so it does not slow ingest; light workers deliver at once.
    fn yields_to_ingest(&self) -> bool {
        false
    }
    fn wants(&self, event: &Event) -> bool;
    fn prepare(&self, event: &Event, store: &Store) -> Result<Prepared, String>;
}

/// The headers (no pixels) of the first instance of each series of a study: where the data
/// set attributes the index does not keep (sequences, contrast, allergies) are read from.
pub fn study_headers(
    store: &Store,
    study_uid: &str,
) -> Result<Vec<dicom_object::DefaultDicomObject>, String> {
    let e = |e: pacs_storage::StorageError| e.to_string();
    let mut out = Vec::new();
    let series = store
        .index
        .scan_secondary(
            &pacs_storage::SecondaryKey::SeriesOfStudy(study_uid.into()),
            usize::MAX,
        )
        .map_err(e)?;
    for s in series {
        let first = store
            .index
            .scan_secondary(&pacs_storage::SecondaryKey::InstancesOfSeries(s), 1)
            .map_err(e)?;
        for sop in first {
            if let Some(rec) = store.index.instance(&sop).map_err(e)? {
                out.push(
                    pacs_storage::part10::read_instance(store.blobs.as_ref(), &rec.blob, true)
                        .map_err(e)?,
                );
            }
        }
    }
    Ok(out)
}

/// The instance records of a series, in index order.
pub fn series_records(
    store: &Store,
    series: &str,
) -> Result<Vec<pacs_storage::InstanceRecord>, String> {
    let e = |e: pacs_storage::StorageError| e.to_string();
    let mut out = Vec::new();
    for sop in store
        .index
        .scan_secondary(
            &pacs_storage::SecondaryKey::InstancesOfSeries(series.into()),
            usize::MAX,
        )
        .map_err(e)?
    {
        out.extend(store.index.instance(&sop).map_err(e)?);
    }
    Ok(out)
}

/// A text attribute of a data set, trimmed; None when absent or empty.
pub fn text(obj: &dicom_object::InMemDicomObject, tag: dicom_core::Tag) -> Option<String> {
    obj.get(tag)
        .and_then(|e| e.value().to_str().ok())
        .map(|v| v.trim_end_matches(['\0', ' ']).trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The FHIR subject reference of a study's patient (by identifier).
pub fn subject(attrs: &pacs_storage::records::Attributes) -> serde_json::Value {
    use pacs_storage::records::first_value;
    let issuer = first_value(attrs, "00100021");
    serde_json::json!({
        "identifier": {
            "system": if issuer.is_empty() { "urn:pacs:patient-id".to_string() } else { format!("urn:pacs:issuer:{issuer}") },
            "value": first_value(attrs, "00100020"),
        },
        "display": first_value(attrs, "00100010"),
    })
}
