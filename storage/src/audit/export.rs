//! Export formats: one JSON object per line, and RFC 5424 syslog lines carrying the DICOM
//! audit message (IHE ATNA "Record Audit Event").

use super::audit_message::audit_message_xml;
use super::model::{AuditRecord, Outcome};

/// Facility 10: security/authorization messages.
const FACILITY_SECURITY: u8 = 10;
const SEVERITY_WARNING: u8 = 4;
const SEVERITY_NOTICE: u8 = 5;
/// MSGID that IHE ATNA gives audit messages.
const MSGID: &str = "IHE+RFC-3881";

/// The record as one line of JSON (the stored form, hash included).
pub fn to_json_line(record: &AuditRecord) -> String {
    // Cannot fail for this type (string keys, no maps); keep the line a valid JSON object
    // naming the seq anyway rather than panic.
    serde_json::to_string(record).unwrap_or_else(|e| {
        tracing::error!(seq = record.seq, error = %e, "cannot serialize an audit record");
        format!("{{\"seq\":{},\"error\":\"unserializable\"}}", record.seq)
    })
}

/// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME - IHE+RFC-3881 - <AuditMessage …>`, one line, no
/// newline. Severity is notice for a success, warning for a refusal or failure. PROCID is
/// nil: the record does not say which process wrote it. The MSG carries no BOM, as IHE
/// ATNA senders commonly do.
pub fn to_syslog(record: &AuditRecord, hostname: &str, app_name: &str) -> String {
    let severity = match record.entry.outcome {
        Outcome::Success => SEVERITY_NOTICE,
        Outcome::Denied | Outcome::Failure => SEVERITY_WARNING,
    };
    let pri = u16::from(FACILITY_SECURITY) * 8 + u16::from(severity);
    let host = header_field(hostname, 255);
    let app = header_field(app_name, 48);
    let xml = audit_message_xml(record, &host, &app);
    format!("<{pri}>1 {} {host} {app} - {MSGID} - {xml}", record.time)
}

/// An RFC 5424 header field: printable US-ASCII without spaces, at most `max` characters,
/// `-` (nil) when empty.
fn header_field(value: &str, max: usize) -> String {
    let field: String = value
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if field.is_empty() {
        "-".to_string()
    } else {
        field
    }
}

/// This machine's name for syslog's HOSTNAME field.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_syslog_header_fields_are_sanitized() {
        assert_eq!(header_field("pacs host", 255), "pacshost");
        assert_eq!(header_field("", 48), "-");
        assert_eq!(header_field(&"a".repeat(60), 48).len(), 48);
    }
}
