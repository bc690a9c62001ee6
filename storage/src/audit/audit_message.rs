//! The DICOM PS3.15 Annex A.5 `AuditMessage` XML of one record (the IHE ATNA payload).
//!
//! Written on one line, with every value in an attribute and escaped, so it can be the MSG
//! of a syslog line. Coded values use the PS3.15 A.5.1 attributes `csd-code`,
//! `codeSystemName` and `originalText`.

use std::net::{IpAddr, SocketAddr};

use super::atna::{self, ActionCode, Code};
use super::model::AuditRecord;

/// The archive's `AuditSourceTypeCode`: 4 = application server process.
const SOURCE_TYPE_APPLICATION_SERVER: &str = "4";
const SOURCE_ROLE: Code = Code {
    code: "110153",
    meaning: "Source Role ID",
};
const DESTINATION_ROLE: Code = Code {
    code: "110152",
    meaning: "Destination Role ID",
};
/// Coding scheme of the site's own role names (no standard code list for them).
const LOCAL_ROLE_SCHEME: &str = "pacs";

/// `<?xml …?><AuditMessage>…</AuditMessage>` for `record`; `hostname` names the archive
/// (AuditSourceID, its network access point) and `app_name` its process (UserID).
pub fn audit_message_xml(record: &AuditRecord, hostname: &str, app_name: &str) -> String {
    let e = &record.entry;
    let (event, action) = atna::event_for(&e.action, e.outcome);
    // Who sends data to whom, for events that move instances.
    let (user_role, archive_role) = match action {
        ActionCode::Read => (Some(DESTINATION_ROLE), Some(SOURCE_ROLE)),
        ActionCode::Create => (Some(SOURCE_ROLE), Some(DESTINATION_ROLE)),
        _ => (None, None),
    };

    let mut x = Xml::default();
    x.raw(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    x.open("AuditMessage", &[]);

    x.open(
        "EventIdentification",
        &[
            ("EventActionCode", Some(action.as_str())),
            ("EventDateTime", Some(record.time.as_str())),
            (
                "EventOutcomeIndicator",
                Some(atna::outcome_indicator(e.outcome)),
            ),
        ],
    );
    x.code("EventID", event.code, "DCM", event.meaning);
    if let Some(kind) = atna::event_type_for(&e.action) {
        x.code("EventTypeCode", kind.code, "DCM", kind.meaning);
    }
    if let Some(detail) = &e.detail {
        // Free text, the reason of a refusal or failure.
        x.element("EventOutcomeDescription", detail);
    }
    x.close("EventIdentification");

    // The requesting user (or calling AE).
    let alt_id = e.ae_title.as_ref().map(|ae| format!("AETITLES={ae}"));
    let (nap_id, nap_type) = network_access_point(&e.source);
    x.open(
        "ActiveParticipant",
        &[
            ("UserID", Some(e.user.as_str())),
            ("AlternativeUserID", alt_id.as_deref()),
            ("UserIsRequestor", Some("true")),
            ("NetworkAccessPointID", nap_id.as_deref()),
            ("NetworkAccessPointTypeCode", nap_type),
        ],
    );
    if let Some(role) = &e.role {
        x.code("RoleIDCode", role, LOCAL_ROLE_SCHEME, role);
    }
    if let Some(role) = user_role {
        x.code("RoleIDCode", role.code, "DCM", role.meaning);
    }
    x.close("ActiveParticipant");

    // The archive itself.
    x.open(
        "ActiveParticipant",
        &[
            ("UserID", Some(app_name)),
            ("UserIsRequestor", Some("false")),
            ("NetworkAccessPointID", Some(hostname)),
            ("NetworkAccessPointTypeCode", Some("1")),
        ],
    );
    if let Some(role) = archive_role {
        x.code("RoleIDCode", role.code, "DCM", role.meaning);
    }
    x.close("ActiveParticipant");

    x.open(
        "AuditSourceIdentification",
        &[("AuditSourceID", Some(hostname))],
    );
    x.code(
        "AuditSourceTypeCode",
        SOURCE_TYPE_APPLICATION_SERVER,
        "DCM",
        "Application Server",
    );
    x.close("AuditSourceIdentification");

    if let Some(patient) = &e.patient_id {
        // Type 1 person, role 1 patient, ID type 2 patient number (RFC 3881).
        x.participant_object(patient, "1", "1", ("2", "RFC-3881", "Patient Number"));
    }
    if let Some(study) = &e.study_uid {
        // Type 2 system object, role 3 report (the DICOM study).
        x.participant_object(study, "2", "3", ("110180", "DCM", "Study Instance UID"));
    }

    x.close("AuditMessage");
    x.0
}

/// The peer's IP address without the port (type 2), a host name (type 1), or nothing.
fn network_access_point(source: &str) -> (Option<String>, Option<&'static str>) {
    if let Ok(addr) = source.parse::<SocketAddr>() {
        (Some(addr.ip().to_string()), Some("2"))
    } else if let Ok(ip) = source.parse::<IpAddr>() {
        (Some(ip.to_string()), Some("2"))
    } else if source.is_empty() || source == "-" {
        (None, None)
    } else {
        (Some(source.to_string()), Some("1"))
    }
}

/// A minimal XML writer; attributes with a `None` value are left out.
#[derive(Default)]
struct Xml(String);

type Attrs<'a> = [(&'a str, Option<&'a str>)];

impl Xml {
    fn raw(&mut self, s: &str) {
        self.0.push_str(s);
    }

    fn start(&mut self, name: &str, attrs: &Attrs<'_>) {
        self.0.push('<');
        self.0.push_str(name);
        for (key, value) in attrs {
            if let Some(value) = value {
                self.0.push(' ');
                self.0.push_str(key);
                self.0.push_str("=\"");
                escape_into(&mut self.0, value);
                self.0.push('"');
            }
        }
    }

    fn open(&mut self, name: &str, attrs: &Attrs<'_>) {
        self.start(name, attrs);
        self.0.push('>');
    }

    fn empty(&mut self, name: &str, attrs: &Attrs<'_>) {
        self.start(name, attrs);
        self.0.push_str("/>");
    }

    fn close(&mut self, name: &str) {
        self.0.push_str("</");
        self.0.push_str(name);
        self.0.push('>');
    }

    fn element(&mut self, name: &str, text: &str) {
        self.open(name, &[]);
        escape_into(&mut self.0, text);
        self.close(name);
    }

    fn code(&mut self, name: &str, code: &str, scheme: &str, meaning: &str) {
        self.empty(
            name,
            &[
                ("csd-code", Some(code)),
                ("codeSystemName", Some(scheme)),
                ("originalText", Some(meaning)),
            ],
        );
    }

    fn participant_object(
        &mut self,
        id: &str,
        type_code: &str,
        role: &str,
        (id_code, id_scheme, id_meaning): (&str, &str, &str),
    ) {
        self.open(
            "ParticipantObjectIdentification",
            &[
                ("ParticipantObjectID", Some(id)),
                ("ParticipantObjectTypeCode", Some(type_code)),
                ("ParticipantObjectTypeCodeRole", Some(role)),
            ],
        );
        self.code(
            "ParticipantObjectIDTypeCode",
            id_code,
            id_scheme,
            id_meaning,
        );
        self.close("ParticipantObjectIdentification");
    }
}

/// Escapes markup characters and line breaks (the message must stay on one line); control
/// characters XML 1.0 cannot carry at all become U+FFFD.
fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if c < ' ' || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_xml_escapes_values() {
        let mut s = String::new();
        escape_into(&mut s, "a<b&c>\"d'\ne\u{1}");
        assert_eq!(s, "a&lt;b&amp;c&gt;&quot;d&apos;&#10;e\u{fffd}");
    }

    #[test]
    fn audit_xml_network_access_point_drops_the_port() {
        assert_eq!(
            network_access_point("127.0.0.1:51234"),
            (Some("127.0.0.1".into()), Some("2"))
        );
        assert_eq!(
            network_access_point("[::1]:104"),
            (Some("::1".into()), Some("2"))
        );
        assert_eq!(
            network_access_point("modality.local"),
            (Some("modality.local".into()), Some("1"))
        );
        assert_eq!(network_access_point(""), (None, None));
    }
}
