//! Which action of PS3.15 Table E.1-1 applies to a tag under a profile.

use crate::table;
use crate::{DateOption, Profile};

/// An action code of Table E.1-1a, as printed in the standard's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// D: replace with a non-zero-length dummy value consistent with the VR.
    D,
    /// Z: replace with a zero-length value (or a dummy, per the standard).
    Z,
    /// X: remove.
    X,
    /// K: keep (sequences are still walked, so their items are de-identified).
    K,
    /// C: clean (keep with identifying content removed, or dates shifted).
    C,
    /// U: replace the UID by a consistent pseudonymous UID.
    U,
    /// Z/D.
    ZD,
    /// X/Z.
    XZ,
    /// X/D.
    XD,
    /// X/Z/D.
    XZD,
    /// X/Z/U*: remove, empty, or (sequences) replace the UIDs within.
    XZU,
}

impl Code {
    /// The code as printed in the standard (e.g. "X/Z/U*").
    pub fn as_str(self) -> &'static str {
        match self {
            Code::D => "D",
            Code::Z => "Z",
            Code::X => "X",
            Code::K => "K",
            Code::C => "C",
            Code::U => "U",
            Code::ZD => "Z/D",
            Code::XZ => "X/Z",
            Code::XD => "X/D",
            Code::XZD => "X/Z/D",
            Code::XZU => "X/Z/U*",
        }
    }

    /// The single action carried out for a compound code. Without the IOD of every object at
    /// hand, the choice is the one that keeps any IOD valid whatever the attribute's type:
    /// a dummy where a value may be required (type 1), zero length where an empty value is
    /// always allowed (type 2), consistent UIDs for X/Z/U* (its sequences keep their references).
    pub fn resolve(self) -> Code {
        match self {
            Code::ZD | Code::XD | Code::XZD => Code::D,
            Code::XZ => Code::Z,
            Code::XZU => Code::U,
            other => other,
        }
    }
}

/// Attributes that are longitudinal temporal information although their VR is not DA, DT or
/// TM (timestamps encoded as bytes, the time zone offset), for the date options.
const TEMPORAL_NOT_BY_VR: &[u32] = &[
    0x0008_0201, // Timezone Offset From UTC (SH)
    0x0034_0007, // Frame Origin Timestamp (OB)
    0x0400_0310, // Certified Timestamp (OB)
];

/// DA/DT/TM attributes that describe the patient, not the timing of events, so the date
/// options do not retain them (the basic action stands).
const NOT_LONGITUDINAL: &[u32] = &[
    0x0010_0030, // Patient's Birth Date
    0x0010_0032, // Patient's Birth Time
    0x0016_0077, // GPS Time Stamp (a location trace)
];

/// The Retain UIDs column is every U and X/Z/U* row, plus and minus these rows, where the
/// standard's column differs from that rule (found by the oracle test).
const RETAIN_UIDS_ALSO: &[u32] = &[
    0x0000_1000, // Affected SOP Instance UID (X)
    0x0008_1110, // Referenced Study Sequence (X/Z)
    0x0008_1111, // Referenced Performed Procedure Step Sequence (X/Z/D)
    0x0008_1120, // Referenced Patient Sequence (X)
    0x006A_0003, // Annotation Group UID (D)
];
const RETAIN_UIDS_NOT: &[u32] = &[
    0x0040_A124, // UID (of SR content items)
    0x0400_0100, // Digital Signature UID
];

/// The basic profile's action for a tag, if the table lists it (private tags excluded: the
/// caller handles them).
pub fn basic_action(tag: u32) -> Option<Code> {
    if let Ok(i) = table::BASIC.binary_search_by_key(&tag, |row| row.0) {
        return Some(table::BASIC[i].1);
    }
    table::BASIC_MASKED
        .iter()
        .find(|(value, mask, _, _)| tag & mask == *value)
        .map(|row| row.2)
}

/// The action for a tag under a profile: the basic action, overridden by every option of the
/// profile that names the tag. Options only ever say K or C; where two apply, K (retain as is)
/// wins over C (retain cleaned), since the profile asked for the attribute to be kept.
/// `None`: not in the table (kept, except private tags, which the caller removes).
pub fn action_for(tag: u32, profile: &Profile) -> Option<Code> {
    let basic = basic_action(tag)?;
    let mut option: Option<Code> = None;
    let mut apply = |code: Code| {
        option = match (option, code) {
            (Some(Code::K), _) => Some(Code::K),
            (_, c) => Some(c),
        }
    };
    let uid_row = (matches!(basic, Code::U | Code::XZU) || RETAIN_UIDS_ALSO.contains(&tag))
        && !RETAIN_UIDS_NOT.contains(&tag);
    if profile.retain_uids && uid_row {
        apply(Code::K);
    }
    if profile.retain_longitudinal_dates != DateOption::Remove && is_longitudinal(tag) {
        apply(match profile.retain_longitudinal_dates {
            DateOption::Full => Code::K,
            _ => Code::C,
        });
    }
    let columns: [(bool, &[(u32, Code)]); 4] = [
        (profile.retain_device_identity, table::RETAIN_DEVICE),
        (
            profile.retain_institution_identity,
            table::RETAIN_INSTITUTION,
        ),
        (
            profile.retain_patient_characteristics,
            table::RETAIN_PATIENT,
        ),
        (profile.clean_descriptors, table::CLEAN_DESCRIPTORS),
    ];
    for (enabled, rows) in columns {
        if !enabled {
            continue;
        }
        if let Ok(i) = rows.binary_search_by_key(&tag, |row| row.0) {
            apply(rows[i].1);
        }
    }
    Some(option.unwrap_or(basic))
}

/// Whether a listed attribute is longitudinal temporal information (the date options' rows).
fn is_longitudinal(tag: u32) -> bool {
    if TEMPORAL_NOT_BY_VR.contains(&tag) {
        return true;
    }
    if NOT_LONGITUDINAL.contains(&tag) {
        return false;
    }
    table::BASIC
        .binary_search_by_key(&tag, |row| row.0)
        .map(|i| matches!(table::BASIC[i].2, "DA" | "DT" | "TM"))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_for_binary_search() {
        assert!(table::BASIC.windows(2).all(|w| w[0].0 < w[1].0));
        for rows in [
            table::RETAIN_DEVICE,
            table::RETAIN_INSTITUTION,
            table::RETAIN_PATIENT,
            table::CLEAN_DESCRIPTORS,
        ] {
            assert!(rows.windows(2).all(|w| w[0].0 < w[1].0));
        }
    }

    #[test]
    fn options_override_basic() {
        let mut p = Profile::basic();
        assert_eq!(action_for(0x0020_000D, &p), Some(Code::U));
        assert_eq!(action_for(0x0008_0020, &p), Some(Code::Z)); // StudyDate
        assert_eq!(action_for(0x0028_0010, &p), None); // Rows: not listed
        assert_eq!(action_for(0x6002_3000, &p), Some(Code::X)); // overlay data
        p.retain_uids = true;
        p.retain_longitudinal_dates = DateOption::Modified;
        assert_eq!(action_for(0x0020_000D, &p), Some(Code::K));
        assert_eq!(action_for(0x0008_0020, &p), Some(Code::C));
        assert_eq!(action_for(0x0010_0030, &p), Some(Code::Z)); // birth date stays
    }
}
