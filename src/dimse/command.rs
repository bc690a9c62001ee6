//! DIMSE command sets (PS3.7 9.3, Annex E): parsing requests and building responses.
//! Command sets are always Implicit VR Little Endian.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, StandardDataDictionary};
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;

use super::status::Status;

/// Command Field values (PS3.7 E.1).
pub mod field {
    pub const C_STORE_RQ: u16 = 0x0001;
    pub const C_FIND_RQ: u16 = 0x0020;
    pub const C_MOVE_RQ: u16 = 0x0021;
    pub const C_GET_RQ: u16 = 0x0010;
    pub const C_ECHO_RQ: u16 = 0x0030;
    pub const C_CANCEL_RQ: u16 = 0x0FFF;
    pub const N_EVENT_REPORT_RQ: u16 = 0x0100;
    pub const N_SET_RQ: u16 = 0x0120;
    pub const N_ACTION_RQ: u16 = 0x0130;
    pub const N_CREATE_RQ: u16 = 0x0140;
    /// A response has the request's field with this bit set.
    pub const RESPONSE_BIT: u16 = 0x8000;
}

/// CommandDataSetType value meaning "no data set follows".
const NO_DATASET: u16 = 0x0101;
/// Error Comment is LO: at most 64 characters.
const ERROR_COMMENT_MAX: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Found by the element walk before dicom-parser sees the bytes.
    #[error("command set cannot be parsed: {0}")]
    Parse(String),
    #[error("command set cannot be parsed")]
    Decode(#[source] Box<dicom_object::ReadError>),
    #[error("command set lacks {0}")]
    Missing(&'static str),
    #[error("command set cannot be encoded")]
    Encode(#[source] Box<dicom_object::WriteError>),
    #[error("command set cannot be encoded: {0} bytes is too long")]
    TooLong(usize),
}

/// The parts of a request command set that the services use.
#[derive(Debug, Clone)]
pub struct Command {
    pub field: u16,
    pub message_id: u16,
    pub affected_sop_class_uid: Option<String>,
    pub affected_sop_instance_uid: Option<String>,
    pub has_dataset: bool,
    /// Move Destination of a C-MOVE-RQ.
    pub move_destination: Option<String>,
    /// Status of a response.
    pub status: Option<u16>,
    /// Action Type ID of an N-ACTION-RQ.
    pub action_type_id: Option<u16>,
}

fn text(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Option<String> {
    let v = obj.get(tag)?.value().to_str().ok()?;
    let v = v.trim_end_matches(['\0', ' ']).to_string();
    (!v.is_empty()).then_some(v)
}

fn uint(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Option<u16> {
    obj.get(tag)?.value().to_int::<u16>().ok()
}

/// Refuse a command set whose elements do not fit in its bytes, before dicom-parser sees it:
/// dicom-parser reserves and zero-fills an element's declared length before reading it, so a
/// 12-byte command set declaring a 4 GiB value made it allocate 4 GiB (found by fuzzing).
/// The walk frames elements as dicom-parser does (Implicit VR: the VR from the standard
/// dictionary), so what it checks is what the parser reads. Command sets are flat (PS3.7
/// E.1): undefined lengths, items and sequences, whose contents it would not walk, are refused.
fn check_element_lengths(mut bytes: &[u8]) -> Result<(), CommandError> {
    // Fewer than 8 bytes left is no element header: dicom-parser decides what that means.
    while let Some((header, rest)) = bytes.split_first_chunk::<8>() {
        let tag = Tag(
            u16::from_le_bytes([header[0], header[1]]),
            u16::from_le_bytes([header[2], header[3]]),
        );
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        // As dicom-encoding's Implicit VR Little Endian decoder resolves the VR.
        let vr = if tag == tags::PIXEL_DATA || (tag.group() >> 8 == 0x60 && tag.element() == 0x3000)
        {
            VR::OW
        } else {
            StandardDataDictionary
                .by_tag(tag)
                .map_or(VR::UN, |e| e.vr().relaxed())
        };
        if vr == VR::SQ || tag.group() == 0xFFFE || len == u32::MAX {
            return Err(CommandError::Parse(format!(
                "element {tag} is a sequence, item or of undefined length"
            )));
        }
        // dicom-parser reads binary numbers whole and skips a remainder without consuming
        // it, which would leave it reading the next header where this walk does not.
        let unit = match vr {
            VR::US | VR::SS | VR::OW => 2,
            VR::AT | VR::UL | VR::SL | VR::FL | VR::OF | VR::OL => 4,
            VR::FD | VR::OD | VR::SV | VR::UV | VR::OV => 8,
            _ => 1,
        };
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len % unit != 0 {
            return Err(CommandError::Parse(format!(
                "element {tag} ({vr}) has a length of {len}, not a multiple of {unit}"
            )));
        }
        if len > rest.len() {
            return Err(CommandError::Parse(format!(
                "element {tag} declares {len} bytes but {} remain",
                rest.len()
            )));
        }
        bytes = &rest[len..];
    }
    Ok(())
}

impl Command {
    pub fn parse(bytes: &[u8]) -> Result<Self, CommandError> {
        check_element_lengths(bytes)?;
        let obj =
            InMemDicomObject::read_dataset_with_ts(bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
                .map_err(|e| CommandError::Decode(Box::new(e)))?;
        let field = uint(&obj, tags::COMMAND_FIELD).ok_or(CommandError::Missing("CommandField"))?;
        // C-CANCEL carries MessageIDBeingRespondedTo instead of MessageID.
        let message_id = uint(&obj, tags::MESSAGE_ID)
            .or_else(|| uint(&obj, tags::MESSAGE_ID_BEING_RESPONDED_TO))
            .ok_or(CommandError::Missing("MessageID"))?;
        let data_set_type = uint(&obj, tags::COMMAND_DATA_SET_TYPE)
            .ok_or(CommandError::Missing("CommandDataSetType"))?;
        Ok(Command {
            field,
            message_id,
            // N-SET/N-GET/N-ACTION name their object as "Requested"; their responses name it
            // as "Affected", so one field serves both the dispatch and the response.
            affected_sop_class_uid: text(&obj, tags::AFFECTED_SOP_CLASS_UID)
                .or_else(|| text(&obj, tags::REQUESTED_SOP_CLASS_UID)),
            affected_sop_instance_uid: text(&obj, tags::AFFECTED_SOP_INSTANCE_UID)
                .or_else(|| text(&obj, tags::REQUESTED_SOP_INSTANCE_UID)),
            has_dataset: data_set_type != NO_DATASET,
            move_destination: text(&obj, tags::MOVE_DESTINATION),
            status: uint(&obj, tags::STATUS),
            action_type_id: uint(&obj, tags::ACTION_TYPE_ID),
        })
    }
}

/// A response command set without a data set.
#[derive(Debug, Clone)]
pub struct Response<'a> {
    pub request: &'a Command,
    pub status: Status,
    pub error_comment: Option<String>,
    /// Whether a data set (a C-FIND match) follows the command.
    pub has_dataset: bool,
    /// Sub-operation counts of a C-MOVE/C-GET response.
    pub counts: Option<SubOperations>,
}

/// Sub-operation counts (PS3.7 C.4.2.1.5): remaining is left out of final responses.
#[derive(Debug, Clone, Copy, Default)]
pub struct SubOperations {
    pub remaining: Option<u16>,
    pub completed: u16,
    pub failed: u16,
    pub warning: u16,
}

impl Response<'_> {
    pub fn encode(&self) -> Result<Vec<u8>, CommandError> {
        let rq = self.request;
        let mut obj = InMemDicomObject::new_empty();
        if let Some(class) = &rq.affected_sop_class_uid {
            obj.put(DataElement::new(
                tags::AFFECTED_SOP_CLASS_UID,
                VR::UI,
                PrimitiveValue::from(class.as_str()),
            ));
        }
        obj.put(DataElement::new(
            tags::COMMAND_FIELD,
            VR::US,
            PrimitiveValue::from(rq.field | field::RESPONSE_BIT),
        ));
        obj.put(DataElement::new(
            tags::MESSAGE_ID_BEING_RESPONDED_TO,
            VR::US,
            PrimitiveValue::from(rq.message_id),
        ));
        // Any value but 0x0101 means a data set follows; 0x0000 is the customary one.
        let data_set_type: u16 = if self.has_dataset { 0x0000 } else { NO_DATASET };
        obj.put(DataElement::new(
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            PrimitiveValue::from(data_set_type),
        ));
        obj.put(DataElement::new(
            tags::STATUS,
            VR::US,
            PrimitiveValue::from(self.status.0),
        ));
        if let Some(inst) = &rq.affected_sop_instance_uid {
            obj.put(DataElement::new(
                tags::AFFECTED_SOP_INSTANCE_UID,
                VR::UI,
                PrimitiveValue::from(inst.as_str()),
            ));
        }
        if let Some(c) = self.counts {
            let mut put = |tag, n: u16| {
                obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(n)));
            };
            if let Some(r) = c.remaining {
                put(tags::NUMBER_OF_REMAINING_SUBOPERATIONS, r);
            }
            put(tags::NUMBER_OF_COMPLETED_SUBOPERATIONS, c.completed);
            put(tags::NUMBER_OF_FAILED_SUBOPERATIONS, c.failed);
            put(tags::NUMBER_OF_WARNING_SUBOPERATIONS, c.warning);
        }
        if let Some(comment) = &self.error_comment {
            let comment: String = comment
                .chars()
                .filter(|c| c.is_ascii() && !c.is_ascii_control() && *c != '\\')
                .take(ERROR_COMMENT_MAX)
                .collect();
            obj.put(DataElement::new(
                tags::ERROR_COMMENT,
                VR::LO,
                PrimitiveValue::from(comment),
            ));
        }
        encode_with_group_length(&obj)
    }
}

/// The elements every request command set here starts with: SOP class, command, message
/// ID, medium priority, a data set to follow.
fn request(field: u16, message_id: u16, sop_class_uid: &str) -> InMemDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    obj.put(DataElement::new(
        tags::AFFECTED_SOP_CLASS_UID,
        VR::UI,
        PrimitiveValue::from(sop_class_uid),
    ));
    obj.put(DataElement::new(
        tags::COMMAND_FIELD,
        VR::US,
        PrimitiveValue::from(field),
    ));
    obj.put(DataElement::new(
        tags::MESSAGE_ID,
        VR::US,
        PrimitiveValue::from(message_id),
    ));
    obj.put(DataElement::new(
        tags::PRIORITY,
        VR::US,
        PrimitiveValue::from(0_u16),
    ));
    obj.put(DataElement::new(
        tags::COMMAND_DATA_SET_TYPE,
        VR::US,
        PrimitiveValue::from(0_u16),
    ));
    obj
}

