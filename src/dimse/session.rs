//! What one association's services share: the peer, what was negotiated, the store, the
//! counters, and the helpers that send responses and watch for a C-CANCEL between them.

use std::sync::Arc;
use std::time::Duration;

use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu};
use pacs_storage::query::MatchOptions;
use pacs_storage::Store;
use pacs_viewer_api::access::Scope;
use tokio::io::{AsyncRead, AsyncWrite};

use super::access::{AccessPolicy, RemoteNode, Service};
use super::audit::AssociationAudit;
use super::command::{field, Command, Response, SubOperations};
use super::identity::{DimseUser, IdentityChecker};
use super::negotiation::{AcceptedContext, Negotiated};
use super::pdu_io::{PduError, PduStream};
use super::peer::DimsePeer;
use super::services::identifier::failed_list;
use super::status::Status;

/// Settings every association of the listener shares.
#[derive(Debug, Clone)]
pub struct DimseSettings {
    pub ae_title: String,
    /// Largest P-DATA PDU we accept (announced as Maximum Length).
    pub max_pdu: u32,
    /// How long an association may stay silent.
    pub idle_timeout: Duration,
    /// Known remote nodes (C-MOVE destinations).
    pub nodes: Vec<RemoteNode>,
    /// Who may associate and use which service.
    pub access: AccessPolicy,
    /// Query matching options (case-insensitive person names).
    pub match_options: MatchOptions,
    /// DICOM user identity: the global policy and what checks an identity.
    pub identity: IdentityChecker,
}

/// The byte stream under an association: plain TCP or DICOM TLS.
pub trait DimseIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> DimseIo for T {}
pub type DimseStream = Box<dyn DimseIo>;

/// What the association did, for its last log line.
#[derive(Debug, Default)]
pub struct Counters {
    pub stored: u64,
    pub duplicates: u64,
    pub failed: u64,
    pub echoes: u64,
    pub finds: u64,
    pub moves: u64,
    pub gets: u64,
}

/// One association as its services see it.
pub struct Session {
    pub pdus: PduStream<DimseStream>,
    pub negotiated: Negotiated,
    pub store: Arc<Store>,
    pub settings: Arc<DimseSettings>,
    pub counters: Counters,
    /// A PDU read while answering a C-FIND or C-MOVE that the message loop must handle next
    /// (boxed: rare, and the session is inline in every association's future).
    pub stashed: Option<Box<Result<Pdu, PduError>>>,
    /// Message ID of our last C-GET sub-operation.
    pub next_sub_message_id: u16,
    /// Storage commitment reports sent on this association and not yet confirmed: (message
    /// ID, Transaction UID). The requester's N-EVENT-REPORT-RSP may come at any point of the
    /// message loop, even after its next request.
    pub pending_reports: Vec<(u16, String)>,
    /// Services the peer may use.
    pub allowed: Vec<Service>,
    /// Who is at the other end (audit trail).
    pub peer: DimsePeer,
    /// The user the association's identity named, when it sent one we read.
    pub user: Option<Box<DimseUser>>,
    /// Which studies C-FIND, C-MOVE and C-GET may see (the user's patient scope).
    pub scope: Box<Scope>,
    pub audit: AssociationAudit,
}

/// Is this the C-CANCEL-RQ for message `message_id` (in one command fragment)?
pub fn is_cancel_for(pdu: &Result<Pdu, PduError>, message_id: u16) -> bool {
    let Ok(Pdu::PData { data }) = pdu else {
        return false;
    };
    data.iter().any(|v| {
        v.value_type == PDataValueType::Command
            && v.is_last
            && Command::parse(&v.data)
                .is_ok_and(|c| c.field == field::C_CANCEL_RQ && c.message_id == message_id)
    })
}

/// A command and a data set as one P-DATA PDU (two PDV items).
fn command_with_dataset(context_id: u8, command: Vec<u8>, dataset: Vec<u8>) -> Pdu {
    Pdu::PData {
        data: vec![
            PDataValue {
                presentation_context_id: context_id,
                value_type: PDataValueType::Command,
                is_last: true,
                data: command,
            },
            PDataValue {
                presentation_context_id: context_id,
                value_type: PDataValueType::Data,
                is_last: true,
                data: dataset,
            },
        ],
    }
}

impl Session {
    /// The accepted presentation context `id`.
    pub fn context(&self, id: u8) -> Option<&AcceptedContext> {
        self.negotiated.contexts.get(&id)
    }

    /// Has the C-CANCEL-RQ for `message_id` arrived? Reads without waiting; anything else
    /// read is kept for the message loop.
    pub async fn cancel_arrived(&mut self, message_id: u16) -> bool {
        if self.stashed.is_some() {
            return false;
        }
        let read = self.pdus.read(self.settings.idle_timeout);
        let Ok(pdu) = tokio::time::timeout(Duration::ZERO, read).await else {
            return false;
        };
        if is_cancel_for(&pdu, message_id) {
            return true;
        }
        self.stashed = Some(Box::new(pdu));
        false
    }

    /// Final answers to queries and retrieves go to the audit trail.
    fn audit_answer(&mut self, command: &Command, status: Status, comment: Option<&str>) {
        if status == Status::PENDING || status.0 == 0xFF01 {
            return;
        }
        let action = match command.field {
            field::C_FIND_RQ
                if command.affected_sop_class_uid.as_deref()
                    == Some(crate::dimse::negotiation::MODALITY_WORKLIST_FIND) =>
            {
                "dimse.mwl-find"
            }
            field::C_FIND_RQ => "dimse.c-find",
            field::N_CREATE_RQ => "dimse.mpps-create",
            field::N_SET_RQ => "dimse.mpps-set",
            field::N_ACTION_RQ => "dimse.storage-commitment",
            field::C_MOVE_RQ => "dimse.c-move",
            field::C_GET_RQ => "dimse.c-get",
            _ => return,
        };
        self.audit.answered(&self.store, action, status, comment);
    }

