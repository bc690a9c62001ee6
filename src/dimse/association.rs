//! One association, from A-ASSOCIATE-RQ to release or abort (PS3.8 9.2 state machine, the
//! acceptor's side), and the table that dispatches its DIMSE messages to the services.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dicom_ul::pdu::{
    AbortRQServiceProviderReason, AbortRQSource, AssociationAC, AssociationRJ, AssociationRQ,
    PDataValue, PDataValueType, Pdu,
};
use pacs_storage::Store;
use pacs_viewer_api::access::Scope;
use tokio_util::sync::CancellationToken;

use super::access::Service;
use super::admission::{local_limit, HandshakeTicket};
use super::audit::AssociationAudit;
use super::command::{field, Command};
use super::identity;
use super::negotiation::{negotiate, Negotiated, ServiceKind};
use super::pdu_io::{PduError, PduStream};
use super::peer::DimsePeer;
use super::services::cancel::Cancel;
use super::services::commitment::Commitment;
use super::services::echo::Echo;
use super::services::find::Find;
use super::services::mpps::Mpps;
use super::services::retrieve::Retrieve;
use super::services::store::StoreService;
use super::services::worklist::WorklistFind;
use super::services::{DataSink, ServiceEntry};
use super::session::{Counters, Session};
use super::status::Status;

pub use super::session::{DimseIo, DimseSettings, DimseStream};

/// The services, by request Command Field, with the kind of presentation context a request's
/// data set must come on. A new service is a file under `services/` and a line here.
pub static SERVICES: &[ServiceEntry] = &[
    ServiceEntry {
        command: field::C_ECHO_RQ,
        kind: None,
        service: &Echo,
    },
    ServiceEntry {
        command: field::C_CANCEL_RQ,
        kind: None,
        service: &Cancel,
    },
    ServiceEntry {
        command: field::C_STORE_RQ,
        kind: Some(ServiceKind::Storage),
        service: &StoreService,
    },
    ServiceEntry {
        command: field::C_FIND_RQ,
        kind: Some(ServiceKind::Find),
        service: &Find,
    },
    ServiceEntry {
        command: field::C_FIND_RQ,
        kind: Some(ServiceKind::Worklist),
        service: &WorklistFind,
    },
    ServiceEntry {
        command: field::N_CREATE_RQ,
        kind: Some(ServiceKind::Mpps),
        service: &Mpps,
    },
    ServiceEntry {
        command: field::N_SET_RQ,
        kind: Some(ServiceKind::Mpps),
        service: &Mpps,
    },
    ServiceEntry {
        command: field::N_ACTION_RQ,
        kind: Some(ServiceKind::Commitment),
        service: &Commitment,
    },
    ServiceEntry {
        command: field::C_MOVE_RQ,
        kind: Some(ServiceKind::Move),
        service: &Retrieve::Move,
    },
    ServiceEntry {
        command: field::C_GET_RQ,
        kind: Some(ServiceKind::Get),
        service: &Retrieve::Get,
    },
];

/// The table's line for a request's Command Field on a context of `kind` (C-FIND serves two
/// information models); the first line of the command field when none is of that kind.
fn service_for(command_field: u16, kind: Option<ServiceKind>) -> Option<&'static ServiceEntry> {
    let mut lines = SERVICES.iter().filter(|s| s.command == command_field);
    let first = lines.clone().next();
    lines.find(|s| s.kind.is_none() || s.kind == kind).or(first)
}

/// How long a peer rejected for the association limit gets to read the rejection and close.
const REJECT_LINGER: Duration = Duration::from_secs(15);

/// How long we wait for the peer to close after our last PDU.
pub const LINGER: Duration = Duration::from_secs(2);

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