/// A C-FIND-RQ (PS3.7 9.1.2.1): what an SCU sends; the benches use it.
pub fn find_request(message_id: u16, sop_class_uid: &str) -> Result<Vec<u8>, CommandError> {
    encode_with_group_length(&request(field::C_FIND_RQ, message_id, sop_class_uid))
}

/// A C-MOVE-RQ (PS3.7 9.1.4.1) to `destination`, an identifier following.
pub fn move_request(
    message_id: u16,
    sop_class_uid: &str,
    destination: &str,
) -> Result<Vec<u8>, CommandError> {
    let mut obj = request(field::C_MOVE_RQ, message_id, sop_class_uid);
    obj.put(DataElement::new(
        tags::MOVE_DESTINATION,
        VR::AE,
        PrimitiveValue::from(destination),
    ));
    encode_with_group_length(&obj)
}

/// A C-CANCEL-RQ (PS3.7 9.3.2.3) for the request `message_id`.
pub fn cancel_request(message_id: u16) -> Result<Vec<u8>, CommandError> {
    let mut obj = InMemDicomObject::new_empty();
    obj.put(DataElement::new(
        tags::COMMAND_FIELD,
        VR::US,
        PrimitiveValue::from(field::C_CANCEL_RQ),
    ));
    obj.put(DataElement::new(
        tags::MESSAGE_ID_BEING_RESPONDED_TO,
        VR::US,
        PrimitiveValue::from(message_id),
    ));
    obj.put(DataElement::new(
        tags::COMMAND_DATA_SET_TYPE,
        VR::US,
        PrimitiveValue::from(NO_DATASET),
    ));
    encode_with_group_length(&obj)
}

