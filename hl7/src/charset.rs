//! MSH-18 Character Set: how the message's bytes are decoded, and the DICOM Specific
//! Character Set (0008,0005) the order keeps for the worklist.

/// The encodings an order may arrive in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    Utf8,
    Latin1,
}

impl Charset {
    /// DICOM Specific Character Set term.
    pub fn dicom(self) -> &'static str {
        match self {
            Charset::Utf8 => "ISO_IR 192",
            Charset::Latin1 => "ISO_IR 100",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CharsetError {
    #[error("character set {0:?} (MSH-18) is not supported; use UNICODE UTF-8 or 8859/1")]
    Unsupported(String),
    #[error("the message declares UTF-8 (MSH-18) but is not valid UTF-8")]
    InvalidUtf8(#[source] std::str::Utf8Error),
}

/// Decode `bytes` as MSH-18 (`declared`, first repetition) says. Without a declaration (or
/// ASCII) valid UTF-8 is taken as UTF-8 and anything else as Latin-1, which is what EHRs
/// that leave MSH-18 empty send in practice.
pub fn decode(bytes: &[u8], declared: &str) -> Result<(String, Charset), CharsetError> {
    match declared.trim().to_ascii_uppercase().as_str() {
        "UNICODE UTF-8" | "UNICODE" | "UTF-8" => std::str::from_utf8(bytes)
            .map(|s| (s.to_string(), Charset::Utf8))
            .map_err(CharsetError::InvalidUtf8),
        "8859/1" => Ok((latin1(bytes), Charset::Latin1)),
        "" | "ASCII" => Ok(match std::str::from_utf8(bytes) {
            Ok(s) => (s.to_string(), Charset::Utf8),
            Err(_) => (latin1(bytes), Charset::Latin1),
        }),
        other => Err(CharsetError::Unsupported(other.to_string())),
    }
}

/// Every byte is the code point of the same value in ISO 8859-1.
pub fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// Encode text for a reply in `charset` (characters Latin-1 cannot hold become '?').
pub fn encode(text: &str, charset: Charset) -> Vec<u8> {
    match charset {
        Charset::Utf8 => text.as_bytes().to_vec(),
        Charset::Latin1 => text
            .chars()
            .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_and_guessed() {
        assert_eq!(
            decode(b"M\xfcller", "8859/1").map(|(s, c)| (s, c.dicom())),
            Ok(("Müller".to_string(), "ISO_IR 100"))
        );
        assert!(matches!(
            decode(b"M\xfcller", "UNICODE UTF-8"),
            Err(CharsetError::InvalidUtf8(_))
        ));
        assert_eq!(
            decode(b"M\xfcller", "").map(|(_, c)| c),
            Ok(Charset::Latin1)
        );
        assert_eq!(
            decode("Müller".as_bytes(), "").map(|(_, c)| c),
            Ok(Charset::Utf8)
        );
        assert!(matches!(
            decode(b"x", "ISO IR87"),
            Err(CharsetError::Unsupported(_))
        ));
        assert_eq!(encode("Müller€", Charset::Latin1), b"M\xfcller?");
    }
}