struct Association {
    session: Session,
    receiving: Receiving,
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
        // Boxed, like the close at the end: its read buffer would otherwise be part of every
        // association's future.
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
    let (mut ac, mut negotiated) = match negotiate(
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
    // Who the user is, once the titles and the node are known to be right (so a wrong title
    // costs no password check). Boxed: a password check's state would otherwise sit in every
    // association's future.
    let identified = Box::pin(identify(&settings, &store, &peer_info, &rq, allowed)).await;
    let (user, allowed) = match identified {
        Ok(Identified {
            user,
            allowed,
            answer,
        }) => {
            if let Some(answer) = answer {
                (ac, negotiated) = *answer;
            }
            (user, allowed)
        }
        Err(rj) => {
            reject(pdus, ticket, rj).await;
            return;
        }
    };
    let scope = Box::new(user.as_ref().map_or(Scope::All, |u| u.scope()));
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
            reject(pdus, ticket, local_limit()).await;
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
        session: Session {
            pdus,
            negotiated,
            store,
            settings,
            counters: Counters::default(),
            stashed: None,
            next_sub_message_id: 0,
            pending_reports: Vec::new(),
            allowed,
            audit: AssociationAudit::new(&peer_info, &calling_ae, user.as_deref()),
            peer: peer_info,
            user,
            scope,
        },
        receiving: Receiving::Idle,
    };
    let end = assoc.run(&shutdown).await;
    if let Receiving::Data { sink, .. } = std::mem::replace(&mut assoc.receiving, Receiving::Idle) {
        sink.abandon().await;
    }
    let c = &assoc.session.counters;
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
        tls_client = assoc.session.peer.client_cn.as_deref().unwrap_or("-"),
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
    let Session {
        pdus, audit, store, ..
    } = assoc.session;
    audit.finish(&store);
    pdus.close_gracefully(LINGER).await;
}

/// Who the association's user is and what that leaves it.
struct Identified {
    /// Boxed: most associations have none.
    user: Option<Box<identity::DimseUser>>,
    allowed: Vec<Service>,
    /// The A-ASSOCIATE-AC again, for what the user's role leaves (and the positive response
    /// when asked for); `None`: the first one stands.
    answer: Option<Box<(AssociationAC, Negotiated)>>,
}

/// The user identity check of PS3.7 D.3.3.7 under the node's policy; a refusal is logged and
/// audited here.
async fn identify(
    settings: &DimseSettings,
    store: &Store,
    peer: &DimsePeer,
    rq: &AssociationRQ,
    allowed: Option<Vec<Service>>,
) -> Result<Identified, AssociationRJ> {
    let calling = rq.calling_ae_title.trim();
    let policy =
        settings
            .access
            .identity_policy_for(calling, peer.addr.ip(), settings.identity.policy);
    let item = identity::requested(&rq.user_variables);
    let mut allowed = allowed.unwrap_or_default();
    let user = match settings.identity.check(policy, item, peer.addr.ip()).await {
        Ok(Some(user)) => user,
        Ok(None) => {
            return Ok(Identified {
                user: None,
                allowed,
                answer: None,
            })
        }
        Err(refusal) => {
            tracing::warn!(peer = %peer.addr, calling_ae = %calling, reason = %refusal, "association rejected: user identity");
            super::audit::rejected_identity(store, peer, calling, &refusal);
            return Err(identity::rejection());
        }
    };
    // The user's role narrows what the node may do: negotiate again with what is left. (It
    // cannot fail where the first negotiation passed; if it did, never the wider answer.)
    let theirs = user.services();
    allowed.retain(|s| theirs.contains(s));
    let (mut ac, negotiated) = negotiate(rq, &settings.ae_title, settings.max_pdu, Some(&allowed))?;
    if item.is_some_and(|i| i.positive_response_requested()) {
        ac.user_variables.push(identity::positive_response());
    }
    tracing::debug!(peer = %peer.addr, user = %user.name, method = user.method.as_str(), "user identity accepted");
    Ok(Identified {
        user: Some(Box::new(user)),
        allowed,
        answer: Some(Box::new((ac, negotiated))),
    })
}

