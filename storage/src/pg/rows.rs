//! The index's record tables: the searchable columns computed from a record (the same values
//! the embedded index puts in its secondary keys), and the statements that read rows one by
//! one or many at once and write many rows of one kind in one statement.

use super::conn::encode;
use crate::error::StorageError;
use crate::index::normalize_name;
use crate::records::{first_value, InstanceRecord, PatientRecord, SeriesRecord, StudyRecord};
use crate::rejection::RejectedInstance;

/// Separator of a multi-valued column on its way in (a backslash: the DICOM value delimiter,
/// never inside a CS value such as a modality).
const LIST_SEPARATOR: &str = "\\";

/// Ordered as a prefetch locks rows (the same order in every transaction, against
/// deadlocks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kind {
    Patient,
    Study,
    Series,
    Instance,
    Rejected,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Patient => "patient",
            Kind::Study => "study",
            Kind::Series => "series",
            Kind::Instance => "instance",
            Kind::Rejected => "rejected instance",
        }
    }

    pub(crate) fn table(self) -> &'static str {
        match self {
            Kind::Patient => "patients",
            Kind::Study => "studies",
            Kind::Series => "series",
            Kind::Instance => "instances",
            Kind::Rejected => "rejected",
        }
    }

    pub(crate) fn key_column(self) -> &'static str {
        match self {
            Kind::Patient => "key",
            _ => "uid",
        }
    }

    /// Searchable columns after the key, with the SQL that turns the text handed in into
    /// the column's value.
    fn columns(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Kind::Patient => &[("name_norm", "{}")],
            Kind::Study => &[
                ("patient_key", "{}"),
                ("patient_id", "{}"),
                ("name_norm", "{}"),
                ("accession", "{}"),
                ("study_date", "{}"),
                ("modalities", "string_to_array({}, '\\')"),
            ],
            Kind::Series => &[("study_uid", "{}"), ("modality", "{}")],
            Kind::Instance => &[("series_uid", "{}")],
            Kind::Rejected => &[],
        }
    }

    pub(crate) fn select(self) -> String {
        format!(
            "SELECT record FROM {} WHERE {} = $1",
            self.table(),
            self.key_column()
        )
    }

    pub(crate) fn select_for_update(self) -> String {
        format!("{} FOR UPDATE", self.select())
    }

    /// Rows of these keys, locked: `SELECT key, record` for `$1::text[]`.
    pub(crate) fn select_many_for_update(self) -> String {
        format!(
            "SELECT {k}, record FROM {t} WHERE {k} = ANY($1) ORDER BY {k} FOR UPDATE",
            t = self.table(),
            k = self.key_column()
        )
    }

    /// `u.c1, ..., u.record` over `unnest($1 keys, $2.. columns, $n records) AS u`.
    fn unnest(self) -> (String, String) {
        let n = self.columns().len();
        let mut types = vec!["$1::text[]".to_string()];
        let mut names = vec!["k".to_string()];
        for i in 0..n {
            types.push(format!("${}::text[]", i + 2));
            names.push(format!("c{i}"));
        }
        types.push(format!("${}::bytea[]", n + 2));
        names.push("rec".into());
        (
            format!("unnest({}) AS u({})", types.join(", "), names.join(", ")),
            names.join(", "),
        )
    }

    /// Insert many rows: parameters as [`Batch::params`] gives them.
    pub(crate) fn insert_many(self) -> String {
        let (unnest, _) = self.unnest();
        let mut cols = vec![self.key_column().to_string()];
        let mut values = vec!["u.k".to_string()];
        for (i, (name, expr)) in self.columns().iter().enumerate() {
            cols.push((*name).to_string());
            values.push(expr.replace("{}", &format!("u.c{i}")));
        }
        cols.push("record".into());
        values.push("u.rec".into());
        format!(
            "INSERT INTO {} ({}) SELECT {} FROM {unnest}",
            self.table(),
            cols.join(", "),
            values.join(", ")
        )
    }

    /// Update many rows: parameters as [`Batch::params`] gives them.
    pub(crate) fn update_many(self) -> String {
        let (unnest, _) = self.unnest();
        let mut sets: Vec<String> = self
            .columns()
            .iter()
            .enumerate()
            .map(|(i, (name, expr))| format!("{name} = {}", expr.replace("{}", &format!("u.c{i}"))))
            .collect();
        sets.push("record = u.rec".into());
        format!(
            "UPDATE {t} SET {} FROM {unnest} WHERE {t}.{k} = u.k",
            sets.join(", "),
            t = self.table(),
            k = self.key_column()
        )
    }

    pub(crate) fn delete_many(self) -> String {
        format!(
            "DELETE FROM {} WHERE {} = ANY($1)",
            self.table(),
            self.key_column()
        )
    }
}

