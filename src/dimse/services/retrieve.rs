//! C-MOVE (PS3.4 C.4.2) and C-GET (PS3.4 C.4.3) SCP: C-STORE every instance the identifier
//! names, with a pending response per sub-operation and C-CANCEL honoured. One loop serves
//! both; they differ only in where the sub-operations go ([`Destination`]).

use std::path::Path;
use std::sync::Arc;

use dicom_ul::pdu::{PDataValueType, Pdu};
use pacs_storage::query::{resolve_instances, QueryError};
use pacs_storage::{InstanceRecord, Store};
use pacs_viewer_api::access::Scope;

use super::identifier::parse_request;
use super::{refuse, DataSink, DimseService, ServiceFuture};
use crate::dimse::command::{field, store_request, Command, CommandError, SubOperations};
use crate::dimse::local_blob::{local_blob, LocalBlobError};
use crate::dimse::negotiation::ServiceKind;
use crate::dimse::pdu_io::PduError;
use crate::dimse::scu::{choose_context, prepare, send_payload, ScuError, SendPlan, StoreScu};
use crate::dimse::session::Session;
use crate::dimse::status::Status;

/// The retrieve services of the dispatch table.
pub enum Retrieve {
    Move,
    Get,
}

/// Where a retrieve's sub-operations go.
pub enum Destination {
    /// C-MOVE: a configured node, over an association we open.
    Node(Box<StoreScu>),
    /// C-GET: back to the requestor, over this association.
    Requestor,
}

/// Why one sub-operation failed (logged; the instance goes to the Failed SOP Instance UID
/// List).
#[derive(Debug, thiserror::Error)]
pub enum SubOperationError {
    #[error("destination accepted no context for {sop_class} in {transfer_syntax}")]
    DestinationRefused {
        sop_class: String,
        transfer_syntax: String,
    },
    #[error("no SCP role negotiated for {0}")]
    NoScpRole(String),
    #[error("no accepted context for {sop_class} in {transfer_syntax}")]
    NoContext {
        sop_class: String,
        transfer_syntax: String,
    },
    #[error(transparent)]
    Blob(#[from] LocalBlobError),
    #[error(transparent)]
    Scu(#[from] ScuError),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Pdu(#[from] PduError),
    #[error("unexpected {0} during C-GET")]
    UnexpectedPdu(String),
    #[error("C-STORE-RSP without status")]
    NoStatus,
}

/// Sub-operation bookkeeping of one C-MOVE or C-GET (PS3.4 C.4.2.3, C.4.3.3).
#[derive(Debug, Default)]
pub struct Tally {
    pub counts: SubOperations,
    pub failed_uids: Vec<String>,
    total: usize,
}

impl Tally {
    pub fn new(total: usize) -> Self {
        Tally {
            total,
            ..Default::default()
        }
    }

    /// Count one sub-operation's outcome (a C-STORE status, or why it could not be sent).
    pub fn record(
        &mut self,
        sop_instance_uid: &str,
        outcome: Result<u16, SubOperationError>,
        service: &str,
    ) {
        match outcome {
            Ok(0x0000) => self.counts.completed += 1,
            Ok(0xB000 | 0xB006 | 0xB007) => self.counts.warning += 1,
            Ok(status) => {
                tracing::warn!(sop = %sop_instance_uid, status = %Status(status), "{service} sub-operation failed");
                self.failed(sop_instance_uid);
            }
            Err(e) => {
                tracing::warn!(sop = %sop_instance_uid, error = %pacs_storage::error_chain(&e), "{service} sub-operation failed");
                self.failed(sop_instance_uid);
            }
        }
        self.counts.remaining = Some(self.left());
    }

    fn failed(&mut self, sop_instance_uid: &str) {
        self.counts.failed += 1;
        self.failed_uids.push(sop_instance_uid.to_string());
    }

    fn left(&self) -> u16 {
        let done = usize::from(self.counts.completed)
            + usize::from(self.counts.failed)
            + usize::from(self.counts.warning);
        u16::try_from(self.total.saturating_sub(done)).unwrap_or(u16::MAX)
    }

    /// The final status; remaining is reported only when cancelled (PS3.4 C.4.2.1.5).
    pub fn finish(&mut self, cancelled: bool) -> Status {
        self.counts.remaining = cancelled.then(|| self.left());
        if cancelled {
            Status::CANCEL
        } else if self.counts.failed > 0 || self.counts.warning > 0 {
            Status::SUBOPERATIONS_WITH_FAILURES
        } else {
            Status::SUCCESS
        }
    }
}

impl DimseService for Retrieve {
    fn sink<'a>(
        &'a self,
        _session: &'a mut Session,
        _context_id: u8,
        _command: &'a Command,
    ) -> ServiceFuture<'a, DataSink> {
        Box::pin(async { DataSink::Identifier(Vec::new()) })
    }

