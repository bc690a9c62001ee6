//! Attribute matching of PS3.4 C.2.2.2: single value, universal, wildcard, range, UID list.
//! Shared by C-FIND and (later) QIDO-RS.

/// How one query key matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    /// Empty key: every record matches; the attribute is only returned (C.2.2.2.3).
    Universal,
    /// Exact value (C.2.2.2.1).
    Single(String),
    /// Pattern with `*` and `?` (C.2.2.2.4).
    Wildcard(String),
    /// Date, time or datetime range, either end open (C.2.2.2.5).
    Range {
        lower: Option<String>,
        upper: Option<String>,
    },
    /// Any of several UIDs (C.2.2.2.2).
    UidList(Vec<String>),
}

/// Options a caller may turn on.
#[derive(Debug, Clone, Copy, Default)]
pub struct MatchOptions {
    /// Match person names regardless of case (PS3.4 C.2.2.2.1 leaves this to the SCP).
    pub case_insensitive_names: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid value {value:?} for a {vr} key: {reason}")]
pub struct MatcherError {
    pub vr: String,
    pub value: String,
    pub reason: &'static str,
}

fn is_range_vr(vr: &str) -> bool {
    matches!(vr, "DA" | "TM" | "DT")
}

impl Matcher {
    /// Build the matcher for a key's VR and (already trimmed, backslash-joined) value.
    pub fn parse(vr: &str, value: &str) -> Result<Self, MatcherError> {
        let value = value.trim_matches(|c: char| c == ' ' || c == '\0');
        if value.is_empty() {
            return Ok(Matcher::Universal);
        }
        if vr == "UI" {
            let uids: Vec<String> = value.split('\\').map(|u| u.trim().to_string()).collect();
            if uids
                .iter()
                .any(|u| u.is_empty() || !u.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
            {
                return Err(MatcherError {
                    vr: vr.into(),
                    value: value.into(),
                    reason: "a UID is digits and dots",
                });
            }
            return Ok(if uids.len() == 1 {
                Matcher::Single(uids.into_iter().next().unwrap_or_default())
            } else {
                Matcher::UidList(uids)
            });
        }
        // A DT key with a UTC offset ("...-0500") is read as a range: offsets in keys are rare,
        // ranges are common.
        if is_range_vr(vr) && value.contains('-') {
            let (lo, hi) = value.split_once('-').unwrap_or((value, ""));
            let (lo, hi) = (lo.trim(), hi.trim());
            let digits = |s: &str| {
                s.bytes()
                    .all(|b| b.is_ascii_digit() || b == b'.' || b == b'+')
            };
            if (lo.is_empty() && hi.is_empty()) || !digits(lo) || !digits(hi) {
                return Err(MatcherError {
                    vr: vr.into(),
                    value: value.into(),
                    reason: "a range is <from>-<to> with digits, either end may be empty",
                });
            }
            return Ok(Matcher::Range {
                lower: (!lo.is_empty()).then(|| lo.to_string()),
                upper: (!hi.is_empty()).then(|| hi.to_string()),
            });
        }
        if is_range_vr(vr)
            && !value
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'.' || b == b'+')
        {
            return Err(MatcherError {
                vr: vr.into(),
                value: value.into(),
                reason: "dates and times are digits",
            });
        }
        if value.contains('*') || value.contains('?') {
            return Ok(if value.chars().all(|c| c == '*') {
                Matcher::Universal
            } else {
                Matcher::Wildcard(value.to_string())
            });
        }
        Ok(Matcher::Single(value.to_string()))
    }

    /// The literal start of the values this matcher accepts, when it has one (for index scans).
    pub fn literal_prefix(&self) -> Option<&str> {
        match self {
            Matcher::Wildcard(p) => {
                let end = p.find(['*', '?']).unwrap_or(p.len());
                (end > 0).then(|| &p[..end])
            }
            _ => None,
        }
    }

