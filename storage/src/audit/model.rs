//! What callers hand the audit trail ([`AuditEntry`]) and what it stores ([`AuditRecord`]).
//!
//! The field order of these structs is part of the hash canonicalization (see
//! [`super::chain`]): reordering or renaming fields breaks verification of existing logs.

use serde::{Deserialize, Serialize};

/// Which door the request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interface {
    Http,
    Dimse,
    Cli,
    /// HL7 v2 messages over MLLP (orders from the EHR).
    Hl7,
}

/// How the audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    /// Refused by access control.
    Denied,
    Failure,
}

/// One audited action, as the caller (HTTP handler, DIMSE service, CLI) describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub interface: Interface,
    /// User name, "anonymous", or for DIMSE the calling AE title.
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// DIMSE calling AE title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ae_title: Option<String>,
    /// Peer address, e.g. "127.0.0.1:51234".
    pub source: String,
    /// Dotted action name, e.g. "wado.retrieve", "dimse.c-store", "auth.login".
    pub action: String,
    /// Request path, SOP class or other free text naming what was acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub study_uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series_uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_uid: Option<String>,
    pub outcome: Outcome,
    /// Reason for a refusal or failure, counts, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl AuditEntry {
    /// An entry with the required fields set and every optional one empty.
    pub fn new(
        interface: Interface,
        user: impl Into<String>,
        source: impl Into<String>,
        action: impl Into<String>,
        outcome: Outcome,
    ) -> Self {
        AuditEntry {
            interface,
            user: user.into(),
            role: None,
            ae_title: None,
            source: source.into(),
            action: action.into(),
            target: None,
            patient_id: None,
            study_uid: None,
            series_uid: None,
            instance_uid: None,
            outcome,
            detail: None,
        }
    }
}

/// One stored link of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// 1, 2, 3 … never reused, no gaps.
    pub seq: u64,
    /// RFC 3339 UTC with milliseconds, e.g. `2026-11-25T19:01:02.345Z`.
    pub time: String,
    #[serde(flatten)]
    pub entry: AuditEntry,
    /// Hex SHA-256 of the previous record ([`GENESIS_HASH`] for seq 1).
    pub prev_hash: String,
    /// Hex SHA-256 of this record, see [`super::chain`].
    pub hash: String,
}

/// `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The last committed record, kept under its own key so that truncating the tail shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
}