    fn serve<'a>(
        &'a self,
        session: &'a mut Session,
        context_id: u8,
        command: Command,
        data: Option<DataSink>,
    ) -> ServiceFuture<'a, ()> {
        Box::pin(async move {
            let identifier = match data {
                Some(DataSink::Identifier(bytes)) => bytes,
                other => return refuse(session, context_id, &command, other.is_some()).await,
            };
            match self {
                Retrieve::Move => serve_move(session, context_id, &command, &identifier).await,
                Retrieve::Get => serve_get(session, context_id, &command, &identifier).await,
            }
        })
    }
}

/// C-MOVE: the destination must be a configured node; the instances go there.
async fn serve_move(session: &mut Session, context_id: u8, command: &Command, identifier: &[u8]) {
    session.counters.moves += 1;
    if session.context(context_id).is_none() {
        return;
    }
    let destination = command.move_destination.clone().unwrap_or_default();
    let Some(node) = session
        .settings
        .nodes
        .iter()
        .find(|n| n.ae_title == destination)
        .cloned()
    else {
        tracing::warn!(%destination, "C-MOVE to an unknown destination refused");
        let comment = format!("move destination {destination:?} is not a configured node");
        session
            .respond(
                context_id,
                command,
                Status::MOVE_DESTINATION_UNKNOWN,
                Some(comment),
            )
            .await;
        return;
    };
    let Some(instances) = resolve(session, context_id, command, identifier).await else {
        return;
    };
    let mut wanted: Vec<(String, String)> = Vec::new();
    for rec in &instances {
        let pair = (rec.sop_class_uid.clone(), rec.transfer_syntax_uid.clone());
        if !wanted.contains(&pair) {
            wanted.push(pair);
        }
    }
    if instances.is_empty() {
        respond_done(session, context_id, command, Tally::new(0), false).await;
        return;
    }
    let (ae_title, max_pdu) = (session.settings.ae_title.clone(), session.settings.max_pdu);
    let scu = match StoreScu::connect(&node, &ae_title, max_pdu, &wanted).await {
        Ok(scu) => scu,
        Err(e) => {
            let reason = pacs_storage::error_chain(&e);
            tracing::warn!(destination = %node.ae_title, error = %reason, "C-MOVE sub-operations impossible");
            let mut tally = Tally::new(instances.len());
            tally.counts.failed = u16::try_from(instances.len()).unwrap_or(u16::MAX);
            session
                .respond_counts(
                    context_id,
                    command,
                    Status::UNABLE_TO_PERFORM_SUBOPERATIONS,
                    tally.counts,
                    Some(reason),
                    &[],
                )
                .await;
            return;
        }
    };
    let destination = Destination::Node(Box::new(scu));
    sub_operations(session, context_id, command, &instances, destination).await;
}

