//! C-FIND, C-MOVE and C-GET identifiers (PS3.4 C.4): the identifier becomes a query for the
//! storage crate's engine; each C-FIND match becomes a response identifier carrying the keys
//! the SCU asked for.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::header::Header;
use dicom_core::value::{DataSetSequence, Value};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_dictionary_std::StandardDataDictionary;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use pacs_storage::attrs::tag_key;
use pacs_storage::lengths;
use pacs_storage::query::{
    Level, MatchOptions, Matcher, MatcherError, Query, QueryKey, QueryMatch,
};

use crate::dimse::status::Status;

/// Identifiers are small; anything larger is not a query.
pub const MAX_IDENTIFIER: usize = 1 << 20;

/// Why a C-FIND, C-MOVE or C-GET identifier is no query; its text is the Error Comment.
#[derive(Debug, thiserror::Error)]
pub enum IdentifierError {
    #[error("unknown transfer syntax {0}")]
    UnknownTransferSyntax(String),
    #[error("identifier cannot be parsed: {0}")]
    Lengths(#[source] lengths::LengthError),
    #[error("identifier cannot be parsed: {}", pacs_storage::error_chain(.0))]
    Parse(#[source] dicom_object::ReadError),
    #[error("QueryRetrieveLevel {0:?} missing or unknown")]
    Level(String),
    #[error("{key} has VR {vr}, the standard says {expected}")]
    WrongVr { key: String, vr: VR, expected: VR },
    #[error("{key}: {source}")]
    Matcher {
        key: String,
        #[source]
        source: MatcherError,
    },
}

impl IdentifierError {
    /// The status of the final response refusing the request.
    pub fn status(&self) -> Status {
        match self {
            IdentifierError::Lengths(_) | IdentifierError::Parse(_) => Status::CANNOT_UNDERSTAND,
            _ => Status::IDENTIFIER_DOES_NOT_MATCH,
        }
    }
}

/// Why a response identifier could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("unknown transfer syntax {0}")]
    UnknownTransferSyntax(String),
    /// Boxed: the writer's error is large and this is the error of every encoded match.
    #[error("{}", pacs_storage::error_chain(.0.as_ref()))]
    Write(#[source] Box<dicom_object::WriteError>),
}

/// A parsed C-FIND request: the query and the identifier (to echo its keys back).
pub struct FindRequest {
    pub query: Query,
    pub identifier: InMemDicomObject,
    pub transfer_syntax: String,
}

fn element_text(elem: &dicom_object::mem::InMemElement) -> String {
    match elem.value() {
        Value::Primitive(p) => p.to_str().trim_end_matches(['\0', ' ']).to_string(),
        _ => String::new(),
    }
}

/// A request's data set received in `transfer_syntax` (an identifier, an MPPS attribute list),
/// its element lengths checked before dicom-parser allocates what they declare.
pub fn read_dataset(
    bytes: &[u8],
    transfer_syntax: &str,
) -> Result<InMemDicomObject, IdentifierError> {
    let ts = TransferSyntaxRegistry
        .get(transfer_syntax)
        .ok_or_else(|| IdentifierError::UnknownTransferSyntax(transfer_syntax.to_string()))?;
    if let Some(encoding) = lengths::Encoding::of(ts) {
        lengths::check_bytes(bytes, encoding).map_err(IdentifierError::Lengths)?;
    }
    InMemDicomObject::read_dataset_with_ts(bytes, ts).map_err(IdentifierError::Parse)
}

/// Parse an identifier received in `transfer_syntax` into a query.
pub fn parse_request(
    bytes: &[u8],
    transfer_syntax: &str,
    options: MatchOptions,
) -> Result<FindRequest, IdentifierError> {
    let identifier = read_dataset(bytes, transfer_syntax)?;
    let level_text = identifier
        .get(tags::QUERY_RETRIEVE_LEVEL)
        .map(element_text)
        .unwrap_or_default();
    let level = Level::parse(&level_text).ok_or(IdentifierError::Level(level_text))?;
    let mut keys = Vec::new();
    for elem in identifier.iter() {
        let tag = elem.tag();
        if tag == tags::QUERY_RETRIEVE_LEVEL
            || tag == tags::SPECIFIC_CHARACTER_SET
            || tag == tags::RETRIEVE_AE_TITLE
            || tag.group() == 0x0002
        {
            continue;
        }
        if elem.vr() == VR::SQ {
            // Sequence matching is not supported: returned empty, ignored for matching.
            continue;
        }
        // A key sent with another VR than the standard gives it cannot be matched as meant.
        if let Some(entry) = StandardDataDictionary.by_tag(tag) {
            if let VirtualVr::Exact(expected) = entry.vr() {
                if elem.vr() != expected && elem.vr() != VR::UN {
                    return Err(IdentifierError::WrongVr {
                        key: tag_key(tag),
                        vr: elem.vr(),
                        expected,
                    });
                }
            }
        }
        let vr = elem.vr().to_string().to_string();
        let matcher = Matcher::parse(&vr, &element_text(elem)).map_err(|source| {
            IdentifierError::Matcher {
                key: tag_key(tag),
                source,
            }
        })?;
        keys.push(QueryKey {
            tag: tag_key(tag),
            vr,
            matcher,
        });
    }
    Ok(FindRequest {
        query: Query {
            level,
            keys,
            options,
            relational: false,
        },
        identifier,
        transfer_syntax: transfer_syntax.to_string(),
    })
}

fn value_for(vr: VR, values: &[String]) -> PrimitiveValue {
    let nums = |f: &dyn Fn(&str) -> Option<PrimitiveValue>| -> Option<PrimitiveValue> {
        (values.len() == 1).then(|| f(values[0].trim())).flatten()
    };
    let numeric = match vr {
        VR::US => nums(&|v| v.parse::<u16>().ok().map(PrimitiveValue::from)),
        VR::UL => nums(&|v| v.parse::<u32>().ok().map(PrimitiveValue::from)),
        VR::SS => nums(&|v| v.parse::<i16>().ok().map(PrimitiveValue::from)),
        VR::SL => nums(&|v| v.parse::<i32>().ok().map(PrimitiveValue::from)),
        VR::FL => nums(&|v| v.parse::<f32>().ok().map(PrimitiveValue::from)),
        VR::FD => nums(&|v| v.parse::<f64>().ok().map(PrimitiveValue::from)),
        _ => None,
    };
    numeric.unwrap_or_else(|| PrimitiveValue::Strs(values.iter().cloned().collect()))
}

/// The response identifier: every key of the request, filled from the match (empty when the
/// index has no value), in the request's transfer syntax and UTF-8.
pub fn response_identifier(
    request: &FindRequest,
    found: &QueryMatch,
    our_ae: &str,
) -> Result<Vec<u8>, EncodeError> {
    let mut out = InMemDicomObject::new_empty();
    out.put(DataElement::new(
        tags::SPECIFIC_CHARACTER_SET,
        VR::CS,
        PrimitiveValue::from("ISO_IR 192"),
    ));
    out.put(DataElement::new(
        tags::QUERY_RETRIEVE_LEVEL,
        VR::CS,
        PrimitiveValue::from(request.query.level.as_str()),
    ));
    out.put(DataElement::new(
        tags::RETRIEVE_AE_TITLE,
        VR::AE,
        PrimitiveValue::from(our_ae),
    ));
    for elem in request.identifier.iter() {
        let tag: Tag = elem.tag();
        if tag == tags::SPECIFIC_CHARACTER_SET
            || tag == tags::QUERY_RETRIEVE_LEVEL
            || tag == tags::RETRIEVE_AE_TITLE
            || tag.group() == 0x0002
        {
            continue;
        }
        let vr = elem.vr();
        if vr == VR::SQ {
            out.put(DataElement::new(
                tag,
                VR::SQ,
                DataSetSequence::<InMemDicomObject>::empty(),
            ));
            continue;
        }
        let value = match found.attributes.get(&tag_key(tag)) {
            Some(v) if !v.values.is_empty() => value_for(vr, &v.values),
            _ => PrimitiveValue::Empty,
        };
        out.put(DataElement::new(tag, vr, value));
    }
    let ts = TransferSyntaxRegistry
        .get(&request.transfer_syntax)
        .ok_or_else(|| EncodeError::UnknownTransferSyntax(request.transfer_syntax.clone()))?;
    let mut bytes = Vec::with_capacity(512);
    out.write_dataset_with_ts(&mut bytes, ts)
        .map_err(|e| EncodeError::Write(Box::new(e)))?;
    Ok(bytes)
}

/// The identifier of a final C-MOVE/C-GET response with failures: Failed SOP Instance UID List.
pub fn failed_list(failed: &[String], transfer_syntax: &str) -> Result<Vec<u8>, EncodeError> {
    let mut obj = InMemDicomObject::new_empty();
    obj.put(DataElement::new(
        tags::FAILED_SOP_INSTANCE_UID_LIST,
        VR::UI,
        PrimitiveValue::Strs(failed.iter().cloned().collect()),
    ));
    let ts = TransferSyntaxRegistry
        .get(transfer_syntax)
        .ok_or_else(|| EncodeError::UnknownTransferSyntax(transfer_syntax.to_string()))?;
    let mut bytes = Vec::new();
    obj.write_dataset_with_ts(&mut bytes, ts)
        .map_err(|e| EncodeError::Write(Box::new(e)))?;
    Ok(bytes)
}
