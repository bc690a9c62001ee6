//! C-FIND SCP (PS3.4 C.4.1): the identifier becomes a query for the index; one pending
//! response per match, streamed as the index finds them, while watching for C-CANCEL; then
//! the final status.

use std::sync::Arc;

use pacs_storage::query::QueryError;

use super::identifier::{parse_request, response_identifier};
use super::{refuse, DataSink, DimseService, ServiceFuture};
use crate::dimse::command::Command;
use crate::dimse::session::{is_cancel_for, Session};
use crate::dimse::status::Status;

/// C-FIND matches handed from the index thread to the association at a time.
pub(super) const FIND_BATCH: usize = 32;

/// The C-FIND service of the dispatch table.
pub struct Find;

impl DimseService for Find {
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
            match data {
                Some(DataSink::Identifier(bytes)) => {
                    serve_find(session, context_id, &command, &bytes).await
                }
                other => refuse(session, context_id, &command, other.is_some()).await,
            }
        })
    }
}

async fn serve_find(session: &mut Session, context_id: u8, command: &Command, identifier: &[u8]) {
    session.counters.finds += 1;
    let Some(transfer_syntax) = session
        .context(context_id)
        .map(|c| c.transfer_syntax.clone())
    else {
        return;
    };
    let request = match parse_request(identifier, &transfer_syntax, session.settings.match_options)
    {
        Ok(r) => {
            session.audit.query(&r.query);
            Arc::new(r)
        }
        Err(e) => {
            tracing::warn!(comment = %e, "C-FIND refused");
            session
                .respond(context_id, command, e.status(), Some(e.to_string()))
                .await;
            return;
        }
    };
    // The index and the encoding run on a blocking thread and hand over encoded identifiers
    // in batches: one hand-over per match cost a thread wake-up each.
    let (tx, batches) = tokio::sync::mpsc::channel::<Vec<Vec<u8>>>(4);
    let index = session.store.index.clone();
    let query_request = request.clone();
    let our_ae = session.settings.ae_title.clone();
    let scope = session.scope.clone();
    let worker = tokio::task::spawn_blocking(move || {
        let mut batch = Vec::with_capacity(FIND_BATCH);
        let result = index.find(&query_request.query, &mut |m| {
            // A patient-scoped user sees only their own patients' entities.
            if !scope.admits_match(&m.attributes) {
                return true;
            }
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
    let (cancelled, sent) = stream_answers(session, context_id, command, batches).await;
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
    session.respond(context_id, command, status, comment).await;
}

/// Send each batch of encoded answers as pending responses until the sender is done, while
/// watching for a C-CANCEL of this request. Returns (cancelled, answers sent).
pub(super) async fn stream_answers(
    session: &mut Session,
    context_id: u8,
    command: &Command,
    mut batches: tokio::sync::mpsc::Receiver<Vec<Vec<u8>>>,
) -> (bool, u64) {
    let mut sent = 0u64;
    loop {
        tokio::select! {
            biased;
            pdu = session.pdus.read(session.settings.idle_timeout), if session.stashed.is_none() => {
                if is_cancel_for(&pdu, command.message_id) {
                    return (true, sent);
                }
                // Anything else is handled by the message loop once this C-FIND is answered.
                session.stashed = Some(Box::new(pdu));
            }
            batch = batches.recv() => {
                let Some(batch) = batch else { return (false, sent) };
                sent += batch.len() as u64;
                session.send_pending_batch(context_id, command, batch).await;
            }
        }
    }
}