/// C-GET: the instances go back over this association.
async fn serve_get(session: &mut Session, context_id: u8, command: &Command, identifier: &[u8]) {
    session.counters.gets += 1;
    if session.context(context_id).is_none() {
        return;
    }
    let Some(instances) = resolve(session, context_id, command, identifier).await else {
        return;
    };
    if instances.is_empty() {
        respond_done(session, context_id, command, Tally::new(0), false).await;
        return;
    }
    sub_operations(
        session,
        context_id,
        command,
        &instances,
        Destination::Requestor,
    )
    .await;
}

/// The instances a C-MOVE/C-GET identifier names; on failure the final response is sent and
/// `None` returned.
async fn resolve(
    session: &mut Session,
    context_id: u8,
    command: &Command,
    identifier: &[u8],
) -> Option<Vec<InstanceRecord>> {
    let transfer_syntax = session.context(context_id)?.transfer_syntax.clone();
    let request = match parse_request(identifier, &transfer_syntax, session.settings.match_options)
    {
        Ok(r) => {
            session.audit.query(&r.query);
            r
        }
        Err(e) => {
            session
                .respond(context_id, command, e.status(), Some(e.to_string()))
                .await;
            return None;
        }
    };
    let index = session.store.index.clone();
    let query = request.query;
    let resolved =
        tokio::task::spawn_blocking(move || resolve_instances(index.as_ref(), &query)).await;
    let (status, comment) = match resolved {
        Ok(Ok(mut list)) => {
            // Out of the user's scope is as if not there: nothing says the study exists.
            list.retain(|i| in_scope(&session.scope, i));
            return Some(list);
        }
        Ok(Err(e @ QueryError::MissingParentKey { .. })) => {
            (Status::IDENTIFIER_DOES_NOT_MATCH, e.to_string())
        }
        Ok(Err(e)) => (Status::OUT_OF_RESOURCES, e.to_string()),
        Err(e) => (Status::PROCESSING_FAILURE, e.to_string()),
    };
    session
        .respond(context_id, command, status, Some(comment))
        .await;
    None
}

/// Whether an instance's study is inside the association user's scope.
fn in_scope(scope: &Scope, instance: &InstanceRecord) -> bool {
    let (patient_id, issuer) = instance
        .patient_key
        .split_once('\u{1}')
        .unwrap_or((&instance.patient_key, ""));
    scope.admits(&instance.study_instance_uid, patient_id, issuer)
}

