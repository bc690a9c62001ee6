//! RFC 6238 time-based one-time passwords as authenticator apps use them: HMAC-SHA-1, 30-second
//! steps, 6 digits; secrets travel as RFC 4648 base32 (no padding) in `otpauth://` URIs.

use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Seconds per time step (RFC 6238 default, and what authenticator apps assume).
pub const STEP_SECS: u64 = 30;
/// Digits of a code (authenticator apps' default).
pub const DIGITS: u32 = 6;
/// Length of a new secret: 160 bits, the HMAC-SHA-1 output size RFC 4226 recommends.
pub const SECRET_LEN: usize = 20;

const BASE32_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TotpError {
    #[error("the TOTP secret is empty")]
    EmptySecret,
    #[error("the TOTP secret cannot key HMAC-SHA-1")]
    Key,
    #[error("a TOTP code has 1 to 9 digits, not {0}")]
    Digits(u32),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Base32Error {
    #[error("invalid base32 character {0:?} at position {1}")]
    InvalidChar(char, usize),
    #[error("{0} base32 symbols cannot encode whole bytes")]
    BadLength(usize),
}

/// RFC 4648 base32, upper case, without `=` padding (the form `otpauth://` URIs carry).
pub fn encode_base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0u32;
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(
                BASE32_ALPHABET[((buffer >> bits) & 31) as usize],
            ));
        }
        // Only the low `bits` bits are still needed; keeps the buffer from overflowing.
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(
            BASE32_ALPHABET[((buffer << (5 - bits)) & 31) as usize],
        ));
    }
    out
}

/// Decodes base32 as people type it from a screen: case-insensitive, spaces, dashes and
/// trailing `=` padding ignored.
pub fn decode_base32(text: &str) -> Result<Vec<u8>, Base32Error> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut buffer: u32 = 0;
    let mut bits = 0u32;
    let mut symbols = 0usize;
    for (pos, c) in text.char_indices() {
        if c == ' ' || c == '-' || c == '=' {
            continue;
        }
        let value = match c.to_ascii_uppercase() {
            u @ 'A'..='Z' => u as u32 - 'A' as u32,
            d @ '2'..='7' => d as u32 - '2' as u32 + 26,
            _ => return Err(Base32Error::InvalidChar(c, pos)),
        };
        symbols += 1;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    // 1, 3 or 6 symbols in the last group of 8 cannot come from whole bytes.
    if matches!(symbols % 8, 1 | 3 | 6) {
        return Err(Base32Error::BadLength(symbols));
    }
    Ok(out)
}

/// RFC 4226 HOTP value of `counter`, `digits` long (as a number: leading zeros are the caller's).
pub fn hotp(secret: &[u8], counter: u64, digits: u32) -> Result<u32, TotpError> {
    if secret.is_empty() {
        return Err(TotpError::EmptySecret);
    }
    if !(1..=9).contains(&digits) {
        return Err(TotpError::Digits(digits));
    }
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).map_err(|_| TotpError::Key)?;
    mac.update(&counter.to_be_bytes());
    let hash = mac.finalize().into_bytes();
    // Dynamic truncation (RFC 4226 §5.3): the low nibble of the last byte picks 4 bytes.
    let offset = usize::from(hash[hash.len() - 1] & 0x0f);
    let word = u32::from_be_bytes([
        hash[offset] & 0x7f,
        hash[offset + 1],
        hash[offset + 2],
        hash[offset + 3],
    ]);
    Ok(word % 10u32.pow(digits))
}

/// The time step of a Unix time.
pub fn step_of(now_unix: u64) -> u64 {
    now_unix / STEP_SECS
}

/// The 6-digit code at step `step`, zero-padded.
pub fn generate_at_step(secret: &[u8], step: u64) -> Result<String, TotpError> {
    let value = hotp(secret, step, DIGITS)?;
    Ok(format!("{value:0width$}", width = DIGITS as usize))
}

/// The 6-digit code an authenticator shows at `now_unix`.
pub fn generate(secret: &[u8], now_unix: u64) -> Result<String, TotpError> {
    generate_at_step(secret, step_of(now_unix))
}

/// The step (current, previous or next: ±30 s of clock drift) whose code `code` is, if any.
/// Spaces in the code are ignored ("287 082"). Callers refuse a step at or before the last one
/// they accepted, so a code cannot be replayed.
pub fn verify_step(secret: &[u8], code: &str, now_unix: u64) -> Option<u64> {
    let code: String = code.chars().filter(|c| *c != ' ').collect();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = step_of(now_unix);
    let mut found = None;
    // All three candidates are computed and compared in constant time, so the time taken does
    // not tell which step (or how many digits) matched.
    for step in [
        current.saturating_sub(1),
        current,
        current.saturating_add(1),
    ] {
        let expected = match generate_at_step(secret, step) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "TOTP verification with an unusable secret");
                return None;
            }
        };
        if constant_time_eq(expected.as_bytes(), code.as_bytes()) && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// Whether `code` is the code of the current step ±1 at `now_unix`.
