//! C-ECHO SCP (PS3.4 Annex A): verification, answered on any accepted context.

use super::{DataSink, DimseService, ServiceFuture};
use crate::dimse::command::Command;
use crate::dimse::session::Session;
use crate::dimse::status::Status;

pub struct Echo;

impl DimseService for Echo {
    fn serve<'a>(
        &'a self,
        session: &'a mut Session,
        context_id: u8,
        command: Command,
        data: Option<DataSink>,
    ) -> ServiceFuture<'a, ()> {
        Box::pin(async move {
            // A C-ECHO-RQ carries no data set; one that does is no C-ECHO we know.
            let status = if data.is_none() {
                session.counters.echoes += 1;
                Status::SUCCESS
            } else {
                Status::UNRECOGNIZED_OPERATION
            };
            session.respond(context_id, &command, status, None).await;
        })
    }
}
