//! DIMSE status codes (PS3.7 Annex C, PS3.4 B.2.3 for C-STORE), in one table.

/// A DIMSE status value with the meaning PS3.4/PS3.7 gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u16);

impl Status {
    pub const SUCCESS: Status = Status(0x0000);
    /// Refused: SOP Class not supported.
    pub const SOP_CLASS_NOT_SUPPORTED: Status = Status(0x0122);
    /// Refused: not authorized (PS3.7 C.5.x).
    pub const NOT_AUTHORIZED: Status = Status(0x0124);
    /// Unrecognized operation (a DIMSE service we do not provide).
    pub const UNRECOGNIZED_OPERATION: Status = Status(0x0211);
    /// C-STORE Refused: Out of Resources.
    pub const OUT_OF_RESOURCES: Status = Status(0xA700);
    /// C-STORE Refused: the instance was rejected by an IOCM rejection note before (a
    /// service-specific code in the "out of resources" range, the one dcm4chee-arc uses).
    pub const SUBSEQUENT_OCCURRENCE_OF_REJECTED: Status = Status(0xA771);
    /// C-STORE Refused: a rejection note naming instances the archive does not hold.
    pub const REJECTION_FAILED: Status = Status(0xA772);
    /// C-STORE Error: Data Set does not match SOP Class.
    pub const DATASET_DOES_NOT_MATCH: Status = Status(0xA900);
    /// C-STORE Error: Cannot understand.
    pub const CANNOT_UNDERSTAND: Status = Status(0xC000);
    /// C-FIND/C-MOVE/C-GET Pending: a match (or sub-operations) follows.
    pub const PENDING: Status = Status(0xFF00);
    /// Matching or sub-operations terminated due to a C-CANCEL.
    pub const CANCEL: Status = Status(0xFE00);
    /// C-FIND Failed: Identifier does not match SOP Class.
    pub const IDENTIFIER_DOES_NOT_MATCH: Status = Status(0xA900);
    /// C-MOVE Refused: Move Destination unknown.
    pub const MOVE_DESTINATION_UNKNOWN: Status = Status(0xA801);
    /// C-MOVE/C-GET Refused: Out of Resources, unable to perform sub-operations.
    pub const UNABLE_TO_PERFORM_SUBOPERATIONS: Status = Status(0xA702);
    /// C-MOVE/C-GET Warning: sub-operations complete, one or more failures or warnings.
    pub const SUBOPERATIONS_WITH_FAILURES: Status = Status(0xB000);
    /// Processing failure (PS3.7 C.4.2); for an MPPS N-SET after COMPLETED or DISCONTINUED,
    /// "Performed Procedure Step Object may no longer be updated" (PS3.4 F.7.2.2.2).
    pub const PROCESSING_FAILURE: Status = Status(0x0110);
    /// N-CREATE/N-SET: Invalid attribute value.
    pub const INVALID_ATTRIBUTE_VALUE: Status = Status(0x0106);
    /// N-CREATE: Duplicate SOP Instance.
    pub const DUPLICATE_SOP_INSTANCE: Status = Status(0x0111);
    /// N-SET: No such SOP Instance.
    pub const NO_SUCH_SOP_INSTANCE: Status = Status(0x0112);
    /// N-CREATE: Missing attribute.
    pub const MISSING_ATTRIBUTE: Status = Status(0x0120);
    /// N-CREATE/N-SET: Missing attribute value.
    pub const MISSING_ATTRIBUTE_VALUE: Status = Status(0x0121);
    /// N-SET: Invalid object instance.
    pub const INVALID_OBJECT_INSTANCE: Status = Status(0x0117);
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0x{:04X}", self.0)
    }
}