    /// Does any of the record's values match? An absent attribute only matches a universal key.
    pub fn matches(&self, vr: &str, values: &[String], opts: MatchOptions) -> bool {
        if matches!(self, Matcher::Universal) {
            return true;
        }
        let fold = opts.case_insensitive_names && vr == "PN";
        values.iter().any(|v| self.matches_one(vr, v, fold))
    }

    fn matches_one(&self, vr: &str, value: &str, fold: bool) -> bool {
        match self {
            Matcher::Universal => true,
            Matcher::Single(s) if fold => s.to_uppercase() == value.to_uppercase(),
            Matcher::Single(s) => s == value,
            Matcher::UidList(list) => list.iter().any(|u| u == value),
            Matcher::Wildcard(p) if fold => wildcard(&p.to_uppercase(), &value.to_uppercase()),
            Matcher::Wildcard(p) => wildcard(p, value),
            Matcher::Range { lower, upper } => {
                let v = comparable(vr, value);
                lower.as_deref().is_none_or(|lo| v >= comparable(vr, lo))
                    && upper
                        .as_deref()
                        .is_none_or(|hi| v <= comparable_upper(vr, hi))
            }
        }
    }
}

/// Times of different precision compare by padding to full precision (C.2.2.2.5.1).
fn comparable(vr: &str, v: &str) -> String {
    match vr {
        "TM" => format!("{v:0<13}"),
        "DT" => format!("{v:0<21}"),
        _ => v.to_string(),
    }
}

/// An upper bound covers everything within its precision: "0830" includes 08:30:59.
fn comparable_upper(vr: &str, v: &str) -> String {
    match vr {
        "TM" => format!("{v:9<13}"),
        "DT" => format!("{v:9<21}"),
        _ => v.to_string(),
    }
}

/// `*` matches any run of characters, `?` exactly one (iterative, no backtracking blow-up).
pub fn wildcard(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    let (mut pi, mut vi) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(vr: &str, key: &str, value: &str) -> bool {
        Matcher::parse(vr, key).expect("parse").matches(
            vr,
            &[value.to_string()],
            MatchOptions::default(),
        )
    }

    #[test]
    fn kinds_of_matching() {
        assert!(m("LO", "", "anything"));
        assert!(m("LO", "MRN-1", "MRN-1"));
        assert!(!m("LO", "MRN-1", "MRN-12"));
        assert!(m("PN", "DOE*", "DOE^JANE"));
        assert!(m("PN", "D?E^*", "DOE^JANE"));
        assert!(!m("PN", "doe*", "DOE^JANE"));
        assert!(m("UI", "1.2.3\\1.2.4", "1.2.4"));
        assert!(!m("UI", "1.2.3\\1.2.4", "1.2.5"));
        assert!(m("DA", "20240101-20241231", "20240615"));
        assert!(!m("DA", "20240101-20241231", "20250101"));
        assert!(m("DA", "20240101-", "20300101"));
        assert!(m("DA", "-20240101", "19990101"));
        assert!(m("TM", "0800-0830", "083015"));
        assert!(!m("TM", "0800-0830", "083100"));
    }

    #[test]
    fn case_insensitive_names_are_an_option() {
        let key = Matcher::parse("PN", "doe*").expect("parse");
        let opts = MatchOptions {
            case_insensitive_names: true,
        };
        assert!(key.matches("PN", &["DOE^JANE".into()], opts));
    }

    #[test]
    fn malformed_keys_are_errors() {
        assert!(Matcher::parse("DA", "2024-01-01-x").is_err());
        assert!(Matcher::parse("DA", "yesterday").is_err());
        assert!(Matcher::parse("UI", "1.2.abc").is_err());
        assert!(Matcher::parse("DA", "-").is_err());
    }

    #[test]
    fn wildcards_do_not_blow_up() {
        assert!(!wildcard(&"*a".repeat(30), &"a".repeat(29)));
        assert_eq!(
            Matcher::parse("PN", "SMI*").expect("p").literal_prefix(),
            Some("SMI")
        );
    }
}
