//! ER7 (pipe-and-hat) parsing behind a small API: `msg.get("PID-3.1")`.
//!
//! Why our own parser: the crates.io registry search was unavailable from this build, the
//! one maintained full parser we knew of (`hl7v2`) is AGPL, and what we need is small —
//! segments, separators from MSH-1/MSH-2, repetitions, components, subcomponents, escapes —
//! and must never panic on hostile input. Fields are kept raw (escaped) and unescaped only
//! when read, after splitting, so an escaped separator stays text.

use crate::charset::{self, Charset, CharsetError};

/// Separators declared by MSH-1 and MSH-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Separators {
    pub field: char,
    pub component: char,
    pub repetition: char,
    pub escape: Option<char>,
    pub subcomponent: Option<char>,
}

impl Default for Separators {
    fn default() -> Self {
        Separators {
            field: '|',
            component: '^',
            repetition: '~',
            escape: Some('\\'),
            subcomponent: Some('&'),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("the message does not start with an MSH segment")]
    NoMsh,
    #[error("MSH-1/MSH-2 do not declare usable separators")]
    BadSeparators,
    #[error("segment {0} has no valid three-character name")]
    BadSegmentName(usize),
    #[error(transparent)]
    Charset(#[from] CharsetError),
}

/// One segment: its name and its raw fields; `fields[n]` is field n (for MSH, field 1 is
/// the field separator and field 2 the encoding characters, as the standard counts).
#[derive(Debug, Clone)]
struct Segment {
    name: String,
    fields: Vec<String>,
}

/// A parsed message.
#[derive(Debug, Clone)]
pub struct Message {
    seps: Separators,
    charset: Charset,
    segments: Vec<Segment>,
}

/// What an ACK needs from the sender's MSH (also read from a message that fails later).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    pub sending_application: String,
    pub sending_facility: String,
    pub message_type: String,
    pub trigger: String,
    pub control_id: String,
    pub version: String,
    /// MSH-18 as sent (echoed in the ACK).
    pub charset_field: String,
    pub charset: Option<Charset>,
}

/// Split the first line (MSH) of raw bytes: (separators, MSH fields as raw byte slices).
fn msh_separators(line: &str) -> Result<Separators, ParseError> {
    let mut chars = line.chars();
    if chars.by_ref().take(3).collect::<String>() != "MSH" {
        return Err(ParseError::NoMsh);
    }
    let field = chars.next().ok_or(ParseError::BadSeparators)?;
    let enc: Vec<char> = chars.take_while(|&c| c != field).take(6).collect();
    let usable = |c: char| !c.is_alphanumeric() && !c.is_whitespace() && !c.is_control();
    if !usable(field) || !(2..=5).contains(&enc.len()) || !enc.iter().all(|&c| usable(c)) {
        return Err(ParseError::BadSeparators);
    }
    let mut all = enc.clone();
    all.push(field);
    all.sort_unstable();
    all.dedup();
    if all.len() != enc.len() + 1 {
        return Err(ParseError::BadSeparators);
    }
    Ok(Separators {
        field,
        component: enc[0],
        repetition: enc[1],
        escape: enc.get(2).copied(),
        subcomponent: enc.get(3).copied(),
    })
}

fn split_segments(text: &str) -> impl Iterator<Item = &str> {
    text.split(['\r', '\n']).filter(|l| !l.trim().is_empty())
}

impl Message {
    /// Decode (MSH-18) and parse raw bytes.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Message, ParseError> {
        // MSH-18 is read from the raw first line: its separators are ASCII in every
        // character set we accept, so a lossy view of that line is enough to find it.
        let first_end = bytes
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(bytes.len());
        let first = String::from_utf8_lossy(&bytes[..first_end]);
        let seps = msh_separators(first.trim_start())?;
        let declared = msh_field(first.trim_start(), seps, 18)
            .split(seps.repetition)
            .next()
            .unwrap_or("")
            .to_string();
        let (text, cs) = charset::decode(bytes, &declared)?;
        Message::parse(&text, cs)
    }

    /// Parse decoded text.
    pub fn parse(text: &str, charset: Charset) -> Result<Message, ParseError> {
        let text = text.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']);
        let mut lines = split_segments(text);
        let msh = lines.next().ok_or(ParseError::NoMsh)?;
        let seps = msh_separators(msh)?;
        let mut segments = Vec::new();
        for (i, line) in std::iter::once(msh).chain(lines).enumerate() {
            let name: String = line.chars().take(3).collect();
            let rest = line.get(3..).unwrap_or("");
            let name_ok = name.len() == 3
                && name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
                && (rest.is_empty() || rest.starts_with(seps.field));
            if !name_ok {
                return Err(ParseError::BadSegmentName(i + 1));
            }
            let mut fields = vec![name.clone()];
            if i == 0 {
                // MSH-1 is the separator itself; MSH-2 onwards follow it.
                fields.push(seps.field.to_string());
                fields.extend(
                    rest[seps.field.len_utf8()..]
                        .split(seps.field)
                        .map(str::to_string),
                );
            } else if !rest.is_empty() {
                fields.extend(
                    rest[seps.field.len_utf8()..]
                        .split(seps.field)
                        .map(str::to_string),
                );
            }
            segments.push(Segment { name, fields });
        }
        Ok(Message {
            seps,
            charset,
            segments,
        })
    }

