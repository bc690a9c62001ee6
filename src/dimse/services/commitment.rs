//! Storage Commitment Push Model SCP (PS3.4 J.3): N-ACTION names the instances; once the
//! request is recorded (synced) it is acknowledged, checked against the index and each blob's
//! SHA-256, and reported with N-EVENT-REPORT on the same association. A request whose report
//! is not confirmed stays recorded for delivery later.

use dicom_core::value::{DataSetSequence, Value};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::pdu::PDataValueType;
use pacs_storage::commitment::{evaluate, CommitmentRequest, CommitmentResult, Reference};

use super::identifier::read_dataset;
use super::{refuse, DataSink, DimseService, ServiceFuture};
use crate::dimse::command::{event_report_request, Command};
use crate::dimse::session::Session;
use crate::dimse::status::Status;

/// Storage Commitment Push Model SOP Class and its well-known instance (PS3.4 J.3.5).
pub const STORAGE_COMMITMENT_PUSH: &str = "1.2.840.10008.1.20.1";
pub const STORAGE_COMMITMENT_INSTANCE: &str = "1.2.840.10008.1.20.1.1";

/// Reports awaiting confirmation on one association, at most.
const MAX_PENDING_REPORTS: usize = 64;

pub struct Commitment;

impl DimseService for Commitment {
    fn sink<'a>(
        &'a self,
        _session: &'a mut Session,
        _context_id: u8,
        _command: &'a Command,
    ) -> ServiceFuture<'a, DataSink> {
        Box::pin(async { DataSink::ActionInformation(Vec::new()) })
    }

    fn serve<'a>(
        &'a self,
        session: &'a mut Session,
        context_id: u8,
        command: Command,
        data: Option<DataSink>,
    ) -> ServiceFuture<'a, ()> {
        Box::pin(async move {
            match data {
                Some(DataSink::ActionInformation(bytes)) => {
                    serve_commitment(session, context_id, &command, &bytes).await
                }
                other => refuse(session, context_id, &command, other.is_some()).await,
            }
        })
    }
}

fn text(obj: &InMemDicomObject, tag: Tag) -> String {
    obj.get(tag)
        .and_then(|e| match e.value() {
            Value::Primitive(p) => Some(p.to_str().trim_matches(['\0', ' ']).to_string()),
            _ => None,
        })
        .unwrap_or_default()
}

/// The request the N-ACTION carries, or the status and comment refusing it.
fn read_request(
    command: &Command,
    bytes: &[u8],
    transfer_syntax: &str,
    calling_ae: &str,
) -> Result<CommitmentRequest, (Status, String)> {
    if command.action_type_id != Some(1) {
        return Err((
            Status(0x0123),
            "Action Type ID must be 1 (Request Storage Commitment)".into(),
        ));
    }
    if command.affected_sop_instance_uid.as_deref() != Some(STORAGE_COMMITMENT_INSTANCE) {
        return Err((
            Status::INVALID_OBJECT_INSTANCE,
            "Requested SOP Instance must be 1.2.840.10008.1.20.1.1".into(),
        ));
    }
    let ds = read_dataset(bytes, transfer_syntax).map_err(|e| (e.status(), e.to_string()))?;
    let transaction_uid = text(&ds, tags::TRANSACTION_UID);
    if transaction_uid.is_empty() {
        return Err((
            Status::MISSING_ATTRIBUTE,
            "Transaction UID (0008,1195) is required".into(),
        ));
    }
    let items = ds
        .get(tags::REFERENCED_SOP_SEQUENCE)
        .and_then(|e| e.items())
        .unwrap_or_default();
    let references: Vec<Reference> = items
        .iter()
        .map(|i| Reference {
            class_uid: text(i, tags::REFERENCED_SOP_CLASS_UID),
            instance_uid: text(i, tags::REFERENCED_SOP_INSTANCE_UID),
        })
        .collect();
    if references.is_empty() {
        return Err((
            Status::MISSING_ATTRIBUTE,
            "Referenced SOP Sequence (0008,1199) is required".into(),
        ));
    }
    if references
        .iter()
        .any(|r| r.class_uid.is_empty() || r.instance_uid.is_empty())
    {
        return Err((
            Status::MISSING_ATTRIBUTE_VALUE,
            "a Referenced SOP Sequence item lacks its UIDs".into(),
        ));
    }
    Ok(CommitmentRequest {
        transaction_uid,
        calling_ae: calling_ae.to_string(),
        references,
        received_ms: now_ms(),
    })
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn reference_item(r: &Reference, failure: Option<u16>) -> InMemDicomObject {
    let mut item = InMemDicomObject::new_empty();
    let uid = |v: &str| PrimitiveValue::from(v);
    item.put(DataElement::new(
        tags::REFERENCED_SOP_CLASS_UID,
        VR::UI,
        uid(&r.class_uid),
    ));
    item.put(DataElement::new(
        tags::REFERENCED_SOP_INSTANCE_UID,
        VR::UI,
        uid(&r.instance_uid),
    ));
    if let Some(reason) = failure {
        item.put(DataElement::new(
            tags::FAILURE_REASON,
            VR::US,
            PrimitiveValue::from(reason),
        ));
    }
    item
}

/// The Event Information of the report: event type 1 (all committed) or 2 (some failed).
pub fn event_information(
    transaction_uid: &str,
    result: &CommitmentResult,
    transfer_syntax: &str,
) -> Option<(u16, Vec<u8>)> {
    let mut ds = InMemDicomObject::new_empty();
    ds.put(DataElement::new(
        tags::TRANSACTION_UID,
        VR::UI,
        PrimitiveValue::from(transaction_uid),
    ));
    let committed: Vec<_> = result
        .committed
        .iter()
        .map(|r| reference_item(r, None))
        .collect();
    if !committed.is_empty() {
        ds.put(DataElement::new(
            tags::REFERENCED_SOP_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(committed),
        ));
    }
    let failed: Vec<_> = result
        .failed
        .iter()
        .map(|(r, reason)| reference_item(r, Some(*reason)))
        .collect();
    let event_type = if failed.is_empty() { 1 } else { 2 };
    if !failed.is_empty() {
        ds.put(DataElement::new(
            tags::FAILED_SOP_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(failed),
        ));
    }
    let ts = TransferSyntaxRegistry.get(transfer_syntax)?;
    let mut bytes = Vec::new();
    ds.write_dataset_with_ts(&mut bytes, ts).ok()?;
    Some((event_type, bytes))
}

async fn serve_commitment(session: &mut Session, context_id: u8, command: &Command, bytes: &[u8]) {
    let Some(transfer_syntax) = session
        .context(context_id)
        .map(|c| c.transfer_syntax.clone())
    else {
        return;
    };
    let calling_ae = session.negotiated.calling_ae.clone();
    let request = match read_request(command, bytes, &transfer_syntax, &calling_ae) {
        Ok(r) => r,
        Err((status, comment)) => {
            tracing::warn!(status = %status, comment = %comment, "storage commitment refused");
            session
                .respond(context_id, command, status, Some(comment))
                .await;
            return;
        }
    };
    // Recorded before it is acknowledged: a crash after the answer still reports it.
    let store = session.store.clone();
    let recorded = request.clone();
    let put =
        tokio::task::spawn_blocking(move || store.commitments.put_commitment(&recorded)).await;
    if let Err(reason) = put
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| pacs_storage::error_chain(&e)))
    {
        tracing::error!(error = %reason, "cannot record a storage commitment request");
        session
            .respond(
                context_id,
                command,
                Status::PROCESSING_FAILURE,
                Some(reason),
            )
            .await;
        return;
    }
    session
        .respond(context_id, command, Status::SUCCESS, None)
        .await;
    let store = session.store.clone();
    let checked = request.clone();
    let Ok(result) = tokio::task::spawn_blocking(move || evaluate(&store, &checked)).await else {
        return;
    };
    tracing::info!(transaction = %request.transaction_uid, committed = result.committed.len(),
        failed = result.failed.len(), "storage commitment evaluated");
    report(
        session,
        context_id,
        &request.transaction_uid,
        &result,
        &transfer_syntax,
    )
    .await;
}

