//! Writes the seed corpora under fuzz/seeds/<target>/: real PDUs (encoded by dicom-ul's
//! `write_pdu`), command sets, STOW-RS bodies and QIDO-RS query strings, each with the
//! selector bytes its target expects in front. Run from fuzz/:
//! `cargo run --example gen_seeds`.

use std::fs;
use std::path::Path;

use dicom_core::value::{DataSetSequence, PixelFragmentSequence};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::{
    EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
};
use dicom_ul::pdu::{
    write_pdu, AbortRQSource, AssociationRQ, PDataValue, PDataValueType, Pdu,
    PresentationContextProposed, RequestorRoles, UserIdentity, UserIdentityType, UserVariableItem,
};
use pacs::dimse::command::store_request;

fn command(elements: &[(Tag, VR, PrimitiveValue)]) -> Vec<u8> {
    let mut obj = InMemDicomObject::new_empty();
    for (tag, vr, value) in elements {
        obj.put(DataElement::new(*tag, *vr, value.clone()));
    }
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .expect("encode command");
    out
}

fn us(tag: Tag, v: u16) -> (Tag, VR, PrimitiveValue) {
    (tag, VR::US, PrimitiveValue::from(v))
}

fn ui(tag: Tag, v: &str) -> (Tag, VR, PrimitiveValue) {
    (tag, VR::UI, PrimitiveValue::from(v))
}

fn commands() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "c-echo-rq",
            command(&[
                ui(tags::AFFECTED_SOP_CLASS_UID, uids::VERIFICATION),
                us(tags::COMMAND_FIELD, 0x0030),
                us(tags::MESSAGE_ID, 1),
                us(tags::COMMAND_DATA_SET_TYPE, 0x0101),
            ]),
        ),
        (
            "c-store-rq",
            store_request(
                3,
                uids::CT_IMAGE_STORAGE,
                "1.2.3.4.5",
                Some(("MODALITY", 9)),
            )
            .expect("store request"),
        ),
        (
            "c-find-rq",
            command(&[
                ui(
                    tags::AFFECTED_SOP_CLASS_UID,
                    uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND,
                ),
                us(tags::COMMAND_FIELD, 0x0020),
                us(tags::MESSAGE_ID, 2),
                us(tags::PRIORITY, 0),
                us(tags::COMMAND_DATA_SET_TYPE, 0x0000),
            ]),
        ),
        (
            "c-move-rq",
            command(&[
                ui(
                    tags::AFFECTED_SOP_CLASS_UID,
                    uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE,
                ),
                us(tags::COMMAND_FIELD, 0x0021),
                us(tags::MESSAGE_ID, 4),
                us(tags::PRIORITY, 0),
                us(tags::COMMAND_DATA_SET_TYPE, 0x0000),
                (
                    tags::MOVE_DESTINATION,
                    VR::AE,
                    PrimitiveValue::from("STORESCP"),
                ),
            ]),
        ),
        (
            "c-cancel-rq",
            command(&[
                us(tags::COMMAND_FIELD, 0x0FFF),
                us(tags::MESSAGE_ID_BEING_RESPONDED_TO, 2),
                us(tags::COMMAND_DATA_SET_TYPE, 0x0101),
            ]),
        ),
        (
            "c-store-rsp",
            command(&[
                ui(tags::AFFECTED_SOP_CLASS_UID, uids::CT_IMAGE_STORAGE),
                us(tags::COMMAND_FIELD, 0x8001),
                us(tags::MESSAGE_ID_BEING_RESPONDED_TO, 3),
                us(tags::COMMAND_DATA_SET_TYPE, 0x0101),
                us(tags::STATUS, 0),
                ui(tags::AFFECTED_SOP_INSTANCE_UID, "1.2.3.4.5"),
            ]),
        ),
    ]
}

