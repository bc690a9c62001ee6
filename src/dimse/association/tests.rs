//! The message loop's dispatch, driven over an in-memory stream with a real store.

use std::collections::HashMap;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;
use tokio::io::DuplexStream;

use super::*;
use crate::dimse::access::ALL_SERVICES;
use crate::dimse::admission::{Admission, AdmissionLimits};
use crate::dimse::negotiation::{AcceptedContext, Negotiated};
use crate::dimse::session::tests::settings;

const VERIFICATION_CONTEXT: u8 = 1;
const FIND_CONTEXT: u8 = 3;
const N_GET_RQ: u16 = 0x0110;
/// Bound on an association's own future (boxed by the listener, one per connection).
const SERVE_FUTURE_MAX: usize = 7 * 1024;

fn context(abstract_syntax: &str, kind: ServiceKind) -> AcceptedContext {
    AcceptedContext {
        abstract_syntax: abstract_syntax.into(),
        transfer_syntax: uids::IMPLICIT_VR_LITTLE_ENDIAN.into(),
        kind,
    }
}

fn peer() -> DimsePeer {
    DimsePeer {
        addr: "127.0.0.1:11112".parse().expect("address"),
        client_cn: None,
    }
}

/// An association in its message loop, and the peer's end of the stream.
fn association(store: Arc<Store>) -> (Association, PduStream<DuplexStream>) {
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let negotiated = Negotiated {
        calling_ae: "SCU".into(),
        contexts: HashMap::from([
            (
                VERIFICATION_CONTEXT,
                context(uids::VERIFICATION, ServiceKind::Verification),
            ),
            (
                FIND_CONTEXT,
                context(
                    uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND,
                    ServiceKind::Find,
                ),
            ),
        ]),
        peer_max_pdu: 0,
        scp_role_classes: Vec::new(),
    };
    let session = Session {
        pdus: PduStream::new(Box::new(ours) as DimseStream, 16384),
        negotiated,
        store,
        settings: Arc::new(settings()),
        counters: Counters::default(),
        stashed: None,
        next_sub_message_id: 0,
        pending_reports: Vec::new(),
        allowed: ALL_SERVICES.to_vec(),
        audit: AssociationAudit::new(&peer(), "SCU", None),
        peer: peer(),
        user: None,
        scope: Box::new(pacs_viewer_api::access::Scope::All),
    };
    let assoc = Association {
        session,
        receiving: Receiving::Idle,
    };
    (assoc, PduStream::new(theirs, 16384))
}

