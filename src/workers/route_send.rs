//! How a route sends: C-STORE over one association to a configured node (as stored, in the
//! route's transfer syntax, or de-identified through a temporary file so the same
//! re-encoding applies), or STOW-RS in batches through the export's sender.

use std::path::PathBuf;
use std::sync::Arc;

use pacs_deid::HashedPseudonyms;
use pacs_storage::{InstanceRecord, Store};
use pacs_viewer_api::{deidentified, record_pseudonyms, stow_records, Deidentify, ExportTarget};
use tokio_util::sync::CancellationToken;

use crate::dimse::access::RemoteNode;
use crate::dimse::local_blob::{local_blob, LocalBlobError};
use crate::dimse::scu::{ScuError, SendPlan, StoreScu};

/// Why a route's delivery failed (retried, then dead).
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error(transparent)]
    Scu(#[from] ScuError),
    #[error(transparent)]
    Blob(#[from] LocalBlobError),
    #[error("{node} accepts no presentation context for {sop_class} in {transfer_syntax}")]
    NoContext {
        node: String,
        sop_class: String,
        transfer_syntax: String,
    },
    #[error("{node} answered C-STORE of {sop} with status 0x{status:04X}")]
    Refused {
        node: String,
        sop: String,
        status: u16,
    },
    #[error("de-identifying {sop}: {reason}")]
    Deidentify { sop: String, reason: String },
    #[error("temporary file {}: {source}", path.display())]
    Temporary {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("STOW-RS: {0}")]
    Stow(String),
    #[error("stopped by shutdown after {0} instances")]
    Shutdown(usize),
    #[error("the sending task failed")]
    Task(#[from] tokio::task::JoinError),
}

/// Success and the warnings of PS3.4 B.2.3 (coercion, elements discarded, data set does not
/// match its class): the destination has the instance.
fn stored(status: u16) -> bool {
    matches!(status, 0x0000 | 0x0001 | 0xB000 | 0xB006 | 0xB007)
}

/// What the C-STORE side needs beside the records.
pub struct NodeSend<'a> {
    pub node: &'a RemoteNode,
    pub our_ae: &'a str,
    pub max_pdu: u32,
    pub transfer_syntax: Option<&'a str>,
    pub deid: Option<&'a Deidentify>,
    pub shutdown: &'a CancellationToken,
}

/// C-STORE every record to the node over one association; the number stored.
pub async fn store_to_node(
    store: &Arc<Store>,
    send: &NodeSend<'_>,
    records: &[InstanceRecord],
) -> Result<usize, RouteError> {
    let mut wanted: Vec<(String, String)> = Vec::new();
    for rec in records {
        let ts = send
            .transfer_syntax
            .unwrap_or(&rec.transfer_syntax_uid)
            .to_string();
        let pair = (rec.sop_class_uid.clone(), ts);
        if !wanted.contains(&pair) {
            wanted.push(pair);
        }
    }
    let mut scu = StoreScu::connect(send.node, send.our_ae, send.max_pdu, &wanted).await?;
    let result = send_all(store, send, &mut scu, records).await;
    scu.release().await;
    result
}

async fn send_all(
    store: &Arc<Store>,
    send: &NodeSend<'_>,
    scu: &mut StoreScu,
    records: &[InstanceRecord],
) -> Result<usize, RouteError> {
    let mut pseudonyms = send
        .deid
        .map(|d| HashedPseudonyms::new(&d.project, &d.secret));
    for (done, rec) in records.iter().enumerate() {
        if send.shutdown.is_cancelled() {
            return Err(RouteError::Shutdown(done));
        }
        let plan = plan(scu, send, rec)?;
        let (sop, status) = match (send.deid, pseudonyms.as_mut()) {
            (Some(d), Some(p)) => {
                let (sop, file) = deidentified_file(store, rec, d, p)?;
                let status = scu
                    .store(&plan, &rec.sop_class_uid, &sop, &file.0, None)
                    .await?;
                (sop, status)
            }
            _ => {
                let local = local_blob(store, rec).await?;
                let status = scu
                    .store(
                        &plan,
                        &rec.sop_class_uid,
                        &rec.sop_instance_uid,
                        local.path(),
                        None,
                    )
                    .await?;
                (rec.sop_instance_uid.clone(), status)
            }
        };
        if !stored(status) {
            return Err(RouteError::Refused {
                node: send.node.ae_title.clone(),
                sop,
                status,
            });
        }
    }
    Ok(records.len())
}

/// The accepted context for an instance: the route's syntax when it names one (re-encoded
/// or decoded to it as needed), else the stored one, else a native one.
fn plan(scu: &StoreScu, send: &NodeSend<'_>, rec: &InstanceRecord) -> Result<SendPlan, RouteError> {
    let found = match send.transfer_syntax {
        Some(ts) => scu
            .accepted_context(&rec.sop_class_uid, ts)
            .map(|id| SendPlan {
                context_id: id,
                stored_ts: rec.transfer_syntax_uid.clone(),
                transcode_to: (ts != rec.transfer_syntax_uid).then(|| ts.to_string()),
            }),
        None => scu.plan(&rec.sop_class_uid, &rec.transfer_syntax_uid),
    };
    found.ok_or_else(|| RouteError::NoContext {
        node: send.node.ae_title.clone(),
        sop_class: rec.sop_class_uid.clone(),
        transfer_syntax: send
            .transfer_syntax
            .unwrap_or(&rec.transfer_syntax_uid)
            .to_string(),
    })
}

/// A temporary file removed when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The instance de-identified into a temporary Part 10 file (its new SOP Instance UID and
/// the file); the replacements are in the pseudonym table before it leaves.
fn deidentified_file(
    store: &Store,
    rec: &InstanceRecord,
    deid: &Deidentify,
    pseudonyms: &mut HashedPseudonyms,
) -> Result<(String, TempFile), RouteError> {
    let failed = |reason: String| RouteError::Deidentify {
        sop: rec.sop_instance_uid.clone(),
        reason,
    };
    let (name, obj) =
        deidentified(store, rec, &deid.profile, pseudonyms).map_err(|e| failed(e.to_string()))?;
    record_pseudonyms(store, &deid.project, pseudonyms).map_err(|e| failed(e.to_string()))?;
    let sop = name
        .rsplit('/')
        .next()
        .and_then(|f| f.strip_suffix(".dcm"))
        .unwrap_or_default()
        .to_string();
    let dir = store.data_dir().join("tmp");
    let temporary = |path: &PathBuf, source| RouteError::Temporary {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(|e| temporary(&dir, e))?;
    let path = dir.join(format!("route-{}.dcm", uuid::Uuid::new_v4().simple()));
    let mut options = std::fs::File::options();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(&path).map_err(|e| temporary(&path, e))?;
    let guard = TempFile(path.clone());
    let mut out = std::io::BufWriter::new(file);
    obj.write_all(&mut out)
        .map_err(|e| failed(format!("writing: {e}")))?;
    std::io::Write::flush(&mut out).map_err(|e| temporary(&path, e))?;
    Ok((sop, guard))
}

/// STOW-RS of the records to the endpoint; the number stored.
pub async fn stow(
    store: &Arc<Store>,
    target: &ExportTarget,
    records: &[InstanceRecord],
    deid: Option<Arc<Deidentify>>,
) -> Result<usize, RouteError> {
    stow_records(store.clone(), target, records, deid)
        .await
        .map_err(|e| RouteError::Stow(e.to_string()))
}
