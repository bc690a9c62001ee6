//! Modality Worklist SCP (PS3.4 K, Modality Worklist Information Model - FIND): a C-FIND on
//! 1.2.840.10008.5.1.4.31 answered from the active orders, one pending response per
//! scheduled procedure step, streamed like the Query/Retrieve C-FIND and cancellable.

use std::sync::Arc;

use super::find::{stream_answers, FIND_BATCH};
use super::worklist_item::{parse_worklist_request, response_item};
use super::{refuse, DataSink, DimseService, ServiceFuture};
use crate::dimse::command::Command;
use crate::dimse::session::Session;
use crate::dimse::status::Status;

/// The worklist C-FIND of the dispatch table.
pub struct WorklistFind;

impl DimseService for WorklistFind {
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
                    serve_worklist(session, context_id, &command, &bytes).await
                }
                other => refuse(session, context_id, &command, other.is_some()).await,
            }
        })
    }
}

async fn serve_worklist(
    session: &mut Session,
    context_id: u8,
    command: &Command,
    identifier: &[u8],
) {
    session.counters.finds += 1;
    let Some(transfer_syntax) = session
        .context(context_id)
        .map(|c| c.transfer_syntax.clone())
    else {
        return;
    };
    let options = session.settings.match_options;
    let request = match parse_worklist_request(identifier, &transfer_syntax, options) {
        Ok(r) => Arc::new(r),
        Err(e) => {
            tracing::warn!(comment = %e, "worklist C-FIND refused");
            session
                .respond(context_id, command, e.status(), Some(e.to_string()))
                .await;
            return;
        }
    };
    session.audit.worklist_query(&request.query);
    let (tx, batches) = tokio::sync::mpsc::channel::<Vec<Vec<u8>>>(4);
    let orders = session.store.orders.clone();
    let worker_request = request.clone();
    let worker = tokio::task::spawn_blocking(move || {
        let mut batch = Vec::with_capacity(FIND_BATCH);
        let result = worker_request.query.run(orders.as_ref(), &mut |order| {
            match response_item(&worker_request, &order) {
                Ok(bytes) => batch.push(bytes),
                Err(e) => tracing::warn!(error = %e, accession = %order.accession_number,
                    "cannot encode a worklist item; skipped"),
            }
            batch.len() < FIND_BATCH || tx.blocking_send(std::mem::take(&mut batch)).is_ok()
        });
        if !batch.is_empty() {
            let _ = tx.blocking_send(batch);
        }
        result
    });
    let (cancelled, sent) = stream_answers(session, context_id, command, batches).await;
    let (status, comment) = match worker.await {
        _ if cancelled => (Status::CANCEL, None),
        Ok(Ok(())) => (Status::SUCCESS, None),
        Ok(Err(e)) => (
            Status::OUT_OF_RESOURCES,
            Some(pacs_storage::error_chain(&e)),
        ),
        Err(e) => (Status::PROCESSING_FAILURE, Some(e.to_string())),
    };
    tracing::debug!(matches = sent, status = %status, "worklist C-FIND answered");
    session.respond(context_id, command, status, comment).await;
}
