//! Secondary-key lookups as SQL: the column each key of the embedded index maps to, and
//! the condition an exact, prefix or range lookup becomes.

use super::sql_limit;
use super::txn::Params;
use crate::index::{Lookup, SecondaryKey};

/// `LIKE` pattern matching values that start with `prefix`.
fn like_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars().filter(|&c| c != '\0') {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// Table, value column and UID column of a secondary key; true for the array column.
fn secondary_column(key: &SecondaryKey) -> (&'static str, &'static str, &'static str, bool, &str) {
    match key {
        SecondaryKey::StudiesByPatientId(v) => ("studies", "patient_id", "uid", false, v),
        SecondaryKey::StudiesByPatientName(v) => ("studies", "name_norm", "uid", false, v),
        SecondaryKey::StudiesByAccession(v) => ("studies", "accession", "uid", false, v),
        SecondaryKey::StudiesByDate(v) => ("studies", "study_date", "uid", false, v),
        SecondaryKey::StudiesByModality(v) => ("studies", "modalities", "uid", true, v),
        SecondaryKey::StudiesOfPatient(v) => ("studies", "patient_key", "uid", false, v),
        SecondaryKey::SeriesOfStudy(v) => ("series", "study_uid", "uid", false, v),
        SecondaryKey::SeriesByModality(v) => ("series", "modality", "uid", false, v),
        SecondaryKey::InstancesOfSeries(v) => ("instances", "series_uid", "uid", false, v),
        SecondaryKey::PatientsByName(v) => ("patients", "name_norm", "key", false, v),
    }
}

/// The WHERE clause (and its parameters, the limit last) of a secondary-key lookup.
pub(super) struct SecondaryFilter {
    pub table: &'static str,
    pub uid: &'static str,
    pub condition: String,
    pub order: String,
    pub params: Params,
    pub limit_param: usize,
}

pub(super) fn secondary_filter(
    key: &SecondaryKey,
    lookup: &Lookup,
    limit: usize,
) -> SecondaryFilter {
    let (table, column, uid, array, value) = secondary_column(key);
    let value = value.replace('\0', "");
    let (condition, order, mut params): (String, String, Params) = match (lookup, array) {
        (Lookup::Exact, false) => (format!("{column} = $1"), uid.into(), vec![Box::new(value)]),
        (Lookup::Exact, true) => (
            format!("{column} @> ARRAY[$1::text]"),
            uid.into(),
            vec![Box::new(value)],
        ),
        (Lookup::Prefix, false) => (
            format!("{column} LIKE $1"),
            format!("{column}, {uid}"),
            vec![Box::new(like_prefix(&value))],
        ),
        (Lookup::Prefix, true) => (
            format!("EXISTS (SELECT 1 FROM unnest({column}) v WHERE v LIKE $1)"),
            uid.into(),
            vec![Box::new(like_prefix(&value))],
        ),
        (Lookup::Range { upper }, false) => (
            format!("{column} >= $1 AND ($2::text IS NULL OR {column} <= $2)"),
            format!("{column}, {uid}"),
            vec![Box::new(value), Box::new(upper.clone())],
        ),
        (Lookup::Range { upper }, true) => (
            format!(
                "EXISTS (SELECT 1 FROM unnest({column}) v \
                 WHERE v >= $1 AND ($2::text IS NULL OR v <= $2))"
            ),
            uid.into(),
            vec![Box::new(value), Box::new(upper.clone())],
        ),
    };
    params.push(Box::new(sql_limit(limit)));
    SecondaryFilter {
        table,
        uid,
        condition,
        order,
        limit_param: params.len(),
        params,
    }
}