    pub fn separators(&self) -> Separators {
        self.seps
    }

    pub fn charset(&self) -> Charset {
        self.charset
    }

    /// One message per ORC group (RAD-2/RAD-4 allow several orders in one message): see
    /// [`Message::groups`].
    pub fn order_groups(&self, limit: usize) -> Option<Vec<Message>> {
        self.groups("ORC", limit)
    }

    /// One message per group starting at a `start` segment (ORC for orders, PID for the
    /// patient pairs of an ADT^A40): the segments before the first group (MSH, EVN, PID, …),
    /// then that group's own segments up to the next. A message without `start` is returned
    /// whole. At most `limit` groups; `None` when there are more.
    pub fn groups(&self, start: &str, limit: usize) -> Option<Vec<Message>> {
        let is_start = |s: &Segment| s.name == start;
        let Some(first) = self.segments.iter().position(is_start) else {
            return Some(vec![self.clone()]);
        };
        let starts: Vec<usize> = (first..self.segments.len())
            .filter(|&i| is_start(&self.segments[i]))
            .collect();
        if starts.len() > limit {
            return None;
        }
        let common = &self.segments[..first];
        let groups = starts
            .iter()
            .enumerate()
            .map(|(n, &start)| {
                let end = starts.get(n + 1).copied().unwrap_or(self.segments.len());
                let mut segments = common.to_vec();
                segments.extend_from_slice(&self.segments[start..end]);
                Message {
                    seps: self.seps,
                    charset: self.charset,
                    segments,
                }
            })
            .collect();
        Some(groups)
    }

    /// Whether a segment with this name is present.
    pub fn has(&self, segment: &str) -> bool {
        self.segments.iter().any(|s| s.name == segment)
    }

    /// The raw (still escaped) field `field` of the first `segment`.
    pub fn raw_field(&self, segment: &str, field: usize) -> &str {
        self.segments
            .iter()
            .find(|s| s.name == segment)
            .and_then(|s| s.fields.get(field))
            .map_or("", String::as_str)
    }

    /// Component `comp` (1-based) of repetition `rep` (0-based) of a field, subcomponents
    /// kept raw, unescaped. Empty when absent.
    pub fn component(&self, segment: &str, field: usize, rep: usize, comp: usize) -> String {
        let raw = self.raw_field(segment, field);
        if segment == "MSH" && field <= 2 {
            return raw.to_string();
        }
        let value = raw
            .split(self.seps.repetition)
            .nth(rep)
            .and_then(|r| r.split(self.seps.component).nth(comp.saturating_sub(1)))
            .unwrap_or("");
        self.unescape(value)
    }

    /// Subcomponent `sub` (1-based) of a component.
    pub fn subcomponent(&self, segment: &str, field: usize, comp: usize, sub: usize) -> String {
        let raw = self.raw_field(segment, field);
        let value = raw
            .split(self.seps.repetition)
            .next()
            .and_then(|r| r.split(self.seps.component).nth(comp.saturating_sub(1)))
            .unwrap_or("");
        let part = match self.seps.subcomponent {
            Some(s) => value.split(s).nth(sub.saturating_sub(1)).unwrap_or(""),
            None if sub <= 1 => value,
            None => "",
        };
        self.unescape(part)
    }

    /// `"PID-3"`, `"PID-3.1"` or `"PID-3.1.2"`: the first repetition of the first segment
    /// of that name, unescaped; empty when absent or when the path is malformed.
    pub fn get(&self, path: &str) -> String {
        let Some((segment, rest)) = path.split_once('-') else {
            return String::new();
        };
        let nums: Option<Vec<usize>> = rest.split('.').map(|n| n.parse().ok()).collect();
        match nums.as_deref() {
            Some([f]) => self.component(segment, *f, 0, 1),
            Some([f, c]) => self.component(segment, *f, 0, *c),
            Some([f, c, s]) => self.subcomponent(segment, *f, *c, *s),
            _ => String::new(),
        }
    }

    /// How many repetitions a field has (0 when empty).
    pub fn repetitions(&self, segment: &str, field: usize) -> usize {
        let raw = self.raw_field(segment, field);
        if raw.is_empty() {
            0
        } else {
            raw.split(self.seps.repetition).count()
        }
    }