/// C-FIND identifiers: a study query and a series query with a sequence key.
fn identifiers() -> Vec<(&'static str, InMemDicomObject)> {
    let text = |tag, vr, v: &str| DataElement::new(tag, vr, PrimitiveValue::from(v));
    let mut study = InMemDicomObject::new_empty();
    study.put(text(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "STUDY"));
    study.put(text(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"));
    study.put(text(tags::PATIENT_NAME, VR::PN, "DOE*"));
    study.put(text(tags::PATIENT_ID, VR::LO, ""));
    study.put(text(tags::STUDY_DATE, VR::DA, "20240101-20241231"));
    study.put(text(tags::STUDY_TIME, VR::TM, "0800-"));
    study.put(text(tags::MODALITIES_IN_STUDY, VR::CS, "CT\\MR"));
    study.put(text(tags::STUDY_INSTANCE_UID, VR::UI, ""));
    study.put(DataElement::new(
        tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
        VR::IS,
        PrimitiveValue::Empty,
    ));
    let mut series = InMemDicomObject::new_empty();
    series.put(text(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "SERIES"));
    series.put(text(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3"));
    series.put(text(tags::SERIES_INSTANCE_UID, VR::UI, "1.2.3.4\\1.2.3.5"));
    series.put(text(tags::MODALITY, VR::CS, "C?"));
    series.put(DataElement::new(
        tags::SERIES_NUMBER,
        VR::IS,
        PrimitiveValue::Empty,
    ));
    let mut item = InMemDicomObject::new_empty();
    item.put(text(
        tags::REFERENCED_SOP_CLASS_UID,
        VR::UI,
        "1.2.840.10008.5.1.4.1.1.2",
    ));
    series.put(DataElement::new(
        tags::REFERENCED_IMAGE_SEQUENCE,
        VR::SQ,
        DataSetSequence::from(vec![item]),
    ));
    series.put(DataElement::new(
        tags::ROWS,
        VR::US,
        PrimitiveValue::from(512_u16),
    ));
    vec![("study", study), ("series", series)]
}

fn pdu(p: &Pdu) -> Vec<u8> {
    let mut out = Vec::new();
    write_pdu(&mut out, p).expect("encode PDU");
    out
}

fn association_rq() -> Pdu {
    let ts = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    Pdu::AssociationRQ(AssociationRQ {
        protocol_version: 1,
        calling_ae_title: "MODALITY".into(),
        called_ae_title: "PACS".into(),
        application_context_name: "1.2.840.10008.3.1.1.1".into(),
        presentation_contexts: vec![
            PresentationContextProposed {
                id: 1,
                abstract_syntax: uids::VERIFICATION.into(),
                transfer_syntaxes: ts(&[uids::IMPLICIT_VR_LITTLE_ENDIAN]),
            },
            PresentationContextProposed {
                id: 3,
                abstract_syntax: uids::CT_IMAGE_STORAGE.into(),
                transfer_syntaxes: ts(&[
                    uids::JPEG2000_LOSSLESS,
                    uids::EXPLICIT_VR_LITTLE_ENDIAN,
                    uids::IMPLICIT_VR_LITTLE_ENDIAN,
                ]),
            },
            PresentationContextProposed {
                id: 5,
                abstract_syntax: uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND.into(),
                transfer_syntaxes: ts(&[uids::EXPLICIT_VR_LITTLE_ENDIAN]),
            },
            PresentationContextProposed {
                id: 7,
                abstract_syntax: uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_GET.into(),
                transfer_syntaxes: ts(&[uids::IMPLICIT_VR_LITTLE_ENDIAN]),
            },
        ],
        user_variables: vec![
            UserVariableItem::MaxLength(16_384),
            UserVariableItem::ImplementationClassUID("1.2.3.4.5.6".into()),
            UserVariableItem::ImplementationVersionName("FUZZ_SEED".into()),
            UserVariableItem::ScuScpRoleSelectionSubItem(
                uids::CT_IMAGE_STORAGE.into(),
                RequestorRoles {
                    scu: false,
                    scp: true,
                },
            ),
            UserVariableItem::UserIdentityItem(UserIdentity::new(
                false,
                UserIdentityType::UsernamePassword,
                b"user".to_vec(),
                b"secret".to_vec(),
            )),
        ],
    })
}

fn pdata(context: u8, value_type: PDataValueType, is_last: bool, data: Vec<u8>) -> Pdu {
    Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: context,
            value_type,
            is_last,
            data,
        }],
    }
}

/// `depth` sequences of undefined length in (0040,A730), one item each, then their
/// delimiters: the shape that once overflowed the stack. Seeds at and past the nesting limit
/// (pacs_storage::lengths::MAX_SEQUENCE_DEPTH), so both sides of the check get mutated.
fn nested(depth: usize, explicit: bool) -> Vec<u8> {
    let mut v = Vec::new();
    for _ in 0..depth {
        v.extend_from_slice(&[0x40, 0x00, 0x30, 0xA7]);
        if explicit {
            v.extend_from_slice(b"SQ\0\0");
        }
        v.extend_from_slice(&[0xFF; 4]);
        v.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
    }
    for _ in 0..depth {
        v.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        v.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
    }
    v
}

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    fs::create_dir_all(&d).expect("mkdir");
    fs::write(d.join(name), bytes).expect("write seed");
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let cmds = commands();
    for (name, bytes) in &cmds {
        write(&dir, "dimse_command", name, bytes);
    }

    // find_identifier: selector byte (transfer syntax), identifier in that syntax.
    for (sel, ts_name, ts) in [
        (0u8, "implicit-le", IMPLICIT_VR_LITTLE_ENDIAN.erased()),
        (1, "explicit-le", EXPLICIT_VR_LITTLE_ENDIAN.erased()),
        (2, "explicit-be", EXPLICIT_VR_BIG_ENDIAN.erased()),
    ] {
        for (name, obj) in identifiers() {
            let mut v = vec![sel];
            obj.write_dataset_with_ts(&mut v, &ts)
                .expect("encode identifier");
            write(&dir, "find_identifier", &format!("{name}-{ts_name}"), &v);
        }
    }

    let limit = pacs_storage::lengths::MAX_SEQUENCE_DEPTH;
    // 300 levels overflow the fuzz targets' small parser stack (lib.rs `on_small_stack`) at
    // once should the check ever let them through.
    for (depth, name) in [(limit, "at-limit"), (limit + 1, "past-limit"), (300, "deep")] {
        let mut v = vec![1u8];
        v.extend_from_slice(&nested(depth, true));
        write(
            &dir,
            "find_identifier",
            &format!("nested-{name}-explicit-le"),
            &v,
        );
        let mut v = vec![0u8];
        v.extend_from_slice(&nested(depth, false));
        write(
            &dir,
            "find_identifier",
            &format!("nested-{name}-implicit-le"),
            &v,
        );
        let meta = dicom_object::meta::FileMetaTableBuilder::new()
            .media_storage_sop_class_uid(uids::BASIC_TEXT_SR_STORAGE)
            .media_storage_sop_instance_uid("1.2.3.4.5.6")
            .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
            .build()
            .expect("file meta");
        let mut file = vec![0u8; 128];
        file.extend_from_slice(b"DICM");
        meta.write(&mut file).expect("write file meta");
        file.extend_from_slice(&nested(depth, true));
        write(&dir, "part10_ingest", &format!("nested-{name}"), &file);
    }

    // part10_ingest: the sample files' headers with a small Pixel Data (seeds stay small).
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-dicom");
    let mut names: Vec<_> = fs::read_dir(&samples)
        .expect("sample-dicom")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "dcm"))
        .collect();
    names.sort();
    for path in names {
        let mut obj = dicom_object::OpenFileOptions::new()
            .read_until(tags::PIXEL_DATA)
            .open_file(&path)
            .expect("open sample");
        let ts = obj.meta().transfer_syntax().to_string();
        let native = [
            uids::IMPLICIT_VR_LITTLE_ENDIAN,
            uids::EXPLICIT_VR_LITTLE_ENDIAN,
            "1.2.840.10008.1.2.2",
            uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
        ]
        .contains(&ts.as_str());
        if native {
            obj.put(DataElement::new(
                tags::PIXEL_DATA,
                VR::OW,
                PrimitiveValue::U16(vec![1, 2, 3, 4].into()),
            ));
        } else {
            obj.put(DataElement::new(
                tags::PIXEL_DATA,
                VR::OB,
                PixelFragmentSequence::new(vec![0u32], vec![vec![0xFF, 0xD8, 0xFF, 0xD9]]),
            ));
        }
        let mut bytes = Vec::new();
        obj.write_all(&mut bytes).expect("write sample seed");
        let name = path
            .file_stem()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        write(&dir, "part10_ingest", &name, &bytes);
    }

    // pdu_read: selector byte (max PDU 16 KiB, reads of 7 bytes), negotiation variant, PDUs.
    let rq = pdu(&association_rq());
    let echo = pdu(&pdata(1, PDataValueType::Command, true, cmds[0].1.clone()));
    let store_cmd = pdu(&pdata(3, PDataValueType::Command, true, cmds[1].1.clone()));
    let store_data = pdu(&pdata(
        3,
        PDataValueType::Data,
        true,
        vec![0x08, 0, 0x16, 0],
    ));
    let release = pdu(&Pdu::ReleaseRQ);
    let abort = pdu(&Pdu::AbortRQ {
        source: AbortRQSource::ServiceUser,
    });
    let session = |sel: u8, variant: u8, pdus: &[&[u8]]| {
        let mut v = vec![sel, variant];
        for p in pdus {
            v.extend_from_slice(p);
        }
        v
    };
    write(
        &dir,
        "pdu_read",
        "associate-rq",
        &session(0b0101, 4, &[&rq]),
    );
    write(
        &dir,
        "pdu_read",
        "echo-session",
        &session(0b1110, 4, &[&rq, &echo, &release]),
    );
    write(
        &dir,
        "pdu_read",
        "store-session",
        &session(0b0011, 2, &[&rq, &store_cmd, &store_data, &abort]),
    );

    // stow_multipart: selector byte (whole-body chunks, large limit), Content-Type, body.
    let mut body = Vec::new();
    body.extend_from_slice(b"--XYZ\r\nContent-Type: application/dicom\r\n\r\n");
    body.extend_from_slice(&[0u8; 128]);
    body.extend_from_slice(b"DICM\x02\x00\x00\x00UL\x04\x00\x00\x00\x00\x00");
    body.extend_from_slice(b"\r\n--XYZ\r\nContent-Type: text/plain\r\n\r\nnot dicom");
    body.extend_from_slice(b"\r\n--XYZ--\r\n");
    let mut stow = vec![0b0111];
    stow.extend_from_slice(b"multipart/related; type=\"application/dicom\"; boundary=XYZ\n");
    stow.extend_from_slice(&body);
    write(&dir, "stow_multipart", "two-parts", &stow);
    let mut stow = vec![0b0001];
    stow.extend_from_slice(b"Multipart/Related; boundary=\"XYZ\"\n");
    stow.extend_from_slice(&body);
    write(&dir, "stow_multipart", "two-parts-small-chunks", &stow);
    let mut accept = vec![0];
    accept.extend_from_slice(
        b"multipart/related; type=\"application/dicom\"; transfer-syntax=*, application/dicom+json;q=0.5, */*;q=0.1",
    );
    write(&dir, "stow_multipart", "accept", &accept);

    // qido_query: selector byte (level and path keys), query string, a value to match.
    for (i, (sel, q)) in [
        (0u8, "PatientName=DOE*&00100020=123&limit=25&offset=50&includefield=00081030,00080060&includefield=StudyDescription\nDOE^JOHN"),
        (8, "PatientName=smi&fuzzymatching=true&StudyInstanceUID=1.2,1.3&limit=100000\nSMITH^JANE"),
        (0, "StudyDate=20240101-20241231&StudyTime=0800-&ModalitiesInStudy=CT\n20240615"),
        (5, "SOPInstanceUID=1.2.3.4.5.6&includefield=all&00091010=x\n1.2.3.4.5.6"),
        (2, "Modality=M?&SeriesDescription=*head*&ReferencedSeriesSequence.SeriesInstanceUID=1\nMR"),
        (0, "AccessionNumber=A%2A1&StudyDescription=%E2%9C%93*&limit=0\nA11"),
    ]
    .iter()
    .enumerate()
    {
        let mut v = vec![*sel];
        v.extend_from_slice(q.as_bytes());
        write(&dir, "qido_query", &format!("query-{i}"), &v);
    }
}