impl Association {
    /// The message loop; returns how the association ended.
    async fn run(&mut self, shutdown: &CancellationToken) -> String {
        loop {
            let pdus = &mut self.session.pdus;
            let timeout = self.session.settings.idle_timeout;
            let idle = matches!(self.receiving, Receiving::Idle);
            let read = if let Some(stashed) = self.session.stashed.take() {
                *stashed
            } else if idle {
                // Between messages a shutdown may end the association; mid-message it may not,
                // so an instance being received is finished and answered first.
                tokio::select! {
                    r = pdus.read(timeout) => r,
                    _ = shutdown.cancelled() => {
                        let _ = pdus.write(&abort_pdu(AbortRQServiceProviderReason::ReasonNotSpecified)).await;
                        return "aborted: server shutting down".into();
                    }
                }
            } else {
                pdus.read(timeout).await
            };
            match read {
                Ok(Pdu::PData { data }) => {
                    for pdv in data {
                        if let Err(v) = self.on_pdv(pdv).await {
                            tracing::warn!(error = %v, "protocol violation; aborting");
                            let _ = self.session.pdus.write(&abort_pdu(v.reason())).await;
                            return format!("aborted: {v}");
                        }
                    }
                }
                Ok(Pdu::ReleaseRQ) => {
                    let _ = self.session.pdus.write(&Pdu::ReleaseRP).await;
                    return "released".into();
                }
                Ok(Pdu::AbortRQ { source }) => return format!("aborted by peer ({source:?})"),
                Ok(other) => {
                    let what = other.short_description().to_string();
                    let _ = self
                        .session
                        .pdus
                        .write(&abort_pdu(AbortRQServiceProviderReason::UnexpectedPdu))
                        .await;
                    return format!("aborted: unexpected {what}");
                }
                Err(PduError::Closed) => return "connection closed by peer".into(),
                Err(e @ PduError::Timeout(_)) => {
                    let _ = self
                        .session
                        .pdus
                        .write(&abort_pdu(AbortRQServiceProviderReason::ReasonNotSpecified))
                        .await;
                    return format!("aborted: {e}");
                }
                Err(e) if e.is_protocol_error() => {
                    let _ = self
                        .session
                        .pdus
                        .write(&abort_pdu(abort_reason_for(&e)))
                        .await;
                    return format!("aborted: {e}");
                }
                Err(e) => return format!("connection error: {e}"),
            }
        }
    }

    async fn on_pdv(&mut self, pdv: PDataValue) -> Result<(), Violation> {
        let ctx = pdv.presentation_context_id;
        if self.session.context(ctx).is_none() {
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
            ) if *context_id == ctx => sink
                .accept(&pdv.data)
                .map_err(|e| Violation::InvalidParameter(e.to_string()))?,
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
                } => self.dispatch(context_id, command, Some(sink)).await,
                Receiving::Idle => {}
            }
        }
        Ok(())
    }

    /// A complete command set arrived: answer it now, or get ready for its data set.
    async fn on_command(&mut self, context_id: u8, command: Command) {
        let Some(context) = self.session.context(context_id) else {
            return;
        };
        // A response is never answered: it confirms a storage commitment report we sent, or
        // is dropped (a response to a response would be read as one by the peer).
        if command.field & field::RESPONSE_BIT != 0 && !command.has_dataset {
            if command.field == field::N_EVENT_REPORT_RQ | field::RESPONSE_BIT {
                super::services::commitment::confirmed(&mut self.session, &command).await;
            } else {
                tracing::warn!(
                    field = format_args!("{:#06x}", command.field),
                    message_id = command.message_id,
                    "unexpected response ignored"
                );
            }
            return;
        }
        let entry = service_for(command.field, Some(context.kind));
        // A data set is the service's only on a context of its kind for the command's SOP
        // class; else it is read and dropped, and the service refuses the request.
        let fits = entry.is_some_and(|e| {
            class_matches(&command, &context.abstract_syntax)
                && e.kind.is_none_or(|kind| kind == context.kind)
        });
        if command.has_dataset {
            let sink = match entry {
                Some(e) if fits => {
                    e.service
                        .sink(&mut self.session, context_id, &command)
                        .await
                }
                _ => DataSink::Discard,
            };
            self.receiving = Receiving::Data {
                context_id,
                command,
                sink,
            };
            return;
        }
        self.dispatch(context_id, command, None).await;
    }

    /// Hand a complete request to its service; one without is an unknown operation.
    async fn dispatch(&mut self, context_id: u8, command: Command, data: Option<DataSink>) {
        if command.field & field::RESPONSE_BIT != 0 {
            tracing::warn!(
                field = format_args!("{:#06x}", command.field),
                message_id = command.message_id,
                "unexpected response ignored"
            );
            return;
        }
        let kind = self.session.context(context_id).map(|c| c.kind);
        match service_for(command.field, kind) {
            Some(e) => {
                e.service
                    .serve(&mut self.session, context_id, command, data)
                    .await
            }
            None => {
                self.session
                    .respond(context_id, &command, Status::UNRECOGNIZED_OPERATION, None)
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests;