/// A request command set (Implicit VR Little Endian, as PS3.7 wants it).
fn request(command_field: u16, sop_class: &str, with_dataset: bool) -> Vec<u8> {
    let mut obj = InMemDicomObject::new_empty();
    let us = |v: u16| PrimitiveValue::from(v);
    obj.put(DataElement::new(
        tags::AFFECTED_SOP_CLASS_UID,
        VR::UI,
        PrimitiveValue::from(sop_class),
    ));
    obj.put(DataElement::new(
        tags::COMMAND_FIELD,
        VR::US,
        us(command_field),
    ));
    obj.put(DataElement::new(tags::MESSAGE_ID, VR::US, us(7)));
    let data_set_type = if with_dataset { 0x0000 } else { 0x0101 };
    obj.put(DataElement::new(
        tags::COMMAND_DATA_SET_TYPE,
        VR::US,
        us(data_set_type),
    ));
    let mut bytes = Vec::new();
    obj.write_dataset_with_ts(&mut bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .expect("encode command");
    bytes
}

fn pdv(context_id: u8, value_type: PDataValueType, data: Vec<u8>) -> PDataValue {
    PDataValue {
        presentation_context_id: context_id,
        value_type,
        is_last: true,
        data,
    }
}

/// The status of the next response the peer reads.
async fn response_status(peer: &mut PduStream<DuplexStream>) -> u16 {
    let pdu = peer.read(Duration::from_secs(5)).await.expect("a response");
    let Pdu::PData { data } = pdu else {
        panic!("expected P-DATA, got {}", pdu.short_description());
    };
    let rsp = Command::parse(&data[0].data).expect("response command set");
    rsp.status.expect("a status")
}

fn temp_store() -> (tempfile::TempDir, Arc<Store>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(Store::open(dir.path(), Default::default()).expect("store"));
    (dir, store)
}

#[test]
fn the_table_has_one_line_per_command_and_context_kind() {
    let expected = [
        (field::C_ECHO_RQ, None),
        (field::C_CANCEL_RQ, None),
        (field::C_STORE_RQ, Some(ServiceKind::Storage)),
        (field::C_FIND_RQ, Some(ServiceKind::Find)),
        (field::C_FIND_RQ, Some(ServiceKind::Worklist)),
        (field::N_CREATE_RQ, Some(ServiceKind::Mpps)),
        (field::N_SET_RQ, Some(ServiceKind::Mpps)),
        (field::N_ACTION_RQ, Some(ServiceKind::Commitment)),
        (field::C_MOVE_RQ, Some(ServiceKind::Move)),
        (field::C_GET_RQ, Some(ServiceKind::Get)),
    ];
    assert_eq!(SERVICES.len(), expected.len());
    for (command, kind) in expected {
        let entry = service_for(command, kind).expect("a line for the command");
        assert_eq!(entry.kind, kind, "context kind of 0x{command:04X}");
        let lines = SERVICES
            .iter()
            .filter(|s| s.command == command && s.kind == kind)
            .count();
        assert_eq!(lines, 1, "0x{command:04X} has one line for {kind:?}");
    }
    // A C-FIND on a context of another kind finds the first C-FIND line (which refuses it).
    let other = service_for(field::C_FIND_RQ, Some(ServiceKind::Storage)).expect("line");
    assert_eq!(other.kind, Some(ServiceKind::Find));
    assert!(service_for(N_GET_RQ, None).is_none());
}

#[tokio::test]
async fn echo_is_answered_and_counted() {
    let (_dir, store) = temp_store();
    let (mut assoc, mut peer) = association(store);
    let rq = request(field::C_ECHO_RQ, uids::VERIFICATION, false);
    let cmd = pdv(VERIFICATION_CONTEXT, PDataValueType::Command, rq);
    assoc.on_pdv(cmd).await.expect("no violation");
    assert_eq!(response_status(&mut peer).await, Status::SUCCESS.0);
    assert_eq!(assoc.session.counters.echoes, 1);
}

#[tokio::test]
async fn unknown_commands_are_unrecognized_operations() {
    let (_dir, store) = temp_store();
    let (mut assoc, mut peer) = association(store);
    let rq = request(N_GET_RQ, uids::VERIFICATION, false);
    let cmd = pdv(VERIFICATION_CONTEXT, PDataValueType::Command, rq);
    assoc.on_pdv(cmd).await.expect("no violation");
    assert_eq!(
        response_status(&mut peer).await,
        Status::UNRECOGNIZED_OPERATION.0
    );
    // With a data set: read to its end, then refused the same way.
    let rq = request(N_GET_RQ, uids::VERIFICATION, true);
    let cmd = pdv(VERIFICATION_CONTEXT, PDataValueType::Command, rq);
    assoc.on_pdv(cmd).await.expect("no violation");
    let data = pdv(VERIFICATION_CONTEXT, PDataValueType::Data, vec![0; 8]);
    assoc.on_pdv(data).await.expect("no violation");
    assert_eq!(
        response_status(&mut peer).await,
        Status::UNRECOGNIZED_OPERATION.0
    );
}

#[tokio::test]
async fn a_store_without_data_set_is_not_understood() {
    let (_dir, store) = temp_store();
    let (mut assoc, mut peer) = association(store);
    let rq = request(field::C_STORE_RQ, uids::CT_IMAGE_STORAGE, false);
    let cmd = pdv(VERIFICATION_CONTEXT, PDataValueType::Command, rq);
    assoc.on_pdv(cmd).await.expect("no violation");
    assert_eq!(
        response_status(&mut peer).await,
        Status::CANNOT_UNDERSTAND.0
    );
}

#[tokio::test]
async fn a_find_on_another_kind_of_context_is_refused() {
    let (_dir, store) = temp_store();
    let (mut assoc, mut peer) = association(store);
    let find = uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND;
    // The SOP class differs from the context's: its identifier is dropped.
    let rq = request(field::C_FIND_RQ, find, true);
    let cmd = pdv(VERIFICATION_CONTEXT, PDataValueType::Command, rq);
    assoc.on_pdv(cmd).await.expect("no violation");
    assert!(matches!(
        assoc.receiving,
        Receiving::Data {
            sink: DataSink::Discard,
            ..
        }
    ));
    let data = pdv(VERIFICATION_CONTEXT, PDataValueType::Data, vec![0; 8]);
    assoc.on_pdv(data).await.expect("no violation");
    assert_eq!(
        response_status(&mut peer).await,
        Status::SOP_CLASS_NOT_SUPPORTED.0
    );
    assert_eq!(assoc.session.counters.finds, 0);
}

#[tokio::test]
async fn a_find_on_its_context_gets_the_identifier() {
    let (_dir, store) = temp_store();
    let (mut assoc, _peer) = association(store);
    let find = uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND;
    let rq = request(field::C_FIND_RQ, find, true);
    let cmd = pdv(FIND_CONTEXT, PDataValueType::Command, rq);
    assoc.on_pdv(cmd).await.expect("no violation");
    assert!(matches!(
        assoc.receiving,
        Receiving::Data {
            sink: DataSink::Identifier(_),
            ..
        }
    ));
}

#[tokio::test]
async fn a_cancel_with_nothing_pending_gets_no_response() {
    let (_dir, store) = temp_store();
    let (mut assoc, mut peer) = association(store);
    let rq = request(field::C_CANCEL_RQ, uids::VERIFICATION, false);
    let cmd = pdv(VERIFICATION_CONTEXT, PDataValueType::Command, rq);
    assoc.on_pdv(cmd).await.expect("no violation");
    let read = peer.read(Duration::from_millis(100)).await;
    assert!(matches!(read, Err(PduError::Timeout(_))), "{read:?}");
}

#[tokio::test]
async fn serve_future_stays_small() {
    let (_dir, store) = temp_store();
    let (ours, _theirs) = tokio::io::duplex(1024);
    let admission = Admission::new(AdmissionLimits {
        max_associations: 1,
        max_handshakes: 1,
        max_handshakes_per_peer: 1,
        handshake_memory: 1 << 20,
        artim: Duration::from_secs(1),
    });
    let ticket = admission.begin(peer().addr.ip()).expect("ticket");
    let rq = AssociationRQ {
        protocol_version: 1,
        calling_ae_title: "SCU".into(),
        called_ae_title: "PACS".into(),
        application_context_name: "1.2.840.10008.3.1.1.1".into(),
        presentation_contexts: Vec::new(),
        user_variables: Vec::new(),
    };
    let future = serve(
        PduStream::new(Box::new(ours) as DimseStream, 16384),
        rq,
        ticket,
        peer(),
        store,
        Arc::new(settings()),
        CancellationToken::new(),
    );
    let size = std::mem::size_of_val(&future);
    eprintln!("association serve future: {size} bytes");
    assert!(
        size <= SERVE_FUTURE_MAX,
        "serve future is {size} bytes, more than {SERVE_FUTURE_MAX}"
    );
}
