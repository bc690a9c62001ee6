//! Why a message is refused: the acknowledgment code, the HL7 error code (table 0357) and
//! where in the message the error is, as the ERR segment reports them.

use pacs_storage::order_intake::IntakeError;
use pacs_storage::orders::OrderError;

use crate::message::ParseError;

/// MSA-1 of a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCode {
    /// Application error: the message was understood but cannot be applied (yet).
    Error,
    /// Application reject: the message itself is unacceptable; resending will not help.
    Reject,
}

impl AckCode {
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::Error => "AE",
            AckCode::Reject => "AR",
        }
    }
}

/// HL7 table 0357 (message error condition codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    SegmentSequence = 100,
    RequiredFieldMissing = 101,
    DataType = 102,
    TableValueNotFound = 103,
    UnsupportedMessageType = 200,
    UnsupportedEventCode = 201,
    UnknownKey = 204,
    DuplicateKey = 205,
    RecordLocked = 206,
    /// Also used for a frame over the size limit: 0357 has no better code for it.
    InternalError = 207,
}

impl ErrorCode {
    pub fn code(self) -> u16 {
        self as u16
    }

    pub fn text(self) -> &'static str {
        match self {
            ErrorCode::SegmentSequence => "Segment sequence error",
            ErrorCode::RequiredFieldMissing => "Required field missing",
            ErrorCode::DataType => "Data type error",
            ErrorCode::TableValueNotFound => "Table value not found",
            ErrorCode::UnsupportedMessageType => "Unsupported message type",
            ErrorCode::UnsupportedEventCode => "Unsupported event code",
            ErrorCode::UnknownKey => "Unknown key identifier",
            ErrorCode::DuplicateKey => "Duplicate key identifier",
            ErrorCode::RecordLocked => "Application record locked",
            ErrorCode::InternalError => "Application internal error",
        }
    }
}

/// ERR-2: segment, its occurrence (1-based) and field, e.g. `PID^1^3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub segment: &'static str,
    pub field: u16,
}

/// A refused message, as the ACK reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub ack: AckCode,
    pub code: ErrorCode,
    pub location: Option<Location>,
    pub text: String,
}

impl Refusal {
    pub fn new(ack: AckCode, code: ErrorCode, text: impl Into<String>) -> Self {
        Refusal {
            ack,
            code,
            location: None,
            text: text.into(),
        }
    }

    pub fn at(mut self, segment: &'static str, field: u16) -> Self {
        self.location = Some(Location { segment, field });
        self
    }

    /// A field the order needs is empty.
    pub fn missing(segment: &'static str, field: u16, what: &str) -> Self {
        Refusal::new(
            AckCode::Error,
            ErrorCode::RequiredFieldMissing,
            format!("{what} ({segment}-{field}) is missing"),
        )
        .at(segment, field)
    }

    /// What the intake rules said, as an ACK says it.
    pub fn from_intake(e: &IntakeError) -> Self {
        let text = e.to_string();
        match e {
            IntakeError::Invalid(o) => match o {
                OrderError::NoAccessionNumber => {
                    Refusal::new(AckCode::Error, ErrorCode::RequiredFieldMissing, text)
                        .at("OBR", 18)
                }
                OrderError::BadAccessionNumber(_) => {
                    Refusal::new(AckCode::Error, ErrorCode::DataType, text).at("OBR", 18)
                }
                OrderError::NoPatientId => {
                    Refusal::new(AckCode::Error, ErrorCode::RequiredFieldMissing, text).at("PID", 3)
                }
                OrderError::NoModality => {
                    Refusal::new(AckCode::Error, ErrorCode::RequiredFieldMissing, text)
                        .at("OBR", 24)
                }
                OrderError::BadStart(_) => Refusal::new(AckCode::Error, ErrorCode::DataType, text),
                OrderError::Closed(..) => {
                    Refusal::new(AckCode::Error, ErrorCode::InternalError, text)
                }
            },
            IntakeError::Unknown(_) => Refusal::new(AckCode::Error, ErrorCode::UnknownKey, text),
            IntakeError::Taken(_) => Refusal::new(AckCode::Error, ErrorCode::DuplicateKey, text),
            IntakeError::Contended(_) => {
                Refusal::new(AckCode::Error, ErrorCode::RecordLocked, text)
            }
            IntakeError::Storage(_) => Refusal::new(AckCode::Error, ErrorCode::InternalError, text),
        }
    }
}

impl From<&ParseError> for Refusal {
    fn from(e: &ParseError) -> Self {
        let text = e.to_string();
        match e {
            ParseError::NoMsh => {
                Refusal::new(AckCode::Reject, ErrorCode::SegmentSequence, text).at("MSH", 1)
            }
            ParseError::BadSeparators => {
                Refusal::new(AckCode::Reject, ErrorCode::DataType, text).at("MSH", 2)
            }
            ParseError::BadSegmentName(_) => {
                Refusal::new(AckCode::Reject, ErrorCode::SegmentSequence, text)
            }
            ParseError::Charset(_) => {
                Refusal::new(AckCode::Reject, ErrorCode::TableValueNotFound, text).at("MSH", 18)
            }
        }
    }
}
