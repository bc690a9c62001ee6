//! DIMSE command sets: `Command::parse` (Implicit VR Little Endian data set from the peer),
//! then the response the services build from it, which echoes the peer's UIDs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pacs::dimse::command::{Command, Response, SubOperations};
use pacs::dimse::status::Status;

fuzz_target!(|data: &[u8]| {
    let Ok(command) = Command::parse(data) else {
        return;
    };
    let response = Response {
        request: &command,
        status: Status::PENDING,
        error_comment: command.move_destination.clone(),
        has_dataset: command.has_dataset,
        counts: Some(SubOperations {
            remaining: Some(1),
            ..SubOperations::default()
        }),
    };
    let _ = response.encode();
});
