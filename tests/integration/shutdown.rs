//! SIGTERM while instances are being received: a store in flight is finished, answered and
//! durable, one its sender gives up on leaves nothing behind, and neither is half-written.

use std::net::TcpStream;
use std::path::Path;

use dicom_core::{PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu};
use dicom_ul::{ClientAssociation, ClientAssociationOptions};

use crate::find::command_set;
use crate::support::*;

const CT_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.2";

/// A C-STORE sent in part: the command and the first half of the data set are out, the rest
/// is still to come.
struct InFlight {
    assoc: ClientAssociation<TcpStream>,
    context_id: u8,
    rest: Vec<u8>,
    fragment: usize,
}

fn data_pdu(context_id: u8, data: &[u8], is_last: bool) -> Pdu {
    Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: context_id,
            value_type: PDataValueType::Data,
            is_last,
            data: data.to_vec(),
        }],
    }
}

fn begin_store(port: u16, file: &Path, calling: &str) -> InFlight {
    let (sop, ts) = file_uids(file);
    assert!(
        TransferSyntaxRegistry.get(&ts).is_some(),
        "{ts} is a known syntax"
    );
    let mut assoc = ClientAssociationOptions::new()
        .calling_ae_title(calling)
        .called_ae_title(AE)
        .with_presentation_context(CT_IMAGE, vec![ts.as_str()])
        .establish(("127.0.0.1", port))
        .expect("association");
    let pc = assoc.presentation_contexts()[0].clone();
    assert_eq!(pc.transfer_syntax, ts, "the file's syntax was accepted");
    // Data per PDU: the acceptor's maximum less the PDV item header, with room to spare.
    let fragment = (assoc.acceptor_max_pdu_length() as usize).clamp(1024, 1 << 20) - 64;
    let command = command_set(&[
        (
            tags::AFFECTED_SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from(CT_IMAGE),
        ),
        (
            tags::COMMAND_FIELD,
            VR::US,
            PrimitiveValue::from(0x0001_u16),
        ),
        (tags::MESSAGE_ID, VR::US, PrimitiveValue::from(1_u16)),
        (tags::PRIORITY, VR::US, PrimitiveValue::from(0_u16)),
        (
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            PrimitiveValue::from(0_u16),
        ),
        (
            tags::AFFECTED_SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(sop.as_str()),
        ),
    ]);
    assoc
        .send(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: pc.id,
                value_type: PDataValueType::Command,
                is_last: true,
                data: command,
            }],
        })
        .expect("send the command");
    let mut data = dataset_bytes(file);
    let rest = data.split_off(data.len() / 2);
    for chunk in data.chunks(fragment) {
        assoc
            .send(&data_pdu(pc.id, chunk, false))
            .expect("send the first half");
    }
    InFlight {
        assoc,
        context_id: pc.id,
        rest,
        fragment,
    }
}

impl InFlight {
    /// Send the rest of the data set; the C-STORE response's status.
    fn finish(mut self) -> u16 {
        let chunks: Vec<&[u8]> = self.rest.chunks(self.fragment).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            self.assoc
                .send(&data_pdu(self.context_id, chunk, i + 1 == chunks.len()))
                .expect("send the second half");
        }
        loop {
            let pdu = self.assoc.receive().expect("C-STORE response");
            let Pdu::PData { data } = pdu else {
                panic!("expected the C-STORE response, got {pdu:?}");
            };
            if let Some(v) = data
                .into_iter()
                .find(|v| v.value_type == PDataValueType::Command)
            {
                let rsp = InMemDicomObject::read_dataset_with_ts(
                    &v.data[..],
                    &IMPLICIT_VR_LITTLE_ENDIAN.erased(),
                )
                .expect("response command set");
                return rsp
                    .get(tags::STATUS)
                    .and_then(|e| e.value().to_int::<u16>().ok())
                    .expect("status");
            }
        }
    }
}

#[test]
fn sigterm_with_stores_in_flight_finishes_them_whole_or_keeps_nothing() {
    let (tmp, data) = data_dir();
    let gen = tmp.path().join("gen");
    // Two 3 MB instances: each goes out in several PDUs, so half of it is a real half.
    generate(
        &gen,
        2,
        &[
            "--rows",
            "1200",
            "--cols",
            "1200",
            "--per-series",
            "1",
            "--seed",
            "sigterm",
        ],
    );
    let mut files = files_under(&gen);
    files.sort();
    let (kept, abandoned) = (&files[0], &files[1]);

    let mut server = Server::start(&data);
    let a = begin_store(server.dicom_port, kept, "FINISHER");
    let b = begin_store(server.dicom_port, abandoned, "QUITTER");
    server.send_sigterm();
    server.wait_for_log("shutting down");

    // After the signal: one sender finishes and is answered, the other gives up.
    assert_eq!(a.finish(), 0x0000, "acknowledged:\n{}", server.log());
    b.assoc.abort().expect("A-ABORT");
    let status = server.wait_exit();
    assert!(
        status.success(),
        "exit status {status:?}:\n{}",
        server.log()
    );
    assert!(server.log().contains("stopped"), "{}", server.log());

    // On disk: the finished instance's blob and nothing else (no staged part of the other).
    let blobs = files_under(&data.join("blobs"));
    assert_eq!(blobs.len(), 1, "{blobs:?}");

    // After a restart: the acknowledged instance is there, whole; the other is not.
    let server = Server::start(&data);
    assert_eq!(stats_tuple(&server.statistics()), (1, 1, 1, 1));
    let (kept_sop, _) = file_uids(kept);
    let (abandoned_sop, _) = file_uids(abandoned);
    assert!(
        dataset_bytes(&server.blob_path(&kept_sop)) == dataset_bytes(kept),
        "the stored data set is the one sent"
    );
    assert_eq!(
        server.http(&format!("/api/instances/{abandoned_sop}")).0,
        404
    );
    drop(server);
    let out = run(std::process::Command::new(env!("CARGO_BIN_EXE_pacs"))
        .args(["verify", "--data"])
        .arg(&data));
    assert!(
        out.status.success(),
        "pacs verify: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
