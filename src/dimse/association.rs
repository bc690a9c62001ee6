//! One association, from A-ASSOCIATE-RQ to release or abort (PS3.8 9.2 state machine, the
//! acceptor's side), and the dispatch of DIMSE messages to the services.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dicom_ul::pdu::{
    AbortRQServiceProviderReason, AbortRQSource, AssociationRJ, AssociationRJResult,
    AssociationRJServiceProviderPresentationReason, AssociationRJSource, PDataValue,
    PDataValueType, Pdu,
};
use pacs_storage::{IngestOutcome, Store};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::command::{field, Command, Response};
use super::negotiation::{negotiate, Negotiated, ServiceKind};
use super::pdu_io::{PduError, PduStream};
use super::status::Status;
use super::store_scp::StoreReceiver;

/// Settings every association of the listener shares.
#[derive(Debug, Clone)]
pub struct DimseSettings {
    pub ae_title: String,
    /// Largest P-DATA PDU we accept (announced as Maximum Length).
    pub max_pdu: u32,
    /// How long to wait for the A-ASSOCIATE-RQ after connect (ARTIM).
    pub artim_timeout: Duration,
    /// How long an association may stay silent.
    pub idle_timeout: Duration,
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
    Discard,
}

#[derive(Default)]
struct Counters {
    stored: u64,
    duplicates: u64,
    failed: u64,
    echoes: u64,
}

struct Association {
    pdus: PduStream<TcpStream>,
    negotiated: Negotiated,
    store: Arc<Store>,
    settings: Arc<DimseSettings>,
    receiving: Receiving,
    counters: Counters,
}

fn abort_pdu(reason: AbortRQServiceProviderReason) -> Pdu {
    Pdu::AbortRQ {
        source: AbortRQSource::ServiceProvider(reason),
    }
}

fn abort_reason_for(e: &PduError) -> AbortRQServiceProviderReason {
    match e {
        PduError::UnrecognizedType(_) => AbortRQServiceProviderReason::UnrecognizedPdu,
        PduError::Malformed(_) | PduError::TooLarge { .. } => {
            AbortRQServiceProviderReason::InvalidPduParameter
        }
        _ => AbortRQServiceProviderReason::ReasonNotSpecified,
    }
}

/// Refuse a connection because the association cap is reached (transient, local limit).
pub async fn reject_busy(stream: TcpStream, settings: Arc<DimseSettings>) {
    let mut pdus = PduStream::new(stream, settings.max_pdu);
    if let Ok(Pdu::AssociationRQ(_)) = pdus.read(settings.artim_timeout).await {
        let rj = AssociationRJ {
            result: AssociationRJResult::Transient,
            source: AssociationRJSource::ServiceProviderPresentation(
                AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
            ),
        };
        let _ = pdus.write(&Pdu::AssociationRJ(rj)).await;
    }
}

/// Run one association to its end. Never panics on peer input; logs one line at the end.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    store: Arc<Store>,
    settings: Arc<DimseSettings>,
    shutdown: CancellationToken,
) {
    let started = Instant::now();
    let mut pdus = PduStream::new(stream, settings.max_pdu);
    let rq = match pdus.read(settings.artim_timeout).await {
        Ok(Pdu::AssociationRQ(rq)) => rq,
        Ok(other) => {
            tracing::warn!(%peer, pdu = %other.short_description(), "expected A-ASSOCIATE-RQ; aborting");
            let _ = pdus
                .write(&abort_pdu(AbortRQServiceProviderReason::UnexpectedPdu))
                .await;
            return;
        }
        Err(e) => {
            tracing::warn!(%peer, error = %e, "no valid A-ASSOCIATE-RQ; aborting");
            if e.is_protocol_error() {
                let _ = pdus.write(&abort_pdu(abort_reason_for(&e))).await;
            }
            return;
        }
    };
    let (ac, negotiated) = match negotiate(&rq, &settings.ae_title, settings.max_pdu) {
        Ok(v) => v,
        Err(rj) => {
            tracing::warn!(
                %peer,
                calling_ae = %rq.calling_ae_title,
                called_ae = %rq.called_ae_title,
                reason = %rj.source,
                "association rejected"
            );
            let _ = pdus.write(&Pdu::AssociationRJ(rj)).await;
            return;
        }
    };
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
    tracing::info!(
        %peer,
        calling_ae = %calling_ae,
        contexts = accepted,
        stored = c.stored,
        duplicates = c.duplicates,
        failed = c.failed,
        echoes = c.echoes,
        ms = started.elapsed().as_millis() as u64,
        end = %end,
        "association ended"
    );
}

impl Association {
    /// The message loop; returns how the association ended.
    async fn run(&mut self, shutdown: &CancellationToken) -> String {
        loop {
            let timeout = self.settings.idle_timeout;
            let idle = matches!(self.receiving, Receiving::Idle);
            let read = if idle {
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
                bytes.extend_from_slice(&pdv.data);
            }
            (
                Receiving::Data {
                    context_id, sink, ..
                },
                PDataValueType::Data,
            ) if *context_id == ctx => {
                if let DataSink::Store(rx) = sink {
                    rx.write(&pdv.data).await;
                }
            }
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
            let sink = if command.field == field::C_STORE_RQ && context.kind == ServiceKind::Storage
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
                match result.outcome {
                    Some(IngestOutcome::Duplicate) => self.counters.duplicates += 1,
                    Some(_) => self.counters.stored += 1,
                    None => self.counters.failed += 1,
                }
                (result.status, result.comment)
            }
            DataSink::Discard if command.field == field::C_STORE_RQ => {
                self.counters.failed += 1;
                (
                    Status::SOP_CLASS_NOT_SUPPORTED,
                    Some("presentation context is not for a storage SOP class".to_string()),
                )
            }
            DataSink::Discard => (Status::UNRECOGNIZED_OPERATION, None),
        };
        self.respond(context_id, &command, status, comment).await;
    }

    async fn respond(
        &mut self,
        context_id: u8,
        command: &Command,
        status: Status,
        error_comment: Option<String>,
    ) {
        let bytes = match (Response {
            request: command,
            status,
            error_comment,
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
