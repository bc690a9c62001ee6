//! The ACK: MSH answering the sender's, MSA, and ERR (v2.5 layout) on every refusal. Always
//! written with the default separators: the ACK is a message of its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::charset::{self, Charset};
use crate::message::{Header, Separators};
use crate::nak::Refusal;

/// Who we are in MSH-3/MSH-4 of the ACK.
#[derive(Debug, Clone)]
pub struct Sender {
    pub application: String,
    pub facility: String,
}

impl Default for Sender {
    fn default() -> Self {
        Sender {
            application: "PACS".into(),
            facility: "PACS".into(),
        }
    }
}

/// Escape text for a field written with the default separators.
pub fn escape(text: &str) -> String {
    let s = Separators::default();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\E\\"),
            '|' => out.push_str("\\F\\"),
            '^' => out.push_str("\\S\\"),
            '&' => out.push_str("\\T\\"),
            '~' => out.push_str("\\R\\"),
            '\r' | '\n' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    debug_assert_eq!(s.field, '|');
    out
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A control ID for our ACK: time and a counter, at most 20 characters (ST of MSH-10).
fn control_id(now_ms: u64) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) % 10_000;
    let mut id = format!("{now_ms}{n:04}");
    id.truncate(20);
    id
}

/// UTC `YYYYMMDDHHMMSS` (civil date from days since 1970, H. Hinnant's algorithm).
pub fn timestamp(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The ACK for a message with `header` (None: its MSH was unusable), accepted when
/// `refusal` is None. Encoded in the sender's character set.
pub fn build(sender: &Sender, header: Option<&Header>, refusal: Option<&Refusal>) -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let now_ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
    let empty = Header::default();
    let h = header.unwrap_or(&empty);
    let version = if h.version.is_empty() {
        "2.5"
    } else {
        &h.version
    };
    let mut msh = format!(
        "MSH|^~\\&|{}|{}|{}|{}|{}||ACK^{}^ACK|{}|P|{}",
        escape(&sender.application),
        escape(&sender.facility),
        escape(&h.sending_application),
        escape(&h.sending_facility),
        timestamp(now.as_secs()),
        escape(&h.trigger),
        control_id(now_ms),
        escape(version),
    );
    if !h.charset_field.is_empty() {
        msh.push_str(&format!("||||||{}", escape(&h.charset_field)));
    }
    let mut out = msh;
    match refusal {
        None => out.push_str(&format!("\rMSA|AA|{}", escape(&h.control_id))),
        Some(r) => {
            out.push_str(&format!(
                "\rMSA|{}|{}|{}",
                r.ack.as_str(),
                escape(&h.control_id),
                escape(&r.text)
            ));
            let location = r
                .location
                .map(|l| format!("{}^1^{}", l.segment, l.field))
                .unwrap_or_default();
            out.push_str(&format!(
                "\rERR||{location}|{}^{}^HL70357|E||||{}",
                r.code.code(),
                r.code.text(),
                escape(&r.text)
            ));
        }
    }
    out.push('\r');
    charset::encode(&out, h.charset.unwrap_or(Charset::Utf8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nak::{AckCode, ErrorCode};

    #[test]
    fn accepted_refused_and_headless() {
        let h = Header {
            sending_application: "RIS".into(),
            sending_facility: "HOSP".into(),
            message_type: "ORM".into(),
            trigger: "O01".into(),
            control_id: "MSG|1".into(),
            version: "2.3".into(),
            charset_field: "8859/1".into(),
            charset: Some(Charset::Latin1),
        };
        let s = Sender::default();
        let ok = String::from_utf8(build(&s, Some(&h), None)).expect("ascii");
        assert!(ok.starts_with("MSH|^~\\&|PACS|PACS|RIS|HOSP|"), "{ok}");
        assert!(ok.contains("||ACK^O01^ACK|"), "{ok}");
        assert!(
            ok.contains("|P|2.3||||||8859/1\rMSA|AA|MSG\\F\\1\r"),
            "{ok}"
        );
        let r = Refusal::missing("PID", 3, "the patient ID");
        let nak = charset::latin1(&build(&s, Some(&h), Some(&r)));
        assert!(
            nak.contains("\rMSA|AE|MSG\\F\\1|the patient ID (PID-3) is missing"),
            "{nak}"
        );
        assert!(
            nak.contains("\rERR||PID^1^3|101^Required field missing^HL70357|E||||"),
            "{nak}"
        );
        let r = Refusal::new(AckCode::Reject, ErrorCode::SegmentSequence, "no MSH");
        let bare = String::from_utf8(build(&s, None, Some(&r))).expect("ascii");
        assert!(bare.contains("\rMSA|AR||no MSH\rERR|||100^"), "{bare}");
        assert_eq!(timestamp(0), "19700101000000");
        assert_eq!(timestamp(1_796_428_800), "20261205000000");
    }
}
