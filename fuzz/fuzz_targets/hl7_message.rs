//! HL7 v2 messages from an EHR: decode (MSH-18), parse ER7, map ORM/OMI to an order or an
//! ADT to a patient change, check it as the intake would, and build the ACK for whatever
//! happened. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pacs_hl7::ack::{build, Sender};

fuzz_target!(|data: &[u8]| {
    let sender = Sender::default();
    match pacs_hl7::process(data) {
        Ok(messages) => {
            for m in &messages {
                if let pacs_hl7::Inbound::Order(o) = m {
                    let _ = o.order.validate();
                }
                let _ = build(&sender, Some(m.header()), None);
            }
        }
        Err(rejected) => {
            let (header, refusal) = *rejected;
            let _ = build(&sender, header.as_ref(), Some(&refusal));
        }
    }
});