    /// A C-MOVE/C-GET response with sub-operation counts and, on failures, the Failed SOP
    /// Instance UID List as its identifier.
    pub async fn respond_counts(
        &mut self,
        context_id: u8,
        command: &Command,
        status: Status,
        counts: SubOperations,
        error_comment: Option<String>,
        failed: &[String],
    ) {
        self.audit_answer(command, status, error_comment.as_deref());
        let identifier = if failed.is_empty() {
            None
        } else {
            self.context(context_id)
                .and_then(|c| failed_list(failed, &c.transfer_syntax).ok())
        };
        let encoded = Response {
            request: command,
            status,
            error_comment,
            has_dataset: identifier.is_some(),
            counts: Some(counts),
        }
        .encode();
        let Ok(bytes) = encoded else {
            tracing::error!("cannot encode a response");
            return;
        };
        let peer_max = self.negotiated.peer_max_pdu;
        let mut sent = self
            .pdus
            .send_message_part(context_id, PDataValueType::Command, &bytes, peer_max)
            .await;
        if let (Ok(()), Some(data)) = (&sent, identifier) {
            sent = self
                .pdus
                .send_message_part(context_id, PDataValueType::Data, &data, peer_max)
                .await;
        }
        if let Err(e) = sent {
            tracing::warn!(error = %e, "could not send a response");
        }
    }

    /// Pending C-FIND responses, one PDU per match (command and identifier), in one write.
    pub async fn send_pending_batch(
        &mut self,
        context_id: u8,
        command: &Command,
        identifiers: Vec<Vec<u8>>,
    ) {
        let encoded = Response {
            request: command,
            status: Status::PENDING,
            error_comment: None,
            has_dataset: true,
            counts: None,
        }
        .encode();
        let Ok(rsp) = encoded else {
            tracing::error!("cannot encode a response");
            return;
        };
        let peer_max = self.negotiated.peer_max_pdu as usize;
        let mut pdus = Vec::with_capacity(identifiers.len());
        for identifier in identifiers {
            if peer_max != 0 && rsp.len() + identifier.len() + 12 > peer_max {
                // Too large for one PDU: flush what is queued, then send this one in parts.
                if let Err(e) = self.pdus.write_batch(&std::mem::take(&mut pdus)).await {
                    tracing::warn!(error = %e, "could not send a response");
                    return;
                }
                self.send_with_dataset(context_id, command, Status::PENDING, &identifier)
                    .await;
                continue;
            }
            pdus.push(command_with_dataset(context_id, rsp.clone(), identifier));
        }
        if let Err(e) = self.pdus.write_batch(&pdus).await {
            tracing::warn!(error = %e, "could not send a response");
        }
    }

    async fn send_with_dataset(
        &mut self,
        context_id: u8,
        command: &Command,
        status: Status,
        dataset: &[u8],
    ) {
        let encoded = Response {
            request: command,
            status,
            error_comment: None,
            has_dataset: true,
            counts: None,
        }
        .encode();
        let Ok(bytes) = encoded else {
            tracing::error!("cannot encode a response");
            return;
        };
        let peer_max = self.negotiated.peer_max_pdu;
        // Two PDV items (each 6 bytes of header) in one PDU, one write, when the peer's
        // maximum allows: a C-FIND answer is one write per match instead of two.
        let fits = peer_max == 0 || bytes.len() + dataset.len() + 12 <= peer_max as usize;
        let sent = if fits {
            let pdu = command_with_dataset(context_id, bytes, dataset.to_vec());
            self.pdus.write(&pdu).await
        } else {
            match self
                .pdus
                .send_message_part(context_id, PDataValueType::Command, &bytes, peer_max)
                .await
            {
                Ok(()) => {
                    self.pdus
                        .send_message_part(context_id, PDataValueType::Data, dataset, peer_max)
                        .await
                }
                Err(e) => Err(e),
            }
        };
        if let Err(e) = sent {
            tracing::warn!(error = %e, "could not send a response");
        }
    }

    /// A response without a data set.
    pub async fn respond(
        &mut self,
        context_id: u8,
        command: &Command,
        status: Status,
        error_comment: Option<String>,
    ) {
        self.audit_answer(command, status, error_comment.as_deref());
        let bytes = match (Response {
            request: command,
            status,
            error_comment,
            has_dataset: false,
            counts: None,
        })
        .encode()
        {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a response");
                return;
            }
        };
        if let Err(e) = self
            .pdus
            .send_message_part(
                context_id,
                PDataValueType::Command,
                &bytes,
                self.negotiated.peer_max_pdu,
            )
            .await
        {
            tracing::warn!(error = %e, "could not send a response");
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Settings for tests: no nodes, everyone allowed.
    pub(crate) fn settings() -> DimseSettings {
        DimseSettings {
            ae_title: "PACS".into(),
            max_pdu: 16384,
            idle_timeout: Duration::from_secs(5),
            nodes: Vec::new(),
            access: AccessPolicy::default(),
            match_options: MatchOptions::default(),
            identity: IdentityChecker::default(),
        }
    }
}
