//! Storage commitment reports that could not be delivered on the requesting association (it
//! closed, or the requester refused the report), delivered on a new association to the
//! requester's `[[nodes]]` entry: at start (so a request received before a crash is answered
//! after the restart) and then every `RETRY_EVERY`. As PS3.4 J.3.3 asks, the association
//! proposes the Storage Commitment Push Model with us in the SCP role.

use std::sync::Arc;
use std::time::Duration;

use dicom_ul::pdu::{PDataValueType, Pdu, RequestorRoles, UserVariableItem};
use pacs_storage::commitment::{evaluate, CommitmentRequest};
use pacs_storage::Store;
use tokio_util::sync::CancellationToken;

use super::command::{event_report_request, field, Command};
use super::scu::{open_association, ScuError};
use super::services::commitment::{
    event_information, STORAGE_COMMITMENT_INSTANCE, STORAGE_COMMITMENT_PUSH,
};
use super::session::DimseSettings;

/// How often undelivered reports are tried again.
const RETRY_EVERY: Duration = Duration::from_secs(60);
/// A request younger than this may still be reported on its own association.
const GRACE_MS: u64 = 45_000;
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const IMPLICIT_LE: &str = "1.2.840.10008.1.2";

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("no [[nodes]] entry for AE title {0}")]
    UnknownNode(String),
    #[error("{0} accepted no Storage Commitment context in the SCP role")]
    NotAccepted(String),
    #[error("cannot encode the report")]
    Encode,
    #[error("the report was answered with status 0x{0:04X}")]
    Refused(u16),
    #[error("no N-EVENT-REPORT-RSP to the report")]
    NoResponse,
    #[error(transparent)]
    Scu(#[from] ScuError),
    #[error(transparent)]
    Pdu(#[from] super::pdu_io::PduError),
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Deliver pending reports until `shutdown`: all of them at once, then the ones older than
/// the grace period every `RETRY_EVERY`.
pub async fn run(store: Arc<Store>, settings: Arc<DimseSettings>, shutdown: CancellationToken) {
    let mut first = true;
    loop {
        let min_age = if first { 0 } else { GRACE_MS };
        first = false;
        deliver_pending(&store, &settings, min_age).await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RETRY_EVERY) => {}
        }
    }
}

async fn deliver_pending(store: &Arc<Store>, settings: &DimseSettings, min_age_ms: u64) {
    let reader = store.clone();
    let pending = match tokio::task::spawn_blocking(move || {
        reader.commitments.pending_commitments(1000)
    })
    .await
    {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            tracing::warn!(error = %pacs_storage::error_chain(&e), "cannot read pending commitment requests");
            return;
        }
        Err(_) => return,
    };
    let now = now_ms();
    for request in pending
        .into_iter()
        .filter(|r| now.saturating_sub(r.received_ms) >= min_age_ms)
    {
        let tx = request.transaction_uid.clone();
        match deliver(store, settings, &request).await {
            Ok(()) => {
                tracing::info!(transaction = %tx, node = %request.calling_ae, "storage commitment report delivered on a new association");
                let remover = store.clone();
                let removed =
                    tokio::task::spawn_blocking(move || remover.commitments.remove_commitment(&tx))
                        .await;
                if let Ok(Err(e)) = removed {
                    tracing::warn!(error = %pacs_storage::error_chain(&e), "report delivered but still recorded");
                }
            }
            Err(e) => {
                tracing::warn!(transaction = %tx, node = %request.calling_ae,
                    error = %pacs_storage::error_chain(&e), "storage commitment report not delivered; will retry");
            }
        }
    }
}

/// Evaluate `request` now and report it to its requester's node.
pub async fn deliver(
    store: &Arc<Store>,
    settings: &DimseSettings,
    request: &CommitmentRequest,
) -> Result<(), DeliveryError> {
    let node = settings
        .nodes
        .iter()
        .find(|n| n.ae_title == request.calling_ae)
        .ok_or_else(|| DeliveryError::UnknownNode(request.calling_ae.clone()))?
        .clone();
    let checker = (store.clone(), request.clone());
    let result = tokio::task::spawn_blocking(move || evaluate(&checker.0, &checker.1))
        .await
        .map_err(|_| DeliveryError::Encode)?;
    let offers = vec![(
        STORAGE_COMMITMENT_PUSH.to_string(),
        vec![EXPLICIT_LE.to_string(), IMPLICIT_LE.to_string()],
    )];
    let roles = vec![UserVariableItem::ScuScpRoleSelectionSubItem(
        STORAGE_COMMITMENT_PUSH.to_string(),
        RequestorRoles {
            scu: false,
            scp: true,
        },
    )];
    let mut opened =
        open_association(&node, &settings.ae_title, settings.max_pdu, offers, roles).await?;
    let Some((context_id, _, ts)) = opened.accepted.first().cloned() else {
        return Err(DeliveryError::NotAccepted(node.ae_title.clone()));
    };
    let (event_type, data) =
        event_information(&request.transaction_uid, &result, &ts).ok_or(DeliveryError::Encode)?;
    let command = event_report_request(
        1,
        STORAGE_COMMITMENT_PUSH,
        STORAGE_COMMITMENT_INSTANCE,
        event_type,
    )
    .map_err(|_| DeliveryError::Encode)?;
    let peer_max = opened.peer_max_pdu;
    let pdus = &mut opened.pdus;
    pdus.send_message_part(context_id, PDataValueType::Command, &command, peer_max)
        .await?;
    pdus.send_message_part(context_id, PDataValueType::Data, &data, peer_max)
        .await?;
    let mut bytes = Vec::new();
    let status = 'response: loop {
        match pdus.read(RESPONSE_TIMEOUT).await? {
            Pdu::PData { data } => {
                for v in data {
                    if v.value_type != PDataValueType::Command {
                        continue;
                    }
                    bytes.extend_from_slice(&v.data);
                    if v.is_last {
                        match Command::parse(&bytes) {
                            Ok(c) if c.field == field::N_EVENT_REPORT_RQ | field::RESPONSE_BIT => {
                                break 'response c.status.unwrap_or(0xFFFF)
                            }
                            _ => return Err(DeliveryError::NoResponse),
                        }
                    }
                }
            }
            _ => return Err(DeliveryError::NoResponse),
        }
    };
    if pdus.write(&Pdu::ReleaseRQ).await.is_ok() {
        let _ = pdus.read(RESPONSE_TIMEOUT).await;
    }
    if status != 0 {
        return Err(DeliveryError::Refused(status));
    }
    Ok(())
}
