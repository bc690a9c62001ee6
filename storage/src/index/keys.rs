//! Secondary keys: `<index name> 0x00 <value> 0x00 <uid>` with an empty value, so that all
//! records matching a value (or a value prefix) are one ordered prefix scan.

use std::collections::BTreeSet;

use crate::records::{first_value, InstanceRecord, PatientRecord, SeriesRecord, StudyRecord};

const SEP: u8 = 0;

/// A lookup over one secondary index: exact value, or value prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecondaryKey {
    StudiesByPatientId(String),
    StudiesByPatientName(String),
    StudiesByAccession(String),
    StudiesByDate(String),
    StudiesByModality(String),
    StudiesOfPatient(String),
    SeriesOfStudy(String),
    SeriesByModality(String),
    InstancesOfSeries(String),
    PatientsByName(String),
}

impl SecondaryKey {
    fn parts(&self) -> (&'static str, &str) {
        match self {
            SecondaryKey::StudiesByPatientId(v) => ("st.pid", v),
            SecondaryKey::StudiesByPatientName(v) => ("st.pn", v),
            SecondaryKey::StudiesByAccession(v) => ("st.acc", v),
            SecondaryKey::StudiesByDate(v) => ("st.date", v),
            SecondaryKey::StudiesByModality(v) => ("st.mod", v),
            SecondaryKey::StudiesOfPatient(v) => ("pa.st", v),
            SecondaryKey::SeriesOfStudy(v) => ("se.st", v),
            SecondaryKey::SeriesByModality(v) => ("se.mod", v),
            SecondaryKey::InstancesOfSeries(v) => ("in.se", v),
            SecondaryKey::PatientsByName(v) => ("pa.pn", v),
        }
    }

    /// Prefix of every entry whose value equals this key's value.
    pub fn exact_prefix(&self) -> Vec<u8> {
        let mut k = self.value_prefix();
        k.push(SEP);
        k
    }

    /// Prefix of every entry whose value starts with this key's value.
    pub fn value_prefix(&self) -> Vec<u8> {
        let (name, value) = self.parts();
        let mut k = Vec::with_capacity(name.len() + value.len() + 2);
        k.extend_from_slice(name.as_bytes());
        k.push(SEP);
        k.extend(clean(value).bytes());
        k
    }

    /// The full entry for `uid` under this key.
    pub fn entry(&self, uid: &str) -> Vec<u8> {
        let mut k = self.exact_prefix();
        k.extend_from_slice(uid.as_bytes());
        k
    }
}

/// How the value of a secondary key is matched in a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Entries whose value equals the key's value.
    Exact,
    /// Entries whose value starts with the key's value.
    Prefix,
    /// Entries whose value is at least the key's value and at most `upper` (when given).
    Range { upper: Option<String> },
}

/// Value part of an entry (between the index name and the UID).
pub(crate) fn value_of_entry(entry: &[u8]) -> Option<&str> {
    let first = entry.iter().position(|&b| b == SEP)?;
    let last = entry.iter().rposition(|&b| b == SEP)?;
    (last > first).then(|| std::str::from_utf8(&entry[first + 1..last]).ok())?
}

/// Prefix shared by every entry of the key's index.
pub(crate) fn index_prefix(key: &SecondaryKey) -> Vec<u8> {
    let mut k = key.parts().0.as_bytes().to_vec();
    k.push(SEP);
    k
}

/// UID part of an entry (after the last separator).
pub(crate) fn uid_of_entry(entry: &[u8]) -> Option<&str> {
    let pos = entry.iter().rposition(|&b| b == SEP)?;
    std::str::from_utf8(&entry[pos + 1..]).ok()
}

fn clean(v: &str) -> String {
    v.replace('\0', "")
}

/// Person names are indexed upper-cased so prefix and case-insensitive matching can use them.
pub fn normalize_name(v: &str) -> String {
    v.to_uppercase()
}

pub(crate) fn study_keys(s: &StudyRecord) -> BTreeSet<Vec<u8>> {
    let uid = &s.study_instance_uid;
    let pid = s
        .patient_key
        .split('\u{1}')
        .next()
        .unwrap_or("")
        .to_string();
    let mut out = BTreeSet::new();
    out.insert(SecondaryKey::StudiesByPatientId(pid).entry(uid));
    out.insert(SecondaryKey::StudiesOfPatient(s.patient_key.clone()).entry(uid));
    let name = first_value(&s.attributes, "00100010");
    out.insert(SecondaryKey::StudiesByPatientName(normalize_name(name)).entry(uid));
    let acc = first_value(&s.attributes, "00080050");
    if !acc.is_empty() {
        out.insert(SecondaryKey::StudiesByAccession(acc.to_string()).entry(uid));
    }
    let date = first_value(&s.attributes, "00080020");
    out.insert(SecondaryKey::StudiesByDate(date.to_string()).entry(uid));
    for m in &s.modalities {
        out.insert(SecondaryKey::StudiesByModality(m.clone()).entry(uid));
    }
    out
}

pub(crate) fn series_keys(s: &SeriesRecord) -> BTreeSet<Vec<u8>> {
    let uid = &s.series_instance_uid;
    let mut out = BTreeSet::new();
    out.insert(SecondaryKey::SeriesOfStudy(s.study_instance_uid.clone()).entry(uid));
    let modality = first_value(&s.attributes, "00080060");
    out.insert(SecondaryKey::SeriesByModality(modality.to_string()).entry(uid));
    out
}

pub(crate) fn instance_keys(rec: &InstanceRecord) -> BTreeSet<Vec<u8>> {
    BTreeSet::from([
        SecondaryKey::InstancesOfSeries(rec.series_instance_uid.clone())
            .entry(&rec.sop_instance_uid),
    ])
}

pub(crate) fn patient_keys(p: &PatientRecord) -> BTreeSet<Vec<u8>> {
    let name = first_value(&p.attributes, "00100010");
    BTreeSet::from([SecondaryKey::PatientsByName(normalize_name(name)).entry(&p.key)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_sort_under_their_prefixes() {
        let k = SecondaryKey::StudiesByPatientName("DOE".into());
        let entry = SecondaryKey::StudiesByPatientName("DOE^JOHN".into()).entry("1.2.3");
        assert!(entry.starts_with(&k.value_prefix()));
        assert!(!entry.starts_with(&k.exact_prefix()));
        assert_eq!(uid_of_entry(&entry), Some("1.2.3"));
    }
}