/// PostgreSQL text holds no NUL; the embedded index drops them from its keys too.
fn text(v: &str) -> String {
    v.replace('\0', "")
}

/// A record's searchable columns (in the order of [`Kind::columns`]) and its bytes.
#[derive(Debug, Clone)]
pub(crate) struct RecordColumns {
    pub record: Vec<u8>,
    columns: Vec<Option<String>>,
}

impl RecordColumns {
    pub(crate) fn patient(p: &PatientRecord) -> Result<Self, StorageError> {
        let name = normalize_name(first_value(&p.attributes, "00100010"));
        Ok(RecordColumns {
            record: encode("patient", &p.key, p)?,
            columns: vec![Some(text(&name))],
        })
    }

    pub(crate) fn study(s: &StudyRecord) -> Result<Self, StorageError> {
        let patient_id = s.patient_key.split('\u{1}').next().unwrap_or("");
        let name = normalize_name(first_value(&s.attributes, "00100010"));
        let accession = first_value(&s.attributes, "00080050");
        let modalities: Vec<String> = s
            .modalities
            .iter()
            .map(|m| text(m).replace(LIST_SEPARATOR, ""))
            .collect();
        Ok(RecordColumns {
            record: encode("study", &s.study_instance_uid, s)?,
            columns: vec![
                Some(text(&s.patient_key)),
                Some(text(patient_id)),
                Some(text(&name)),
                (!accession.is_empty()).then(|| text(accession)),
                Some(text(first_value(&s.attributes, "00080020"))),
                Some(modalities.join(LIST_SEPARATOR)),
            ],
        })
    }

    pub(crate) fn series(s: &SeriesRecord) -> Result<Self, StorageError> {
        Ok(RecordColumns {
            record: encode("series", &s.series_instance_uid, s)?,
            columns: vec![
                Some(s.study_instance_uid.clone()),
                Some(text(first_value(&s.attributes, "00080060"))),
            ],
        })
    }

    pub(crate) fn instance(i: &InstanceRecord) -> Result<Self, StorageError> {
        Ok(RecordColumns {
            record: encode("instance", &i.sop_instance_uid, i)?,
            columns: vec![Some(i.series_instance_uid.clone())],
        })
    }

    pub(crate) fn rejected(r: &RejectedInstance) -> Result<Self, StorageError> {
        Ok(RecordColumns {
            record: encode("rejected instance", &r.record.sop_instance_uid, r)?,
            columns: Vec::new(),
        })
    }
}

/// Rows of one kind written by one statement, as column arrays.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    keys: Vec<String>,
    columns: Vec<Vec<Option<String>>>,
    records: Vec<Vec<u8>>,
}

impl Batch {
    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub(crate) fn push(&mut self, key: String, row: RecordColumns) {
        if self.columns.len() < row.columns.len() {
            self.columns.resize_with(row.columns.len(), Vec::new);
        }
        for (column, value) in self.columns.iter_mut().zip(row.columns) {
            column.push(value);
        }
        self.keys.push(key);
        self.records.push(row.record);
    }

    /// Keys, each column, records: the parameters of [`Kind::insert_many`] and
    /// [`Kind::update_many`].
    pub(crate) fn params(self) -> super::txn::Params {
        let mut params: super::txn::Params = vec![Box::new(self.keys)];
        for column in self.columns {
            params.push(Box::new(column));
        }
        params.push(Box::new(self.records));
        params
    }
}
