//! One association, from A-ASSOCIATE-RQ to release or abort (PS3.8 9.2 state machine, the
//! acceptor's side), and the dispatch of DIMSE messages to the services.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dicom_ul::pdu::{
    AbortRQServiceProviderReason, AbortRQSource, AssociationRQ, PDataValue, PDataValueType, Pdu,
};
use pacs_storage::query::{execute, resolve_instances, MatchOptions, QueryError};
use pacs_storage::{IngestOutcome, InstanceRecord, Store};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use super::access::{AccessPolicy, Service};
use super::admission::HandshakeTicket;
use super::audit::AssociationAudit;
use super::command::{field, store_request, Command, Response, SubOperations, Tally};
use super::find_scp::{failed_list, parse_request, response_identifier, MAX_IDENTIFIER};
use super::local_blob::local_blob;
use super::negotiation::{negotiate, Negotiated, ServiceKind};
use super::pdu_io::{PduError, PduStream};
use super::scu::{choose_context, prepare, send_payload, SendPlan, StoreScu};
use super::status::Status;
use super::store_scp::StoreReceiver;

/// C-FIND matches handed from the engine thread to the association at a time.
const FIND_BATCH: usize = 32;

/// How long a peer rejected for the association limit gets to read the rejection and close.
const REJECT_LINGER: Duration = Duration::from_secs(15);

/// How long we wait for the peer to close after our last PDU.
pub const LINGER: Duration = Duration::from_secs(2);

/// Settings every association of the listener shares.
#[derive(Debug, Clone)]
pub struct DimseSettings {
    pub ae_title: String,
    /// Largest P-DATA PDU we accept (announced as Maximum Length).
    pub max_pdu: u32,
    /// How long an association may stay silent.
    pub idle_timeout: Duration,
    /// Known remote nodes (C-MOVE destinations).
    pub nodes: Vec<crate::config::RemoteNode>,
    /// Who may associate and use which service.
    pub access: AccessPolicy,
    /// Query matching options (case-insensitive person names).
    pub match_options: MatchOptions,
}

/// Why the association ended badly: the peer gets an A-ABORT with this reason.
#[derive(Debug, thiserror::Error)]
enum Violation {
    #[error("{0}")]
    Unexpected(String),
    #[error("{0}")]
    InvalidParameter(String),
}

impl Violation {
    fn reason(&self) -> AbortRQServiceProviderReason {
        match self {
            Violation::Unexpected(_) => AbortRQServiceProviderReason::UnexpectedPdu,
            Violation::InvalidParameter(_) => AbortRQServiceProviderReason::InvalidPduParameter,
        }
    }
}

enum Receiving {
    Idle,
    Command {
        context_id: u8,
        bytes: Vec<u8>,
    },
    Data {
        context_id: u8,
        command: Command,
        sink: DataSink,
    },
}

enum DataSink {
    Store(Box<StoreReceiver>),
    /// A C-FIND identifier, kept in memory up to `MAX_IDENTIFIER` bytes.
    Identifier(Vec<u8>),
    Discard,
}

#[derive(Default)]
struct Counters {
    stored: u64,
    duplicates: u64,
    failed: u64,
    echoes: u64,
    finds: u64,
    moves: u64,
    gets: u64,
}

struct Association {
    pdus: PduStream<DimseStream>,
    negotiated: Negotiated,
    store: Arc<Store>,
    settings: Arc<DimseSettings>,
    receiving: Receiving,
    counters: Counters,
    /// A PDU read while answering a C-FIND that the message loop must handle next.
    stashed: Option<Result<Pdu, PduError>>,
    /// Message ID of our last C-GET sub-operation.
    next_sub_message_id: u16,
    /// Services the peer may use.
    allowed: Vec<Service>,
    /// Who is at the other end (audit trail).
    peer: DimsePeer,
    audit: AssociationAudit,
}

/// The byte stream under an association: plain TCP or DICOM TLS.
pub trait DimseIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> DimseIo for T {}
pub type DimseStream = Box<dyn DimseIo>;