pub fn verify(secret: &[u8], code: &str, now_unix: u64) -> bool {
    verify_step(secret, code, now_unix).is_some()
}

/// A fresh random secret of [`SECRET_LEN`] bytes.
pub fn generate_secret() -> Result<Vec<u8>, getrandom::Error> {
    let mut secret = vec![0u8; SECRET_LEN];
    getrandom::getrandom(&mut secret)?;
    Ok(secret)
}

/// Equality whose time depends only on the lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn totp_rfc6238_appendix_b_sha1_vectors() {
        // (T, 8-digit TOTP) from RFC 6238 Appendix B, SHA-1 column.
        let vectors = [
            (59u64, 94287082u32),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
            (20000000000, 65353130),
        ];
        for (t, expected) in vectors {
            assert_eq!(hotp(RFC_SECRET, step_of(t), 8).expect("hotp"), expected);
            // The 6-digit code is the last six digits of the 8-digit one.
            let six = format!("{:06}", expected % 1_000_000);
            assert_eq!(generate(RFC_SECRET, t).expect("generate"), six, "T={t}");
            assert!(verify(RFC_SECRET, &six, t));
        }
        assert_eq!(generate(RFC_SECRET, 59).expect("generate"), "287082");
        assert_eq!(
            generate(RFC_SECRET, 1111111109).expect("generate"),
            "081804"
        );
        assert_eq!(
            generate(RFC_SECRET, 1234567890).expect("generate"),
            "005924"
        );
    }

    #[test]
    fn totp_rfc4226_hotp_vectors() {
        // RFC 4226 Appendix D, counters 0..9.
        let expected = [
            755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489,
        ];
        for (counter, value) in expected.into_iter().enumerate() {
            assert_eq!(hotp(RFC_SECRET, counter as u64, 6).expect("hotp"), value);
        }
    }

    #[test]
    fn totp_verify_accepts_one_step_of_drift_and_no_more() {
        let t = 1234567890;
        let code = generate(RFC_SECRET, t).expect("generate");
        assert_eq!(verify_step(RFC_SECRET, &code, t), Some(step_of(t)));
        assert!(verify(RFC_SECRET, &code, t - STEP_SECS));
        assert!(verify(RFC_SECRET, &code, t + STEP_SECS));
        assert!(!verify(RFC_SECRET, &code, t - 2 * STEP_SECS));
        assert!(!verify(RFC_SECRET, &code, t + 2 * STEP_SECS));
        // The verifier reports which step matched, so callers can refuse replays.
        assert_eq!(
            verify_step(RFC_SECRET, &code, t + STEP_SECS),
            Some(step_of(t))
        );
    }

    #[test]
    fn totp_verify_refuses_malformed_codes() {
        let t = 59;
        assert!(verify(RFC_SECRET, "287 082", t));
        for bad in [
            "",
            "28708",
            "2870820",
            "28708a",
            "94287082",
            "+87082",
            "２８７０８２",
        ] {
            assert!(!verify(RFC_SECRET, bad, t), "{bad:?}");
        }
        assert!(!verify(b"", "287082", t));
        assert!(!verify(b"another secret", "287082", t));
    }

    #[test]
    fn totp_step_zero_does_not_underflow() {
        let code = generate(RFC_SECRET, 0).expect("generate");
        assert!(verify(RFC_SECRET, &code, 0));
    }

    #[test]
    fn totp_base32_rfc4648_vectors() {
        let vectors = [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(encode_base32(plain.as_bytes()), encoded);
            assert_eq!(decode_base32(encoded).expect("decode"), plain.as_bytes());
        }
        // Padded, lower case and grouped forms decode too.
        assert_eq!(decode_base32("MZXW6YQ=").expect("padded"), b"foob");
        assert_eq!(decode_base32("mzxw 6ytb oi").expect("grouped"), b"foobar");
        assert_eq!(
            decode_base32("MZ1W").expect_err("bad char"),
            Base32Error::InvalidChar('1', 2)
        );
        assert_eq!(
            decode_base32("MZX").expect_err("bad length"),
            Base32Error::BadLength(3)
        );
    }

    #[test]
    fn totp_secret_round_trips_through_base32() {
        let secret = generate_secret().expect("random");
        assert_eq!(secret.len(), SECRET_LEN);
        let text = encode_base32(&secret);
        assert_eq!(text.len(), 32);
        assert_eq!(decode_base32(&text).expect("decode"), secret);
        assert_eq!(
            encode_base32(RFC_SECRET),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
    }
}
