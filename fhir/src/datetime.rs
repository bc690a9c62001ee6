//! DICOM dates and times as FHIR dateTime. FHIR requires a zone whenever a time is given;
//! DICOM times are local times whose zone is only known from TimezoneOffsetFromUTC
//! (0008,0201) or a DT value's own suffix. Without one we send the date alone: any zone we
//! picked (ours, UTC) could move the event by hours, and a wrong time is worse than a date.

/// `+HHMM` / `-HHMM` (DICOM) as `+HH:MM` (FHIR), when it is a real offset
/// (-12:00 ..= +14:00, as FHIR's pattern allows).
pub fn fhir_offset(offset: &str) -> Option<String> {
    let o = offset.trim();
    let (sign, digits) = match o.as_bytes().first()? {
        b'+' => ('+', &o[1..]),
        b'-' => ('-', &o[1..]),
        _ => return None,
    };
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (u32, u32) = (digits[..2].parse().ok()?, digits[2..].parse().ok()?);
    let ok = m < 60 && (h < 14 || (h == 14 && m == 0)) && !(sign == '-' && h * 60 + m > 12 * 60);
    ok.then(|| format!("{sign}{:02}:{:02}", h, m))
}

/// `YYYYMMDD` as `YYYY-MM-DD`, when it is a calendar-plausible date.
pub fn fhir_date(date: &str) -> Option<String> {
    let d = date.trim();
    if d.len() != 8 || !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (m, day): (u32, u32) = (d[4..6].parse().ok()?, d[6..8].parse().ok()?);
    ((1..=12).contains(&m) && (1..=31).contains(&day))
        .then(|| format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..8]))
}

/// `HHMM[SS[.F...]]` (also the old `HH:MM:SS`) as `HH:MM:SS`; None for anything else,
/// including a bare `HH` (FHIR's time has minutes and seconds).
fn fhir_time(time: &str) -> Option<String> {
    let t: String = time
        .trim()
        .split('.')
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| *c != ':')
        .collect();
    if !matches!(t.len(), 4 | 6) || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs = if t.len() == 6 { &t[4..6] } else { "00" };
    let (h, m, s): (u32, u32, u32) = (
        t[..2].parse().ok()?,
        t[2..4].parse().ok()?,
        secs.parse().ok()?,
    );
    (h < 24 && m < 60 && s <= 60).then(|| format!("{}:{}:{secs}", &t[..2], &t[2..4]))
}

/// DICOM DA + TM + TimezoneOffsetFromUTC as a FHIR dateTime: with the zone when the offset is
/// known, else the date alone (see the module comment). None without a valid date.
pub fn fhir_datetime(date: &str, time: &str, offset: Option<&str>) -> Option<String> {
    let d = fhir_date(date)?;
    match (fhir_time(time), offset.and_then(fhir_offset)) {
        (Some(t), Some(z)) => Some(format!("{d}T{t}{z}")),
        _ => Some(d),
    }
}

/// A DICOM DT (`YYYYMMDD[HHMM[SS[.F]]][&ZZXX]`) as a FHIR dateTime: its own offset first, else
/// `offset` (TimezoneOffsetFromUTC), else the date alone.
pub fn fhir_datetime_dt(dt: &str, offset: Option<&str>) -> Option<String> {
    let dt = dt.trim();
    let (value, own) = match dt.get(8..).and_then(|rest| rest.find(['+', '-'])) {
        Some(i) => (&dt[..8 + i], Some(&dt[8 + i..])),
        None => (dt, None),
    };
    let date = value.get(..8)?;
    let time = value.get(8..).unwrap_or("");
    fhir_datetime(date, time, own.or(offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_carries_its_zone_or_is_left_out() {
        assert_eq!(
            fhir_datetime("20241105", "083015.123", Some("+0100")).as_deref(),
            Some("2024-11-05T08:30:15+01:00")
        );
        assert_eq!(
            fhir_datetime("20241105", "0830", Some("-0500")).as_deref(),
            Some("2024-11-05T08:30:00-05:00")
        );
        // No offset known: the date alone, never a zoneless time.
        assert_eq!(
            fhir_datetime("20241105", "083015", None).as_deref(),
            Some("2024-11-05")
        );
        assert_eq!(
            fhir_datetime("20241105", "", Some("+0100")).as_deref(),
            Some("2024-11-05")
        );
        assert_eq!(
            fhir_datetime("20241105", "08:30:15", Some("+0000")).as_deref(),
            Some("2024-11-05T08:30:15+00:00")
        );
        assert_eq!(fhir_datetime("2024", "0830", Some("+0100")), None);
        assert_eq!(fhir_datetime("20241305", "", None), None);
        // A malformed offset is no offset.
        assert_eq!(
            fhir_datetime("20241105", "0830", Some("+1600")).as_deref(),
            Some("2024-11-05")
        );
        assert_eq!(
            fhir_datetime("20241105", "2530", Some("+0100")).as_deref(),
            Some("2024-11-05")
        );
    }

    #[test]
    fn dt_values_use_their_own_offset_first() {
        assert_eq!(
            fhir_datetime_dt("20241107081500", Some("+0100")).as_deref(),
            Some("2024-11-07T08:15:00+01:00")
        );
        assert_eq!(
            fhir_datetime_dt("20241107081500.5-0400", Some("+0100")).as_deref(),
            Some("2024-11-07T08:15:00-04:00")
        );
        assert_eq!(
            fhir_datetime_dt("20241107081500", None).as_deref(),
            Some("2024-11-07")
        );
        assert_eq!(fhir_datetime_dt("2024", None), None);
    }

    #[test]
    fn offsets() {
        assert_eq!(fhir_offset("+0530").as_deref(), Some("+05:30"));
        assert_eq!(fhir_offset("-1200").as_deref(), Some("-12:00"));
        assert_eq!(fhir_offset("+1400").as_deref(), Some("+14:00"));
        assert_eq!(fhir_offset("-1300"), None);
        assert_eq!(fhir_offset("0100"), None);
        assert_eq!(fhir_offset("+01:00"), None);
    }
}