/// Who is at the other end of an association.
#[derive(Debug, Clone)]
pub struct DimsePeer {
    pub addr: SocketAddr,
    /// Common name of the verified client certificate (DICOM TLS with client certificates).
    pub client_cn: Option<String>,
}

pub fn abort_pdu(reason: AbortRQServiceProviderReason) -> Pdu {
    Pdu::AbortRQ {
        source: AbortRQSource::ServiceProvider(reason),
    }
}

pub fn abort_reason_for(e: &PduError) -> AbortRQServiceProviderReason {
    match e {
        PduError::UnrecognizedType(_) => AbortRQServiceProviderReason::UnrecognizedPdu,
        PduError::Malformed(_) | PduError::TooLarge { .. } => {
            AbortRQServiceProviderReason::InvalidPduParameter
        }
        _ => AbortRQServiceProviderReason::ReasonNotSpecified,
    }
}

/// The command's Affected SOP Class must be the context's abstract syntax (PS3.7 9.1.1.1);
/// an absent one is left to the service to judge.
fn class_matches(command: &Command, abstract_syntax: &str) -> bool {
    command
        .affected_sop_class_uid
        .as_deref()
        .is_none_or(|c| c == abstract_syntax)
}

/// Is this the C-CANCEL-RQ for message `message_id` (in one command fragment)?
fn is_cancel_for(pdu: &Result<Pdu, PduError>, message_id: u16) -> bool {
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

/// Send an A-ASSOCIATE-RJ and close once the peer has read it. The peer closes after reading
/// the rejection; a loaded peer (pynetdicom on a busy machine) can take seconds, and closing
/// first makes it report an abort instead. Waiting holds one of a bounded number of closing
/// slots, not the handshake ticket; with none free, the connection is closed at once.
async fn reject(
    mut pdus: PduStream<DimseStream>,
    ticket: HandshakeTicket,
    rj: dicom_ul::pdu::AssociationRJ,
) {
    pdus.release_charge();
    let _ = pdus.write(&Pdu::AssociationRJ(rj)).await;
    if let Some(_slot) = ticket.closing_slot() {
        drop(ticket);
        pdus.close_gracefully(REJECT_LINGER).await;
    }
}

/// Largest command set we accept (fragments put together).
const MAX_COMMAND: usize = 64 * 1024;

/// Run one association from its A-ASSOCIATE-RQ (read by the listener within the ARTIM
/// deadline) to its end: access policy, negotiation, then the association permit, taken only
/// now so that connections still negotiating never hold one. Never panics on peer input; logs
/// one line at the end.
pub async fn serve(
    mut pdus: PduStream<DimseStream>,
    rq: AssociationRQ,
    ticket: HandshakeTicket,
    peer_info: DimsePeer,
    store: Arc<Store>,
    settings: Arc<DimseSettings>,
    shutdown: CancellationToken,
) {
    let started = Instant::now();
    let peer = peer_info.addr;
    let allowed = settings
        .access
        .services_for(rq.calling_ae_title.trim(), peer.ip());
    let (ac, negotiated) = match negotiate(
        &rq,
        &settings.ae_title,
        settings.max_pdu,
        allowed.as_deref(),
    ) {
        Ok(v) => v,
        Err(rj) => {
            tracing::warn!(
                %peer,
                calling_ae = %rq.calling_ae_title,
                called_ae = %rq.called_ae_title,
                reason = %rj.source,
                "association rejected"
            );
            super::audit::rejected(
                &store,
                &peer_info,
                rq.calling_ae_title.trim(),
                &rj.source.to_string(),
            );
            reject(pdus, ticket, rj).await;
            return;
        }
    };
    let _permit = match ticket.associate() {
        Ok(permit) => permit,
        Err(ticket) => {
            tracing::warn!(%peer, calling_ae = %rq.calling_ae_title.trim(), "association limit reached; rejecting");
            super::audit::rejected(
                &store,
                &peer_info,
                rq.calling_ae_title.trim(),
                "local limit exceeded (max_associations)",
            );
            reject(pdus, ticket, super::listener::local_limit()).await;
            return;
        }
    };
    pdus.release_charge();
    if let Err(e) = pdus.write(&Pdu::AssociationAC(ac)).await {
        tracing::warn!(%peer, error = %e, "could not send A-ASSOCIATE-AC");
        return;
    }
    let calling_ae = negotiated.calling_ae.clone();
    let accepted = negotiated.contexts.len();
    let mut assoc = Association {
        pdus,
        negotiated,
        store,
        settings,
        receiving: Receiving::Idle,
        counters: Counters::default(),
        stashed: None,
        next_sub_message_id: 0,
        allowed: allowed.unwrap_or_default(),
        audit: AssociationAudit::new(&peer_info, &calling_ae),
        peer: peer_info,
    };
    let end = assoc.run(&shutdown).await;
    if let Receiving::Data {
        sink: DataSink::Store(rx),
        ..
    } = std::mem::replace(&mut assoc.receiving, Receiving::Idle)
    {
        rx.abandon().await;
    }
    let c = &assoc.counters;
    let counters = (
        c.stored,
        c.duplicates,
        c.failed,
        c.echoes,
        c.finds,
        c.moves,
        c.gets,
    );
    tracing::info!(
        %peer,
        calling_ae = %calling_ae,
        tls_client = assoc.peer.client_cn.as_deref().unwrap_or("-"),
        contexts = accepted,
        stored = counters.0,
        duplicates = counters.1,
        failed = counters.2,
        echoes = counters.3,
        finds = counters.4,
        moves = counters.5,
        gets = counters.6,
        ms = started.elapsed().as_millis() as u64,
        end = %end,
        "association ended"
    );
    let Association {
        pdus, audit, store, ..
    } = assoc;
    audit.finish(&store);
    pdus.close_gracefully(LINGER).await;
}

impl Association {
    /// The message loop; returns how the association ended.
    async fn run(&mut self, shutdown: &CancellationToken) -> String {
        loop {
            let timeout = self.settings.idle_timeout;
            let idle = matches!(self.receiving, Receiving::Idle);
            let read = if let Some(stashed) = self.stashed.take() {
                stashed
            } else if idle {
                // Between messages a shutdown may end the association; mid-message it may not,
                // so an instance being received is finished and answered first.
                tokio::select! {
                    r = self.pdus.read(timeout) => r,
                    _ = shutdown.cancelled() => {
                        let _ = self.pdus.write(&abort_pdu(AbortRQServiceProviderReason::ReasonNotSpecified)).await;
                        return "aborted: server shutting down".into();
                    }
                }
            } else {
                self.pdus.read(timeout).await
            };
            match read {
                Ok(Pdu::PData { data }) => {
                    for pdv in data {
                        if let Err(v) = self.on_pdv(pdv).await {
                            tracing::warn!(error = %v, "protocol violation; aborting");
                            let _ = self.pdus.write(&abort_pdu(v.reason())).await;
                            return format!("aborted: {v}");
                        }
                    }
                }
                Ok(Pdu::ReleaseRQ) => {
                    let _ = self.pdus.write(&Pdu::ReleaseRP).await;
                    return "released".into();
                }
                Ok(Pdu::AbortRQ { source }) => return format!("aborted by peer ({source:?})"),
                Ok(other) => {
                    let what = other.short_description().to_string();
                    let _ = self
                        .pdus
                        .write(&abort_pdu(AbortRQServiceProviderReason::UnexpectedPdu))
                        .await;
                    return format!("aborted: unexpected {what}");
                }
                Err(PduError::Closed) => return "connection closed by peer".into(),
                Err(e @ PduError::Timeout(_)) => {
                    let _ = self
                        .pdus
                        .write(&abort_pdu(AbortRQServiceProviderReason::ReasonNotSpecified))
                        .await;
                    return format!("aborted: {e}");
                }
                Err(e) if e.is_protocol_error() => {
                    let _ = self.pdus.write(&abort_pdu(abort_reason_for(&e))).await;
                    return format!("aborted: {e}");
                }
                Err(e) => return format!("connection error: {e}"),
            }
        }
    }

    async fn on_pdv(&mut self, pdv: PDataValue) -> Result<(), Violation> {
        let ctx = pdv.presentation_context_id;
        if !self.negotiated.contexts.contains_key(&ctx) {
            return Err(Violation::InvalidParameter(format!(
                "P-DATA on presentation context {ctx}, which was not accepted"
            )));
        }
        match (&mut self.receiving, pdv.value_type) {
            (Receiving::Idle, PDataValueType::Command) => {
                self.receiving = Receiving::Command {
                    context_id: ctx,
                    bytes: pdv.data,
                };
            }
            (Receiving::Command { context_id, bytes }, PDataValueType::Command)
                if *context_id == ctx =>
            {
                // Real command sets are well under 1 KiB; a peer sending command fragments
                // without end must not grow our memory without end.
                if bytes.len() + pdv.data.len() > MAX_COMMAND {
                    return Err(Violation::InvalidParameter(format!(
                        "command set larger than {} KiB",
                        MAX_COMMAND / 1024
                    )));
                }
                bytes.extend_from_slice(&pdv.data);
            }
            (
                Receiving::Data {
                    context_id, sink, ..
                },
                PDataValueType::Data,
            ) if *context_id == ctx => match sink {
                DataSink::Store(rx) => rx.write(&pdv.data).await,
                DataSink::Identifier(buf) if buf.len() + pdv.data.len() <= MAX_IDENTIFIER => {
                    buf.extend_from_slice(&pdv.data)
                }
                DataSink::Identifier(_) => {
                    return Err(Violation::InvalidParameter(
                        "C-FIND identifier larger than 1 MiB".into(),
                    ))
                }
                DataSink::Discard => {}
            },
            (_, value_type) => {
                return Err(Violation::Unexpected(format!(
                    "{value_type:?} fragment on context {ctx} out of sequence"
                )));
            }
        }
        if pdv.is_last {
            match std::mem::replace(&mut self.receiving, Receiving::Idle) {
                Receiving::Command { context_id, bytes } => {
                    let command = Command::parse(&bytes)
                        .map_err(|e| Violation::InvalidParameter(e.to_string()))?;
                    self.on_command(context_id, command).await;
                }
                Receiving::Data {
                    context_id,
                    command,
                    sink,
                } => self.on_dataset_complete(context_id, command, sink).await,
                Receiving::Idle => {}
            }
        }
        Ok(())
    }

    /// A complete command set arrived: answer it now, or get ready for its data set.
    async fn on_command(&mut self, context_id: u8, command: Command) {
        let Some(context) = self.negotiated.contexts.get(&context_id).cloned() else {
            return;
        };
        if command.has_dataset {
            let may_store = self.allowed.contains(&Service::Store);
            let sink = if !class_matches(&command, &context.abstract_syntax) {
                DataSink::Discard
            } else if command.field == field::C_STORE_RQ
                && context.kind == ServiceKind::Storage
                && may_store
            {
                DataSink::Store(Box::new(
                    StoreReceiver::begin(
                        self.store.clone(),
                        &command,
                        &context.transfer_syntax,
                        &self.negotiated.calling_ae,
                    )
                    .await,
                ))
            } else if (command.field == field::C_FIND_RQ && context.kind == ServiceKind::Find)
                || (command.field == field::C_MOVE_RQ && context.kind == ServiceKind::Move)
                || (command.field == field::C_GET_RQ && context.kind == ServiceKind::Get)
            {
                DataSink::Identifier(Vec::new())
            } else {
                DataSink::Discard
            };
            self.receiving = Receiving::Data {
                context_id,
                command,
                sink,
            };
            return;
        }
        let status = match command.field {
            field::C_ECHO_RQ => {
                self.counters.echoes += 1;
                Status::SUCCESS
            }
            // Nothing is pending, so there is nothing to cancel and no response (PS3.7 9.3.2.3).
            field::C_CANCEL_RQ => return,
            field::C_STORE_RQ => Status::CANNOT_UNDERSTAND,
            _ => Status::UNRECOGNIZED_OPERATION,
        };
        self.respond(context_id, &command, status, None).await;
    }

    async fn on_dataset_complete(&mut self, context_id: u8, command: Command, sink: DataSink) {
        let (status, comment) = match sink {
            DataSink::Store(rx) => {
                let result = rx.finish().await;
                self.audit.stored(
                    result.study_uid.clone(),
                    result.patient_id.clone(),
                    result.outcome.clone(),
                );
                match result.outcome {
                    Some(IngestOutcome::Duplicate) => self.counters.duplicates += 1,
                    Some(_) => self.counters.stored += 1,
                    None => self.counters.failed += 1,
                }
                (result.status, result.comment)
            }
            DataSink::Identifier(bytes) if command.field == field::C_GET_RQ => {
                self.serve_get(context_id, &command, &bytes).await;
                return;
            }
            DataSink::Identifier(bytes) if command.field == field::C_MOVE_RQ => {
                self.serve_move(context_id, &command, &bytes).await;
                return;
            }
            DataSink::Identifier(bytes) => {
                self.serve_find(context_id, &command, &bytes).await;
                return;
            }
            DataSink::Discard if command.field == field::C_STORE_RQ => {
                self.counters.failed += 1;
                if self.allowed.contains(&Service::Store) {
                    (
                        Status::SOP_CLASS_NOT_SUPPORTED,
                        Some("presentation context is not for a storage SOP class".to_string()),
                    )
                } else {
                    tracing::warn!(calling_ae = %self.negotiated.calling_ae, "C-STORE from a node not allowed to store");
                    (
                        Status::NOT_AUTHORIZED,
                        Some("this node may not store here".to_string()),
                    )
                }
            }
            DataSink::Discard
                if [field::C_FIND_RQ, field::C_MOVE_RQ, field::C_GET_RQ]
                    .contains(&command.field) =>
            {
                (
                    Status::SOP_CLASS_NOT_SUPPORTED,
                    Some("SOP class not negotiated on this presentation context".to_string()),
                )
            }
            DataSink::Discard => (Status::UNRECOGNIZED_OPERATION, None),
        };
        self.respond(context_id, &command, status, comment).await;
    }

    /// Answer a C-FIND: one pending response per match, streamed as the engine finds them,
    /// while watching for C-CANCEL; then the final status.
    async fn serve_find(&mut self, context_id: u8, command: &Command, identifier: &[u8]) {
        self.counters.finds += 1;
        let Some(context) = self.negotiated.contexts.get(&context_id).cloned() else {
            return;
        };
        let request = match parse_request(
            identifier,
            &context.transfer_syntax,
            self.settings.match_options,
        ) {
            Ok(r) => {
                self.audit.query(&r.query);
                Arc::new(r)
            }
            Err(f) => {
                tracing::warn!(comment = %f.comment, "C-FIND refused");
                self.respond(context_id, command, f.status, Some(f.comment))
                    .await;
                return;
            }
        };
        // The engine and the encoding run on a blocking thread and hand over encoded
        // identifiers in batches: one hand-over per match cost a thread wake-up each.
        let (tx, mut batches) = tokio::sync::mpsc::channel::<Vec<Vec<u8>>>(4);
        let index = self.store.index.clone();
        let query_request = request.clone();
        let our_ae = self.settings.ae_title.clone();
        let worker = tokio::task::spawn_blocking(move || {
            let mut batch = Vec::with_capacity(FIND_BATCH);
            let result = execute(index.as_ref(), &query_request.query, &mut |m| {
                match response_identifier(&query_request, &m, &our_ae) {
                    Ok(bytes) => batch.push(bytes),
                    Err(e) => tracing::warn!(error = %e, "cannot encode a C-FIND match; skipped"),
                }
                batch.len() < FIND_BATCH || tx.blocking_send(std::mem::take(&mut batch)).is_ok()
            });
            if !batch.is_empty() {
                let _ = tx.blocking_send(batch);
            }
            result
        });
        let mut cancelled = false;
        let mut sent = 0u64;
        loop {
            tokio::select! {
                biased;
                pdu = self.pdus.read(self.settings.idle_timeout), if self.stashed.is_none() => {
                    if is_cancel_for(&pdu, command.message_id) {
                        cancelled = true;
                        break;
                    }
                    // Anything else is handled by the message loop once this C-FIND is answered.
                    self.stashed = Some(pdu);
                }
                batch = batches.recv() => {
                    let Some(batch) = batch else { break };
                    sent += batch.len() as u64;
                    self.send_pending_batch(context_id, command, batch).await;
                }
            }
        }
        drop(batches);
        let outcome = worker.await;
        let (status, comment) = match outcome {
            _ if cancelled => (Status::CANCEL, None),
            Ok(Ok(())) => (Status::SUCCESS, None),
            Ok(Err(e @ QueryError::MissingParentKey { .. })) => {
                (Status::IDENTIFIER_DOES_NOT_MATCH, Some(e.to_string()))
            }
            Ok(Err(e)) => (Status::OUT_OF_RESOURCES, Some(e.to_string())),
            Err(e) => (Status::PROCESSING_FAILURE, Some(e.to_string())),
        };
        tracing::debug!(matches = sent, status = %status, "C-FIND answered");
        self.respond(context_id, command, status, comment).await;
    }

    /// Answer a C-MOVE (PS3.4 C.4.2): C-STORE every matching instance to the destination over
    /// a new association, with a pending response per sub-operation, C-CANCEL honoured.
    async fn serve_move(&mut self, context_id: u8, command: &Command, identifier: &[u8]) {
        self.counters.moves += 1;
        let Some(context) = self.negotiated.contexts.get(&context_id).cloned() else {
            return;
        };
        let destination = command.move_destination.clone().unwrap_or_default();
        let Some(node) = self
            .settings
            .nodes
            .iter()
            .find(|n| n.ae_title == destination)
            .cloned()
        else {
            tracing::warn!(%destination, "C-MOVE to an unknown destination refused");
            let comment = format!("move destination {destination:?} is not a configured node");
            self.respond(
                context_id,
                command,
                Status::MOVE_DESTINATION_UNKNOWN,
                Some(comment),
            )
            .await;
            return;
        };
        let Some(instances) = self
            .resolve_for_retrieve(&context.transfer_syntax, context_id, command, identifier)
            .await
        else {
            return;
        };
        let mut wanted: Vec<(String, String)> = Vec::new();
        for rec in &instances {
            let pair = (rec.sop_class_uid.clone(), rec.transfer_syntax_uid.clone());
            if !wanted.contains(&pair) {
                wanted.push(pair);
            }
        }
        let total = instances.len();
        let mut tally = Tally::new(total);
        if total == 0 {
            self.respond_counts(
                context_id,
                command,
                Status::SUCCESS,
                tally.counts,
                None,
                &[],
            )
            .await;
            return;
        }
        let mut scu = match StoreScu::connect(
            &node,
            &self.settings.ae_title,
            self.settings.max_pdu,
            &wanted,
        )
        .await
        {
            Ok(scu) => scu,
            Err(e) => {
                tracing::warn!(destination = %node.ae_title, error = %e, "C-MOVE sub-operations impossible");
                tally.counts.failed = u16::try_from(total).unwrap_or(u16::MAX);
                self.respond_counts(
                    context_id,
                    command,
                    Status::UNABLE_TO_PERFORM_SUBOPERATIONS,
                    tally.counts,
                    Some(e.to_string()),
                    &[],
                )
                .await;
                return;
            }
        };
        let originator = self.negotiated.calling_ae.clone();
        let mut cancelled = false;
        for (done, rec) in instances.iter().enumerate() {
            // C-CANCEL arrives between sub-operations; read without waiting.
            if self.stashed.is_none() {
                if let Ok(pdu) =
                    tokio::time::timeout(Duration::ZERO, self.pdus.read(self.settings.idle_timeout))
                        .await
                {
                    if is_cancel_for(&pdu, command.message_id) {
                        cancelled = true;
                    } else {
                        self.stashed = Some(pdu);
                    }
                }
            }
            if cancelled {
                break;
            }
            let outcome = match scu.plan(&rec.sop_class_uid, &rec.transfer_syntax_uid) {
                Some(plan) => match local_blob(&self.store, rec).await {
                    Ok(local) => scu
                        .store(
                            &plan,
                            &rec.sop_class_uid,
                            &rec.sop_instance_uid,
                            local.path(),
                            (&originator, command.message_id),
                        )
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e),
                },
                None => Err(format!(
                    "destination accepted no context for {} in {}",
                    rec.sop_class_uid, rec.transfer_syntax_uid
                )),
            };
            tally.record(&rec.sop_instance_uid, outcome, "C-MOVE");
            if done + 1 < total {
                self.respond_counts(
                    context_id,
                    command,
                    Status::PENDING,
                    tally.counts,
                    None,
                    &[],
                )
                .await;
            }
        }
        scu.release().await;
        let status = tally.finish(cancelled);
        self.respond_counts(
            context_id,
            command,
            status,
            tally.counts,
            None,
            &tally.failed_uids,
        )
        .await;
    }

    /// The instances a C-MOVE/C-GET identifier names; on failure the final response is sent
    /// and `None` returned.
    async fn resolve_for_retrieve(
        &mut self,
        transfer_syntax: &str,
        context_id: u8,
        command: &Command,
        identifier: &[u8],
    ) -> Option<Vec<InstanceRecord>> {
        let request = match parse_request(identifier, transfer_syntax, self.settings.match_options)
        {
            Ok(r) => {
                self.audit.query(&r.query);
                r
            }
            Err(f) => {
                self.respond(context_id, command, f.status, Some(f.comment))
                    .await;
                return None;
            }
        };
        let index = self.store.index.clone();
        let query = request.query;
        let resolved =
            tokio::task::spawn_blocking(move || resolve_instances(index.as_ref(), &query)).await;
        let (status, comment) = match resolved {
            Ok(Ok(list)) => return Some(list),
            Ok(Err(e @ QueryError::MissingParentKey { .. })) => {
                (Status::IDENTIFIER_DOES_NOT_MATCH, e.to_string())
            }
            Ok(Err(e)) => (Status::OUT_OF_RESOURCES, e.to_string()),
            Err(e) => (Status::PROCESSING_FAILURE, e.to_string()),
        };
        self.respond(context_id, command, status, Some(comment))
            .await;
        None
    }

    /// Answer a C-GET (PS3.4 C.4.3): C-STORE every matching instance back over this
    /// association, on a storage context for which the requestor took the SCP role.
    async fn serve_get(&mut self, context_id: u8, command: &Command, identifier: &[u8]) {
        self.counters.gets += 1;
        let Some(context) = self.negotiated.contexts.get(&context_id).cloned() else {
            return;
        };
        let Some(instances) = self
            .resolve_for_retrieve(&context.transfer_syntax, context_id, command, identifier)
            .await
        else {
            return;
        };
        let total = instances.len();
        let mut tally = Tally::new(total);
        let mut cancelled = false;
        for (done, rec) in instances.iter().enumerate() {
            let target = choose_context(
                self.negotiated
                    .contexts
                    .iter()
                    .filter(|(_, c)| c.kind == ServiceKind::Storage)
                    .map(|(id, c)| (*id, c.abstract_syntax.as_str(), c.transfer_syntax.as_str())),
                &rec.sop_class_uid,
                &rec.transfer_syntax_uid,
            );
            let role = self
                .negotiated
                .scp_role_classes
                .contains(&rec.sop_class_uid);
            let outcome = match (target, role) {
                (Some(plan), true) => match local_blob(&self.store, rec).await {
                    Ok(local) => {
                        self.store_on_this_association(
                            &plan,
                            rec,
                            local.path(),
                            command.message_id,
                            &mut cancelled,
                        )
                        .await
                    }
                    Err(e) => Err(e),
                },
                (_, false) => Err(format!("no SCP role negotiated for {}", rec.sop_class_uid)),
                (None, _) => Err(format!(
                    "no accepted context for {} in {}",
                    rec.sop_class_uid, rec.transfer_syntax_uid
                )),
            };
            tally.record(&rec.sop_instance_uid, outcome, "C-GET");
            if cancelled {
                break;
            }
            if done + 1 < total {
                self.respond_counts(
                    context_id,
                    command,
                    Status::PENDING,
                    tally.counts,
                    None,
                    &[],
                )
                .await;
            }
        }
        let status = tally.finish(cancelled);
        self.respond_counts(
            context_id,
            command,
            status,
            tally.counts,
            None,
            &tally.failed_uids,
        )
        .await;
    }

    /// One C-GET sub-operation: C-STORE-RQ out, then wait for its C-STORE-RSP (noting a
    /// C-CANCEL of the C-GET if one arrives meanwhile).
    async fn store_on_this_association(
        &mut self,
        plan: &SendPlan,
        rec: &InstanceRecord,
        blob: &std::path::Path,
        get_message_id: u16,
        cancelled: &mut bool,
    ) -> Result<u16, String> {
        self.next_sub_message_id = self.next_sub_message_id.wrapping_add(1).max(1);
        let message_id = self.next_sub_message_id;
        let rq = store_request(message_id, &rec.sop_class_uid, &rec.sop_instance_uid, None)
            .map_err(|e| e.to_string())?;
        // Decode or re-encode first: a failure must not leave a C-STORE-RQ without its data set.
        let payload = prepare(plan, blob).await.map_err(|e| e.to_string())?;
        let peer_max = self.negotiated.peer_max_pdu;
        self.pdus
            .send_message_part(plan.context_id, PDataValueType::Command, &rq, peer_max)
            .await
            .map_err(|e| e.to_string())?;
        send_payload(&mut self.pdus, plan.context_id, payload, peer_max)
            .await
            .map_err(|e| e.to_string())?;
        let mut fragments = Vec::new();
        loop {
            let pdu = self
                .pdus
                .read(self.settings.idle_timeout)
                .await
                .map_err(|e| e.to_string())?;
            let Pdu::PData { data } = pdu else {
                return Err(format!(
                    "unexpected {} during C-GET",
                    pdu.short_description()
                ));
            };
            for v in data {
                if v.value_type != PDataValueType::Command {
                    continue;
                }
                fragments.extend_from_slice(&v.data);
                if !v.is_last {
                    continue;
                }
                let msg = Command::parse(&fragments).map_err(|e| e.to_string())?;
                fragments.clear();
                if msg.field == field::C_CANCEL_RQ && msg.message_id == get_message_id {
                    *cancelled = true;
                } else if msg.field == (field::C_STORE_RQ | field::RESPONSE_BIT)
                    && msg.message_id == message_id
                {
                    return msg
                        .status
                        .ok_or_else(|| "C-STORE-RSP without status".to_string());
                }
            }
        }
    }

    /// A C-MOVE response with sub-operation counts and, on failures, the Failed SOP Instance
    /// UID List as its identifier.
    /// Final answers to queries and retrieves go to the audit trail.
    fn audit_answer(&mut self, command: &Command, status: Status, comment: Option<&str>) {
        if status == Status::PENDING || status.0 == 0xFF01 {
            return;
        }
        let action = match command.field {
            field::C_FIND_RQ => "dimse.c-find",
            field::C_MOVE_RQ => "dimse.c-move",
            field::C_GET_RQ => "dimse.c-get",
            _ => return,
        };
        self.audit.answered(&self.store, action, status, comment);
    }

    async fn respond_counts(
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
            let ts = self
                .negotiated
                .contexts
                .get(&context_id)
                .map(|c| c.transfer_syntax.clone());
            ts.and_then(|ts| failed_list(failed, &ts).ok())
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
    async fn send_pending_batch(
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
            pdus.push(Pdu::PData {
                data: vec![
                    PDataValue {
                        presentation_context_id: context_id,
                        value_type: PDataValueType::Command,
                        is_last: true,
                        data: rsp.clone(),
                    },
                    PDataValue {
                        presentation_context_id: context_id,
                        value_type: PDataValueType::Data,
                        is_last: true,
                        data: identifier,
                    },
                ],
            });
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
            let pdu = Pdu::PData {
                data: vec![
                    PDataValue {
                        presentation_context_id: context_id,
                        value_type: PDataValueType::Command,
                        is_last: true,
                        data: bytes,
                    },
                    PDataValue {
                        presentation_context_id: context_id,
                        value_type: PDataValueType::Data,
                        is_last: true,
                        data: dataset.to_vec(),
                    },
                ],
            };
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

    async fn respond(
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
