//! JSON lines and RFC 5424 / DICOM audit message export.

use crate::audit::{
    to_json_line, to_syslog, AuditEntry, AuditRecord, Interface, Outcome, GENESIS_HASH,
};

fn record(action: &str, outcome: Outcome) -> AuditRecord {
    let mut entry = AuditEntry::new(Interface::Http, "alice", "127.0.0.1:51234", action, outcome);
    entry.role = Some("radiologist".into());
    entry.patient_id = Some("PAT-1".into());
    entry.study_uid = Some("1.2.840.1".into());
    AuditRecord {
        seq: 7,
        time: "2026-11-25T19:01:02.345Z".into(),
        entry,
        prev_hash: GENESIS_HASH.into(),
        hash: "ab".repeat(32),
    }
}

/// The XML after the syslog header.
fn message(line: &str) -> &str {
    line.split_once(" IHE+RFC-3881 - ").map_or("", |(_, m)| m)
}

/// Checks what a parser would reject: unbalanced tags, a bare `<` or `&` in a value.
fn assert_well_formed(xml: &str) {
    let body = xml
        .strip_prefix(r#"<?xml version="1.0" encoding="UTF-8"?>"#)
        .expect("XML declaration");
    let mut stack: Vec<String> = Vec::new();
    let mut rest = body;
    while let Some(lt) = rest.find('<') {
        assert_entities(&rest[..lt]);
        let after = &rest[lt + 1..];
        let end = tag_end(after);
        let tag = &after[..end];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name), "closing tag");
        } else {
            let name: String = tag
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '/')
                .collect();
            assert_entities(tag);
            if !tag.ends_with('/') {
                stack.push(name);
            }
        }
        rest = &after[end + 1..];
    }
    assert!(stack.is_empty(), "unclosed {stack:?}");
}

/// Index of the `>` ending a tag, skipping quoted attribute values (which must not hold `<`).
fn tag_end(s: &str) -> usize {
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' => panic!("bare < in {s}"),
            '>' if !quoted => return i,
            _ => {}
        }
    }
    panic!("unterminated tag {s}")
}

fn assert_entities(s: &str) {
    for (i, _) in s.match_indices('&') {
        let tail = &s[i..];
        assert!(
            ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;", "&#"]
                .iter()
                .any(|e| tail.starts_with(e)),
            "bare & in {s}"
        );
    }
}

#[test]
fn audit_syslog_line_for_a_retrieve() {
    let line = to_syslog(&record("wado.retrieve", Outcome::Success), "pacs1", "pacs");
    assert!(
        line.starts_with("<85>1 2026-11-25T19:01:02.345Z pacs1 pacs - IHE+RFC-3881 - <?xml"),
        "{line}"
    );
    assert!(!line.contains('\n'));
    let xml = message(&line);
    assert_well_formed(xml);
    for part in [
        r#"<EventIdentification EventActionCode="R" EventDateTime="2026-11-25T19:01:02.345Z" EventOutcomeIndicator="0">"#,
        r#"<EventID csd-code="110103" codeSystemName="DCM" originalText="DICOM Instances Accessed"/>"#,
        r#"<ActiveParticipant UserID="alice" UserIsRequestor="true" NetworkAccessPointID="127.0.0.1" NetworkAccessPointTypeCode="2">"#,
        r#"<RoleIDCode csd-code="radiologist" codeSystemName="pacs" originalText="radiologist"/>"#,
        r#"<RoleIDCode csd-code="110152""#,
        r#"<ActiveParticipant UserID="pacs" UserIsRequestor="false" NetworkAccessPointID="pacs1""#,
        r#"<RoleIDCode csd-code="110153""#,
        r#"<AuditSourceIdentification AuditSourceID="pacs1">"#,
        r#"<ParticipantObjectIdentification ParticipantObjectID="PAT-1" ParticipantObjectTypeCode="1" ParticipantObjectTypeCodeRole="1"><ParticipantObjectIDTypeCode csd-code="2" codeSystemName="RFC-3881" originalText="Patient Number"/>"#,
        r#"<ParticipantObjectIdentification ParticipantObjectID="1.2.840.1" ParticipantObjectTypeCode="2" ParticipantObjectTypeCodeRole="3"><ParticipantObjectIDTypeCode csd-code="110180" codeSystemName="DCM" originalText="Study Instance UID"/>"#,
    ] {
        assert!(xml.contains(part), "missing {part} in {xml}");
    }
}

