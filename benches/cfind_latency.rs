//! C-FIND study-level round-trip latency over DIMSE with a compiled client (dicom-ul's
//! association, TCP_NODELAY), so the numbers are the server's and not a script's.
//!
//! usage: cargo bench --bench cfind_latency -- PORT [REPEATS]

use std::time::Instant;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu};
use dicom_ul::ClientAssociationOptions;

const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";

/// A query key: tag, VR, value.
type Key = (dicom_core::Tag, VR, &'static str);

/// The C-FIND-RQ command set, encoded by the server's own command code.
fn command(message_id: u16) -> Vec<u8> {
    pacs::dimse::command::find_request(message_id, STUDY_ROOT_FIND).expect("encode command")
}

fn identifier(keys: &[Key], ts: &str) -> Vec<u8> {
    let mut obj = InMemDicomObject::new_empty();
    obj.put(DataElement::new(
        tags::QUERY_RETRIEVE_LEVEL,
        VR::CS,
        PrimitiveValue::from("STUDY"),
    ));
    for (tag, vr, value) in [
        (tags::STUDY_INSTANCE_UID, VR::UI, ""),
        (tags::PATIENT_NAME, VR::PN, ""),
        (tags::STUDY_DESCRIPTION, VR::LO, ""),
        (tags::NUMBER_OF_STUDY_RELATED_INSTANCES, VR::IS, ""),
    ]
    .into_iter()
    .chain(keys.iter().copied())
    {
        obj.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
    }
    let ts = TransferSyntaxRegistry.get(ts).expect("transfer syntax");
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, ts)
        .expect("encode identifier");
    out
}

fn status_of(command: &[u8]) -> u16 {
    pacs::dimse::command::Command::parse(command)
        .expect("response command")
        .status
        .expect("status")
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let port: u16 = args
        .first()
        .and_then(|p| p.parse().ok())
        .expect("usage: PORT [REPEATS]");
    let repeats: usize = args.get(1).and_then(|r| r.parse().ok()).unwrap_or(100);
    let mut assoc = ClientAssociationOptions::new()
        .calling_ae_title("BENCH")
        .called_ae_title("PACS")
        .with_abstract_syntax(STUDY_ROOT_FIND)
        .establish(("127.0.0.1", port))
        .expect("association");
    assoc.inner_stream().set_nodelay(true).expect("nodelay");
    let pc = assoc.presentation_contexts()[0].clone();
    let queries: Vec<(&str, Vec<Key>)> = vec![
        (
            "PatientID exact",
            vec![(tags::PATIENT_ID, VR::LO, "P0012345")],
        ),
        (
            "PatientName prefix",
            vec![(tags::PATIENT_NAME, VR::PN, "GONZALEZ^MI*")],
        ),
        (
            "StudyDate month range",
            vec![(tags::STUDY_DATE, VR::DA, "20210301-20210330")],
        ),
        (
            "AccessionNumber",
            vec![(tags::ACCESSION_NUMBER, VR::SH, "ACC00054321")],
        ),
        (
            "ModalitiesInStudy=CT + date range",
            vec![
                (tags::MODALITIES_IN_STUDY, VR::CS, "CT"),
                (tags::STUDY_DATE, VR::DA, "20230101-20230130"),
            ],
        ),
    ];
    println!(
        "{:<36} {:>8} {:>10} {:>10}",
        "C-FIND study level (DIMSE)", "matches", "p50 ms", "p99 ms"
    );
    let mut message_id = 0u16;
    for (name, keys) in queries {
        let ident = identifier(&keys, &pc.transfer_syntax);
        let mut times = Vec::new();
        let mut matches = 0;
        for _ in 0..repeats {
            message_id = message_id.wrapping_add(1);
            let request = Pdu::PData {
                data: vec![
                    PDataValue {
                        presentation_context_id: pc.id,
                        value_type: PDataValueType::Command,
                        is_last: true,
                        data: command(message_id),
                    },
                    PDataValue {
                        presentation_context_id: pc.id,
                        value_type: PDataValueType::Data,
                        is_last: true,
                        data: ident.clone(),
                    },
                ],
            };
            let started = Instant::now();
            assoc.send(&request).expect("send");
            let mut pending = 0;
            let mut fragments = Vec::new();
            'response: loop {
                let Pdu::PData { data } = assoc.receive().expect("receive") else {
                    panic!("unexpected PDU");
                };
                for v in data {
                    if v.value_type != PDataValueType::Command {
                        continue;
                    }
                    fragments.extend_from_slice(&v.data);
                    if v.is_last {
                        let status = status_of(&fragments);
                        fragments.clear();
                        if status == 0xFF00 || status == 0xFF01 {
                            pending += 1;
                        } else {
                            break 'response;
                        }
                    }
                }
            }
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            matches = pending;
        }
        times.sort_by(f64::total_cmp);
        let p = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
        println!("{name:<36} {matches:>8} {:>10.2} {:>10.2}", p(0.5), p(0.99));
    }
    let _ = assoc.release();
}