    /// Replace escape sequences: \F\ \S\ \T\ \R\ \E\ and \Xhh..\ (bytes in the message's
    /// character set); formatting escapes (\H\, \N\, \.br\ …) are dropped; an unterminated
    /// escape stays literal text.
    pub fn unescape(&self, value: &str) -> String {
        let Some(esc) = self.seps.escape else {
            return value.to_string();
        };
        if !value.contains(esc) {
            return value.to_string();
        }
        let mut out = String::with_capacity(value.len());
        let mut rest = value;
        while let Some(start) = rest.find(esc) {
            out.push_str(&rest[..start]);
            let after = &rest[start + esc.len_utf8()..];
            let Some(end) = after.find(esc) else {
                out.push_str(&rest[start..]);
                return out;
            };
            let seq = &after[..end];
            match seq {
                "F" => out.push(self.seps.field),
                "S" => out.push(self.seps.component),
                "R" => out.push(self.seps.repetition),
                "E" => out.push(esc),
                "T" => out.extend(self.seps.subcomponent),
                _ if seq.starts_with('X') => out.push_str(&self.hex(&seq[1..])),
                _ => {}
            }
            rest = &after[end + esc.len_utf8()..];
        }
        out.push_str(rest);
        out
    }

    fn hex(&self, digits: &str) -> String {
        let bytes: Vec<u8> = digits
            .as_bytes()
            .chunks(2)
            .filter_map(|pair| std::str::from_utf8(pair).ok())
            .filter_map(|pair| u8::from_str_radix(pair, 16).ok())
            .collect();
        match self.charset {
            Charset::Latin1 => charset::latin1(&bytes),
            Charset::Utf8 => String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// The sender's MSH fields an ACK echoes.
    pub fn header(&self) -> Header {
        Header {
            sending_application: self.get("MSH-3.1"),
            sending_facility: self.get("MSH-4.1"),
            message_type: self.get("MSH-9.1"),
            trigger: self.get("MSH-9.2"),
            control_id: self.get("MSH-10"),
            version: self.get("MSH-12.1"),
            charset_field: self.get("MSH-18"),
            charset: Some(self.charset),
        }
    }
}

/// Raw MSH field `n` of an MSH line (n >= 2).
fn msh_field(line: &str, seps: Separators, n: usize) -> &str {
    line.split(seps.field)
        .nth(n.saturating_sub(1))
        .unwrap_or("")
}

impl Header {
    /// The header of a message that could not be parsed whole (bad character set, too
    /// large): read from its first line when that is a usable MSH.
    pub fn from_prefix(bytes: &[u8]) -> Option<Header> {
        let end = bytes
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(bytes.len().min(4096));
        let line = charset::latin1(bytes.get(..end)?);
        Message::parse(&line, Charset::Latin1).ok().map(|m| Header {
            charset: None,
            ..m.header()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Message {
        Message::parse(s, Charset::Utf8).expect("parse")
    }

    #[test]
    fn fields_components_repetitions_and_escapes() {
        let m = parse(
            "MSH|^~\\&|RIS|HOSP|PACS|RAD|20261205||ORM^O01|42|P|2.3\r\
             PID|1||A1^^^H1~B2^^^H2||O\\T\\Brien\\S\\x^Ann\\F\\e\\X41\\ \\H\\hi\\N\\|",
        );
        assert_eq!(m.get("MSH-1"), "|");
        assert_eq!(m.get("MSH-2"), "^~\\&");
        assert_eq!(m.get("MSH-9.2"), "O01");
        assert_eq!(m.get("PID-3.4"), "H1");
        assert_eq!(m.component("PID", 3, 1, 1), "B2");
        assert_eq!(m.repetitions("PID", 3), 2);
        assert_eq!(m.get("PID-5.1"), "O&Brien^x");
        assert_eq!(m.get("PID-5.2"), "Ann|eA hi");
        assert_eq!(m.get("PID-99"), "");
        assert_eq!(m.get("nonsense"), "");
        assert_eq!(m.unescape("a\\Xzz"), "a\\Xzz");
    }

    #[test]
    fn other_separators_and_line_endings() {
        let m = parse("MSH#*@!%#A#B\nPID#1##X*Y*Z\r\n");
        assert_eq!(m.get("PID-3.2"), "Y");
        assert!(matches!(
            Message::parse("PID|1", Charset::Utf8),
            Err(ParseError::NoMsh)
        ));
        assert!(matches!(
            Message::parse("MSHa^~\\&a", Charset::Utf8),
            Err(ParseError::BadSeparators)
        ));
        assert!(matches!(
            Message::parse("MSH|^^\\&|", Charset::Utf8),
            Err(ParseError::BadSeparators)
        ));
        assert!(matches!(
            Message::parse("MSH|^~\\&|\rp!d|x", Charset::Utf8),
            Err(ParseError::BadSegmentName(2))
        ));
        assert!(Message::parse_bytes(b"MSH|").is_err());
        assert!(Message::parse_bytes(b"").is_err());
    }
}