/// The one sub-operation loop: a C-STORE per instance, a pending response after each but the
/// last, then the final response with the counts and the failed instances.
async fn sub_operations(
    session: &mut Session,
    context_id: u8,
    command: &Command,
    instances: &[InstanceRecord],
    mut destination: Destination,
) {
    let total = instances.len();
    let (service, originator) = match destination {
        Destination::Node(_) => ("C-MOVE", session.negotiated.calling_ae.clone()),
        Destination::Requestor => ("C-GET", String::new()),
    };
    let mut tally = Tally::new(total);
    let mut cancelled = false;
    for (done, rec) in instances.iter().enumerate() {
        let outcome = match &mut destination {
            Destination::Node(scu) => {
                // A C-CANCEL arrives between sub-operations; read without waiting.
                if session.cancel_arrived(command.message_id).await {
                    cancelled = true;
                    break;
                }
                let store = &session.store;
                store_to_node(store, scu, rec, (&originator, command.message_id)).await
            }
            // A C-CANCEL is read while waiting for each C-STORE-RSP.
            Destination::Requestor => {
                store_to_requestor(session, rec, command.message_id, &mut cancelled).await
            }
        };
        tally.record(&rec.sop_instance_uid, outcome, service);
        if cancelled {
            break;
        }
        if done + 1 < total {
            session
                .respond_counts(
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
    if let Destination::Node(scu) = destination {
        scu.release().await;
    }
    respond_done(session, context_id, command, tally, cancelled).await;
}

/// The final response of a retrieve.
async fn respond_done(
    session: &mut Session,
    context_id: u8,
    command: &Command,
    mut tally: Tally,
    cancelled: bool,
) {
    let status = tally.finish(cancelled);
    session
        .respond_counts(
            context_id,
            command,
            status,
            tally.counts,
            None,
            &tally.failed_uids,
        )
        .await;
}

/// One C-MOVE sub-operation over the association to the destination node.
async fn store_to_node(
    store: &Arc<Store>,
    scu: &mut StoreScu,
    rec: &InstanceRecord,
    originator: (&str, u16),
) -> Result<u16, SubOperationError> {
    let Some(plan) = scu.plan(&rec.sop_class_uid, &rec.transfer_syntax_uid) else {
        return Err(SubOperationError::DestinationRefused {
            sop_class: rec.sop_class_uid.clone(),
            transfer_syntax: rec.transfer_syntax_uid.clone(),
        });
    };
    let local = local_blob(store, rec).await?;
    let status = scu
        .store(
            &plan,
            &rec.sop_class_uid,
            &rec.sop_instance_uid,
            local.path(),
            Some(originator),
        )
        .await?;
    Ok(status)
}

/// One C-GET sub-operation: on a storage context for which the requestor took the SCP role.
async fn store_to_requestor(
    session: &mut Session,
    rec: &InstanceRecord,
    get_message_id: u16,
    cancelled: &mut bool,
) -> Result<u16, SubOperationError> {
    let target = choose_context(
        session
            .negotiated
            .contexts
            .iter()
            .filter(|(_, c)| c.kind == ServiceKind::Storage)
            .map(|(id, c)| (*id, c.abstract_syntax.as_str(), c.transfer_syntax.as_str())),
        &rec.sop_class_uid,
        &rec.transfer_syntax_uid,
    );
    let role = session
        .negotiated
        .scp_role_classes
        .contains(&rec.sop_class_uid);
    match (target, role) {
        (Some(plan), true) => {
            let local = local_blob(&session.store, rec).await?;
            send_back(session, &plan, rec, local.path(), get_message_id, cancelled).await
        }
        (_, false) => Err(SubOperationError::NoScpRole(rec.sop_class_uid.clone())),
        (None, _) => Err(SubOperationError::NoContext {
            sop_class: rec.sop_class_uid.clone(),
            transfer_syntax: rec.transfer_syntax_uid.clone(),
        }),
    }
}

/// C-STORE-RQ out, then wait for its C-STORE-RSP (noting a C-CANCEL of the C-GET if one
/// arrives meanwhile).
async fn send_back(
    session: &mut Session,
    plan: &SendPlan,
    rec: &InstanceRecord,
    blob: &Path,
    get_message_id: u16,
    cancelled: &mut bool,
) -> Result<u16, SubOperationError> {
    session.next_sub_message_id = session.next_sub_message_id.wrapping_add(1).max(1);
    let message_id = session.next_sub_message_id;
    let rq = store_request(message_id, &rec.sop_class_uid, &rec.sop_instance_uid, None)?;
    // Decode or re-encode first: a failure must not leave a C-STORE-RQ without its data set.
    let payload = prepare(plan, blob).await?;
    let peer_max = session.negotiated.peer_max_pdu;
    session
        .pdus
        .send_message_part(plan.context_id, PDataValueType::Command, &rq, peer_max)
        .await?;
    send_payload(&mut session.pdus, plan.context_id, payload, peer_max).await?;
    let mut fragments = Vec::new();
    loop {
        let pdu = session.pdus.read(session.settings.idle_timeout).await?;
        let Pdu::PData { data } = pdu else {
            return Err(SubOperationError::UnexpectedPdu(
                pdu.short_description().to_string(),
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
            let msg = Command::parse(&fragments)?;
            fragments.clear();
            if msg.field == field::C_CANCEL_RQ && msg.message_id == get_message_id {
                *cancelled = true;
            } else if msg.field == (field::C_STORE_RQ | field::RESPONSE_BIT)
                && msg.message_id == message_id
            {
                return msg.status.ok_or(SubOperationError::NoStatus);
            }
        }
    }
}
