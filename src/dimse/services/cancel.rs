//! C-CANCEL-RQ between messages. A C-CANCEL of a running C-FIND, C-MOVE or C-GET is read by
//! that service itself ([`crate::dimse::session::Session::cancel_arrived`]); one that reaches
//! the message loop finds nothing pending.

use super::{DataSink, DimseService, ServiceFuture};
use crate::dimse::command::Command;
use crate::dimse::session::Session;
use crate::dimse::status::Status;

pub struct Cancel;

impl DimseService for Cancel {
    fn serve<'a>(
        &'a self,
        session: &'a mut Session,
        context_id: u8,
        command: Command,
        data: Option<DataSink>,
    ) -> ServiceFuture<'a, ()> {
        Box::pin(async move {
            // Nothing is pending, so there is nothing to cancel and no response (PS3.7 9.3.2.3).
            if data.is_some() {
                session
                    .respond(context_id, &command, Status::UNRECOGNIZED_OPERATION, None)
                    .await;
            }
        })
    }
}