/// Send the N-EVENT-REPORT on this association. The record stays until the requester's
/// N-EVENT-REPORT-RSP confirms it ([`confirmed`]), which the message loop reads whenever it
/// comes: waiting for it here would take the requester's next request for it, and a report
/// not confirmed before the association ends goes again on a new one.
async fn report(
    session: &mut Session,
    context_id: u8,
    transaction_uid: &str,
    result: &CommitmentResult,
    transfer_syntax: &str,
) {
    let Some((event_type, data)) = event_information(transaction_uid, result, transfer_syntax)
    else {
        return;
    };
    let message_id = session.next_sub_message_id;
    session.next_sub_message_id = message_id.wrapping_add(1).max(1);
    let Ok(command) = event_report_request(
        message_id,
        STORAGE_COMMITMENT_PUSH,
        STORAGE_COMMITMENT_INSTANCE,
        event_type,
    ) else {
        return;
    };
    let peer_max = session.negotiated.peer_max_pdu;
    let sent = async {
        session
            .pdus
            .send_message_part(context_id, PDataValueType::Command, &command, peer_max)
            .await?;
        session
            .pdus
            .send_message_part(context_id, PDataValueType::Data, &data, peer_max)
            .await
    };
    if let Err(e) = sent.await {
        tracing::warn!(error = %e, "storage commitment report not sent; kept for later");
        return;
    }
    // Bounded: a requester that never confirms keeps only the newest few waiting here (the
    // records themselves stay and are reported again later).
    if session.pending_reports.len() >= MAX_PENDING_REPORTS {
        session.pending_reports.remove(0);
    }
    session
        .pending_reports
        .push((message_id, transaction_uid.to_string()));
}

/// The requester's N-EVENT-REPORT-RSP: a success removes the commitment record; a refusal
/// leaves it to be reported again on a new association.
pub async fn confirmed(session: &mut Session, response: &Command) {
    let Some(at) = session
        .pending_reports
        .iter()
        .position(|(id, _)| *id == response.message_id)
    else {
        tracing::warn!(
            message_id = response.message_id,
            "N-EVENT-REPORT-RSP for no report of ours; ignored"
        );
        return;
    };
    let (_, transaction) = session.pending_reports.remove(at);
    if response.status != Some(0) {
        tracing::warn!(%transaction, status = ?response.status,
            "storage commitment report refused by the requester; kept for later");
        return;
    }
    let store = session.store.clone();
    let tx = transaction.clone();
    let removed = tokio::task::spawn_blocking(move || store.commitments.remove_commitment(&tx));
    match removed.await {
        Ok(Ok(())) => tracing::debug!(%transaction, "storage commitment report confirmed"),
        Ok(Err(e)) => {
            tracing::warn!(error = %pacs_storage::error_chain(&e), "commitment delivered but still recorded")
        }
        Err(e) => tracing::warn!(error = %e, "commitment delivered but still recorded"),
    }
}