#[test]
fn audit_syslog_event_ids_and_outcomes() {
    let cases = [
        ("qido.search", Outcome::Denied, "<84>", "110112", "E", "4"),
        (
            "dimse.c-store",
            Outcome::Success,
            "<85>",
            "110104",
            "C",
            "0",
        ),
        ("dimse.c-move", Outcome::Failure, "<84>", "110104", "R", "8"),
        ("study.delete", Outcome::Success, "<85>", "110105", "D", "0"),
        ("auth.login", Outcome::Denied, "<84>", "110114", "E", "4"),
        ("config.reload", Outcome::Denied, "<84>", "110113", "E", "4"),
    ];
    for (action, outcome, pri, event, code, indicator) in cases {
        let line = to_syslog(&record(action, outcome), "pacs1", "pacs");
        assert!(line.starts_with(pri), "{action}: {line}");
        let xml = message(&line);
        assert_well_formed(xml);
        assert!(
            xml.contains(&format!("<EventID csd-code=\"{event}\"")),
            "{action}: {xml}"
        );
        assert!(
            xml.contains(&format!(
                "EventActionCode=\"{code}\" EventDateTime=\"2026-11-25T19:01:02.345Z\" EventOutcomeIndicator=\"{indicator}\""
            )),
            "{action}: {xml}"
        );
    }
    let login = to_syslog(&record("auth.login", Outcome::Success), "h", "a");
    assert!(login.contains(r#"<EventTypeCode csd-code="110122""#));
}

#[test]
fn audit_syslog_escapes_values() {
    let mut r = record("dimse.c-store", Outcome::Denied);
    r.entry.interface = Interface::Dimse;
    r.entry.user = "<&evil\"ae>".into();
    r.entry.ae_title = Some("EVIL&AE".into());
    r.entry.detail = Some("refused: <not allowed>\nsecond line".into());
    r.entry.source = "not an address".into();
    let line = to_syslog(&r, "pacs host", "pacs");
    assert!(!line.contains('\n'));
    assert!(line.starts_with("<84>1 2026-11-25T19:01:02.345Z pacshost pacs - "));
    let xml = message(&line);
    assert_well_formed(xml);
    assert!(!xml.contains("<&"));
    assert!(
        xml.contains(r#"UserID="&lt;&amp;evil&quot;ae&gt;""#),
        "{xml}"
    );
    assert!(xml.contains(r#"AlternativeUserID="AETITLES=EVIL&amp;AE""#));
    assert!(xml.contains(
        "<EventOutcomeDescription>refused: &lt;not allowed&gt;&#10;second line</EventOutcomeDescription>"
    ));
    assert!(xml.contains(r#"NetworkAccessPointID="not an address" NetworkAccessPointTypeCode="1""#));
}

#[test]
fn audit_json_line_round_trips() {
    let r = record("wado.retrieve", Outcome::Success);
    let line = to_json_line(&r);
    assert!(!line.contains('\n'));
    assert!(
        line.starts_with(
            r#"{"seq":7,"time":"2026-11-25T19:01:02.345Z","interface":"http","user":"alice""#
        ),
        "{line}"
    );
    assert!(line.contains(r#""outcome":"success""#));
    assert!(!line.contains("null"));
    let back: AuditRecord = serde_json::from_str(&line).expect("decode");
    assert_eq!(back, r);
}