/// What a final C-MOVE/C-GET response says beside its status: the sub-operation counts
/// and the error comment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FinalCounts {
    pub completed: u16,
    pub failed: u16,
    pub warning: u16,
    pub comment: Option<String>,
}

/// The counts of a response command set (absent counts are 0).
pub fn sub_operation_counts(bytes: &[u8]) -> Result<FinalCounts, CommandError> {
    check_element_lengths(bytes)?;
    let obj = InMemDicomObject::read_dataset_with_ts(bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .map_err(|e| CommandError::Decode(Box::new(e)))?;
    Ok(FinalCounts {
        completed: uint(&obj, tags::NUMBER_OF_COMPLETED_SUBOPERATIONS).unwrap_or(0),
        failed: uint(&obj, tags::NUMBER_OF_FAILED_SUBOPERATIONS).unwrap_or(0),
        warning: uint(&obj, tags::NUMBER_OF_WARNING_SUBOPERATIONS).unwrap_or(0),
        comment: text(&obj, tags::ERROR_COMMENT),
    })
}

/// An N-EVENT-REPORT-RQ (PS3.7 10.1.1.1) about `instance` of `class`, a data set following.
pub fn event_report_request(
    message_id: u16,
    class: &str,
    instance: &str,
    event_type_id: u16,
) -> Result<Vec<u8>, CommandError> {
    let mut obj = request(field::N_EVENT_REPORT_RQ, message_id, class);
    obj.remove_element(tags::PRIORITY);
    obj.put(DataElement::new(
        tags::AFFECTED_SOP_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from(instance),
    ));
    obj.put(DataElement::new(
        tags::EVENT_TYPE_ID,
        VR::US,
        PrimitiveValue::from(event_type_id),
    ));
    encode_with_group_length(&obj)
}

/// A C-STORE-RQ as a C-MOVE or C-GET sub-operation (PS3.7 9.3.1.1).
pub fn store_request(
    message_id: u16,
    sop_class_uid: &str,
    sop_instance_uid: &str,
    move_originator: Option<(&str, u16)>,
) -> Result<Vec<u8>, CommandError> {
    let mut obj = request(field::C_STORE_RQ, message_id, sop_class_uid);
    obj.put(DataElement::new(
        tags::AFFECTED_SOP_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from(sop_instance_uid),
    ));
    if let Some((ae, id)) = move_originator {
        obj.put(DataElement::new(
            tags::MOVE_ORIGINATOR_APPLICATION_ENTITY_TITLE,
            VR::AE,
            PrimitiveValue::from(ae),
        ));
        obj.put(DataElement::new(
            tags::MOVE_ORIGINATOR_MESSAGE_ID,
            VR::US,
            PrimitiveValue::from(id),
        ));
    }
    encode_with_group_length(&obj)
}

/// Encode a command set, preceded by its CommandGroupLength (0000,0000).
fn encode_with_group_length(obj: &InMemDicomObject) -> Result<Vec<u8>, CommandError> {
    let mut body = Vec::with_capacity(256);
    obj.write_dataset_with_ts(&mut body, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .map_err(|e| CommandError::Encode(Box::new(e)))?;
    let len = u32::try_from(body.len()).map_err(|_| CommandError::TooLong(body.len()))?;
    let mut out = Vec::with_capacity(body.len() + 12);
    out.extend_from_slice(&[0, 0, 0, 0, 4, 0, 0, 0]);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_bytes(field: u16, with_dataset: bool) -> Vec<u8> {
        let mut obj = InMemDicomObject::new_empty();
        obj.put(DataElement::new(
            tags::AFFECTED_SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from("1.2.840.10008.5.1.4.1.1.2"),
        ));
        obj.put(DataElement::new(
            tags::COMMAND_FIELD,
            VR::US,
            PrimitiveValue::from(field),
        ));
        obj.put(DataElement::new(
            tags::MESSAGE_ID,
            VR::US,
            PrimitiveValue::from(7_u16),
        ));
        obj.put(DataElement::new(
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            PrimitiveValue::from(if with_dataset { 0x0000_u16 } else { NO_DATASET }),
        ));
        obj.put(DataElement::new(
            tags::AFFECTED_SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from("1.2.3.4"),
        ));
        encode_with_group_length(&obj).expect("encode")
    }

    #[test]
    fn parses_a_store_request() {
        let cmd = Command::parse(&request_bytes(field::C_STORE_RQ, true)).expect("parse");
        assert_eq!(cmd.field, field::C_STORE_RQ);
        assert_eq!(cmd.message_id, 7);
        assert!(cmd.has_dataset);
        assert_eq!(cmd.affected_sop_instance_uid.as_deref(), Some("1.2.3.4"));
    }

    #[test]
    fn response_echoes_ids_and_carries_status_and_comment() {
        let rq = Command::parse(&request_bytes(field::C_STORE_RQ, true)).expect("parse");
        let bytes = Response {
            request: &rq,
            status: Status::CANNOT_UNDERSTAND,
            error_comment: Some("x".repeat(100)),
            has_dataset: false,
            counts: None,
        }
        .encode()
        .expect("encode");
        let group_len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        assert_eq!(group_len, bytes.len() - 12);
        let obj =
            InMemDicomObject::read_dataset_with_ts(&bytes[..], &IMPLICIT_VR_LITTLE_ENDIAN.erased())
                .expect("read back");
        assert_eq!(uint(&obj, tags::COMMAND_FIELD), Some(0x8001));
        assert_eq!(uint(&obj, tags::MESSAGE_ID_BEING_RESPONDED_TO), Some(7));
        assert_eq!(uint(&obj, tags::STATUS), Some(0xC000));
        assert_eq!(text(&obj, tags::ERROR_COMMENT).map(|c| c.len()), Some(64));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Command::parse(&[1, 2, 3, 4, 5]).is_err());
        assert!(Command::parse(&[]).is_err());
    }

    #[test]
    fn a_declared_length_beyond_the_bytes_is_refused_before_parsing() {
        // A complete C-ECHO-RQ, then Affected SOP Class UID (0000,0002) declaring 3 GiB.
        let mut bytes = request_bytes(field::C_ECHO_RQ, false);
        bytes.extend_from_slice(&[0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0xC0, b'1']);
        assert!(matches!(
            Command::parse(&bytes),
            Err(CommandError::Parse(m)) if m.contains("declares 3221225472 bytes but 1 remain")
        ));
        // A sequence (here of undefined length) has no place in a command set.
        let mut bytes = request_bytes(field::C_ECHO_RQ, false);
        bytes.extend_from_slice(&[0x08, 0x00, 0x15, 0x11, 0xFF, 0xFF, 0xFF, 0xFF]);
        assert!(matches!(
            Command::parse(&bytes),
            Err(CommandError::Parse(m)) if m.contains("sequence")
        ));
        // A 2-byte UL: dicom-parser would read no number, consume nothing, and take the next
        // bytes as an element header declaring 4 GiB.
        let bytes = [0, 0, 0, 0, 2, 0, 0, 0, 0, 8, 2, 0, 0, 0, 0, 0xFA];
        assert!(matches!(
            Command::parse(&bytes),
            Err(CommandError::Parse(m)) if m.contains("not a multiple of 4")
        ));
    }
}
