//! Shifting DA and DT values by a whole number of days (Retain Longitudinal Temporal
//! Information with Modified Dates). Times are kept; a DT keeps its time, fraction and
//! UTC offset, only its date part moves.

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `days` days after 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn digits(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Shifts a DA value (`YYYYMMDD`, or the pre-3.0 `YYYY.MM.DD`) by `days`; the result is in
/// the standard form. `None` if the value is not a valid date (the caller then drops it
/// rather than keep a real date it could not move).
pub fn shift_da(value: &str, days: i64) -> Option<String> {
    let v = value.trim();
    let compact: String;
    let v = if v.len() == 10
        && v.as_bytes().get(4) == Some(&b'.')
        && v.as_bytes().get(7) == Some(&b'.')
    {
        compact = v.replace('.', "");
        compact.as_str()
    } else {
        v
    };
    if v.len() != 8 {
        return None;
    }
    let (y, m, d) = (digits(&v[..4])?, digits(&v[4..6])?, digits(&v[6..8])?);
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let (y, m, d) = civil_from_days(days_from_civil(y, m, d) + days);
    if !(0..=9999).contains(&y) {
        return None;
    }
    Some(format!("{y:04}{m:02}{d:02}"))
}

/// Shifts the date part of a DT value (`YYYY[MM[DD[HH[MM[SS[.F]]]]]][&ZZXX]`) by `days`,
/// keeping the rest as it is. A DT with only a year or a year and month is shifted as its
/// first day and keeps its precision.
pub fn shift_dt(value: &str, days: i64) -> Option<String> {
    let v = value.trim();
    let date_len = v.bytes().take_while(|b| b.is_ascii_digit()).count().min(8);
    let (date, rest) = v.split_at(date_len);
    let shifted = match date.len() {
        8 => shift_da(date, days)?,
        6 => shift_da(&format!("{date}01"), days)?[..6].to_owned(),
        4 => shift_da(&format!("{date}0101"), days)?[..4].to_owned(),
        _ => return None,
    };
    Some(format!("{shifted}{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn da_shifts_across_months_years_and_leap_days() {
        assert_eq!(shift_da("20240301", -1).as_deref(), Some("20240229"));
        assert_eq!(shift_da("20230301", -1).as_deref(), Some("20230228"));
        assert_eq!(shift_da("20240229", -366).as_deref(), Some("20230228"));
        assert_eq!(shift_da("20000229", 365).as_deref(), Some("20010228"));
        assert_eq!(shift_da("19000228", 1).as_deref(), Some("19000301")); // 1900: no leap day
        assert_eq!(shift_da("20000101", -1).as_deref(), Some("19991231"));
        assert_eq!(shift_da("2001.02.03", -3).as_deref(), Some("20010131"));
        assert_eq!(shift_da("20240101", 0).as_deref(), Some("20240101"));
        assert_eq!(shift_da("19700101", -3650).as_deref(), Some("19600104"));
    }

    #[test]
    fn da_rejects_invalid() {
        for bad in [
            "",
            "2024",
            "20240230",
            "20231301",
            "2024010A",
            "00000000",
            "20240229x",
        ] {
            assert_eq!(shift_da(bad, -1), None, "{bad}");
        }
        assert_eq!(shift_da("00000101", -1), None); // would leave year 0..=9999
    }

    #[test]
    fn dt_shifts_date_keeps_time_and_offset() {
        assert_eq!(
            shift_dt("20240301123456.789&+0100", -1).as_deref(),
            Some("20240229123456.789&+0100")
        );
        assert_eq!(shift_dt("20240301", -1).as_deref(), Some("20240229"));
        assert_eq!(shift_dt("202403", -1).as_deref(), Some("202402"));
        assert_eq!(shift_dt("2024", -1).as_deref(), Some("2023"));
        assert_eq!(
            shift_dt("20241231235959", 1).as_deref(),
            Some("20250101235959")
        );
        assert_eq!(shift_dt("abc", -1), None);
        assert_eq!(shift_dt("20240230", -1), None);
    }
}
