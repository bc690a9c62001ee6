//! The DIMSE services, one file each, behind one small trait. The association picks one by
//! command field from its table ([`super::association::SERVICES`]); a new service is a new
//! file here and one line there.

pub mod cancel;
pub mod commitment;
pub mod echo;
pub mod find;
pub mod identifier;
pub mod mpps;
pub mod retrieve;
pub mod store;
pub mod worklist;
pub mod worklist_item;

use std::future::Future;
use std::pin::Pin;

use super::command::Command;
use super::negotiation::ServiceKind;
use super::session::Session;
use super::status::Status;
use identifier::MAX_IDENTIFIER;
use store::StoreReceiver;

/// A service's future, boxed: the association's own future holds only this pointer, so its
/// size does not grow with each service (thousands of associations may be open in a flood).
pub type ServiceFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a request's data set goes while its fragments arrive.
pub enum DataSink {
    /// A C-STORE instance, streamed into a staged blob.
    Store(Box<StoreReceiver>),
    /// A small data set (a query identifier), kept in memory up to `MAX_IDENTIFIER` bytes.
    Identifier(Vec<u8>),
    /// A storage commitment request's list of instances, up to `MAX_ACTION_INFORMATION`.
    ActionInformation(Vec<u8>),
    /// Read and dropped: the request is refused once its data set is in.
    Discard,
}

/// Largest storage commitment request: about 35,000 referenced instances.
pub const MAX_ACTION_INFORMATION: usize = 4 << 20;

/// A data set fragment that does not fit its sink.
#[derive(Debug, thiserror::Error)]
#[error("request data set larger than its limit (1 MiB, 4 MiB for storage commitment)")]
pub struct IdentifierTooLarge;

impl DataSink {
    /// Take one data fragment.
    pub fn accept(&mut self, bytes: &[u8]) -> Result<(), IdentifierTooLarge> {
        match self {
            DataSink::Store(rx) => rx.write(bytes),
            DataSink::Identifier(buf) if buf.len() + bytes.len() <= MAX_IDENTIFIER => {
                buf.extend_from_slice(bytes)
            }
            DataSink::Identifier(_) => return Err(IdentifierTooLarge),
            DataSink::ActionInformation(buf)
                if buf.len() + bytes.len() <= MAX_ACTION_INFORMATION =>
            {
                buf.extend_from_slice(bytes)
            }
            DataSink::ActionInformation(_) => return Err(IdentifierTooLarge),
            DataSink::Discard => {}
        }
        Ok(())
    }

    /// The association ended before the data set did: nothing of it is kept.
    pub async fn abandon(self) {
        if let DataSink::Store(rx) = self {
            rx.abandon().await;
        }
    }
}

/// A query or retrieve request without a usable identifier: one on a context not negotiated
/// for its SOP class, or none at all.
pub async fn refuse(session: &mut Session, context_id: u8, command: &Command, had_data: bool) {
    let (status, comment) = if had_data {
        (
            Status::SOP_CLASS_NOT_SUPPORTED,
            Some("SOP class not negotiated on this presentation context".to_string()),
        )
    } else {
        (Status::UNRECOGNIZED_OPERATION, None)
    };
    session.respond(context_id, command, status, comment).await;
}

/// One DIMSE service: where a request's data set goes, and how the request is answered.
pub trait DimseService: Sync {
    /// Where the data set of a request goes; asked only when the request came on a context of
    /// the service's kind for the command's SOP class. By default it is dropped (and `serve`
    /// refuses the request).
    fn sink<'a>(
        &'a self,
        _session: &'a mut Session,
        _context_id: u8,
        _command: &'a Command,
    ) -> ServiceFuture<'a, DataSink> {
        Box::pin(async { DataSink::Discard })
    }

    /// Answer a request. `data` is its data set's sink once complete, `None` when the request
    /// had no data set.
    fn serve<'a>(
        &'a self,
        session: &'a mut Session,
        context_id: u8,
        command: Command,
        data: Option<DataSink>,
    ) -> ServiceFuture<'a, ()>;
}

/// One line of the association's dispatch table.
pub struct ServiceEntry {
    /// The request's Command Field.
    pub command: u16,
    /// The presentation context kind its data set must come on (`None`: any context).
    pub kind: Option<ServiceKind>,
    pub service: &'static dyn DimseService,
}

#[cfg(test)]
mod tests;
