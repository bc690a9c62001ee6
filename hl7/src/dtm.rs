//! HL7 DTM `YYYY[MM[DD[HH[MM[SS[.S…]]]]]][+/-ZZZZ]` to the DICOM start date and time.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an HL7 date/time YYYYMMDD[HHMM[SS]]")]
pub struct DtmError(pub String);

/// (`YYYYMMDD`, `HHMMSS` or empty). The zone is dropped: the worklist schedules in the
/// site's local time, which is what the EHR means.
pub fn start(value: &str) -> Result<(String, String), DtmError> {
    let bad = || DtmError(value.to_string());
    let v = value.trim();
    let v = v.split(['+', '-']).next().unwrap_or("");
    let v = v.split('.').next().unwrap_or("");
    if !v.bytes().all(|b| b.is_ascii_digit()) || ![8, 10, 12, 14].contains(&v.len()) {
        return Err(bad());
    }
    let n = |r: std::ops::Range<usize>| v.get(r).and_then(|s| s.parse::<u32>().ok());
    let ok = matches!(n(4..6), Some(1..=12))
        && matches!(n(6..8), Some(1..=31))
        && n(8..10).is_none_or(|h| h < 24)
        && n(10..12).is_none_or(|m| m < 60)
        && n(12..14).is_none_or(|s| s < 60);
    if !ok {
        return Err(bad());
    }
    let time = if v.len() > 8 {
        format!("{:0<6}", &v[8..])
    } else {
        String::new()
    };
    Ok((v[..8].to_string(), time))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_times_fractions_zones() {
        let s = |v: &str| start(v).map(|(d, t)| format!("{d} {t}"));
        assert_eq!(s("20261205"), Ok("20261205 ".into()));
        assert_eq!(s("202612050930"), Ok("20261205 093000".into()));
        assert_eq!(s("20261205093015.123+0100"), Ok("20261205 093015".into()));
        assert_eq!(s("2026120509-0500"), Ok("20261205 090000".into()));
        for bad in ["", "2026", "20261305", "20261205 0930", "2026120525", "x"] {
            assert!(start(bad).is_err(), "{bad}");
        }
    }
}
