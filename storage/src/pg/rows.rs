//! The index's record tables: which statement reads, inserts, updates or deletes each kind,
//! and the searchable columns computed from a record (the same values the embedded index
//! puts in its secondary keys).

use super::conn::encode;
use super::txn::Params;
use crate::error::StorageError;
use crate::index::normalize_name;
use crate::records::{first_value, InstanceRecord, PatientRecord, SeriesRecord, StudyRecord};
use crate::rejection::RejectedInstance;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

    pub(crate) fn select(self) -> &'static str {
        match self {
            Kind::Patient => "SELECT record FROM patients WHERE key = $1",
            Kind::Study => "SELECT record FROM studies WHERE uid = $1",
            Kind::Series => "SELECT record FROM series WHERE uid = $1",
            Kind::Instance => "SELECT record FROM instances WHERE uid = $1",
            Kind::Rejected => "SELECT record FROM rejected WHERE uid = $1",
        }
    }

    pub(crate) fn select_for_update(self) -> &'static str {
        match self {
            Kind::Patient => "SELECT record FROM patients WHERE key = $1 FOR UPDATE",
            Kind::Study => "SELECT record FROM studies WHERE uid = $1 FOR UPDATE",
            Kind::Series => "SELECT record FROM series WHERE uid = $1 FOR UPDATE",
            Kind::Instance => "SELECT record FROM instances WHERE uid = $1 FOR UPDATE",
            Kind::Rejected => "SELECT record FROM rejected WHERE uid = $1 FOR UPDATE",
        }
    }

    pub(crate) fn insert(self) -> &'static str {
        match self {
            Kind::Patient => "INSERT INTO patients (key, name_norm, record) VALUES ($1, $2, $3)",
            Kind::Study => {
                "INSERT INTO studies (uid, patient_key, patient_id, name_norm, accession, \
                 study_date, modalities, record) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            }
            Kind::Series => {
                "INSERT INTO series (uid, study_uid, modality, record) VALUES ($1, $2, $3, $4)"
            }
            Kind::Instance => "INSERT INTO instances (uid, series_uid, record) VALUES ($1, $2, $3)",
            Kind::Rejected => "INSERT INTO rejected (uid, record) VALUES ($1, $2)",
        }
    }

    pub(crate) fn update(self) -> &'static str {
        match self {
            Kind::Patient => "UPDATE patients SET name_norm = $2, record = $3 WHERE key = $1",
            Kind::Study => {
                "UPDATE studies SET patient_key = $2, patient_id = $3, name_norm = $4, \
                 accession = $5, study_date = $6, modalities = $7, record = $8 WHERE uid = $1"
            }
            Kind::Series => {
                "UPDATE series SET study_uid = $2, modality = $3, record = $4 WHERE uid = $1"
            }
            Kind::Instance => "UPDATE instances SET series_uid = $2, record = $3 WHERE uid = $1",
            Kind::Rejected => "UPDATE rejected SET record = $2 WHERE uid = $1",
        }
    }

    pub(crate) fn delete(self) -> &'static str {
        match self {
            Kind::Patient => "DELETE FROM patients WHERE key = $1",
            Kind::Study => "DELETE FROM studies WHERE uid = $1",
            Kind::Series => "DELETE FROM series WHERE uid = $1",
            Kind::Instance => "DELETE FROM instances WHERE uid = $1",
            Kind::Rejected => "DELETE FROM rejected WHERE uid = $1",
        }
    }
}

/// PostgreSQL text holds no NUL; the embedded index drops them from its keys too.
fn text(v: &str) -> String {
    v.replace('\0', "")
}

/// A record's columns after its key, in the order of [`Kind::insert`], and its bytes.
pub(crate) struct RecordColumns {
    pub record: Vec<u8>,
    columns: Params,
}

impl RecordColumns {
    pub(crate) fn into_params(self, key: &str) -> Params {
        let mut params: Params = Vec::with_capacity(self.columns.len() + 2);
        params.push(Box::new(key.to_string()));
        params.extend(self.columns);
        params.push(Box::new(self.record));
        params
    }

    pub(crate) fn patient(p: &PatientRecord) -> Result<Self, StorageError> {
        let name = normalize_name(first_value(&p.attributes, "00100010"));
        Ok(RecordColumns {
            record: encode("patient", &p.key, p)?,
            columns: vec![Box::new(text(&name))],
        })
    }

    pub(crate) fn study(s: &StudyRecord) -> Result<Self, StorageError> {
        let patient_id = s.patient_key.split('\u{1}').next().unwrap_or("");
        let name = normalize_name(first_value(&s.attributes, "00100010"));
        let accession = first_value(&s.attributes, "00080050");
        let accession = (!accession.is_empty()).then(|| text(accession));
        let date = first_value(&s.attributes, "00080020");
        let modalities: Vec<String> = s.modalities.iter().map(|m| text(m)).collect();
        Ok(RecordColumns {
            record: encode("study", &s.study_instance_uid, s)?,
            columns: vec![
                Box::new(text(&s.patient_key)),
                Box::new(text(patient_id)),
                Box::new(text(&name)),
                Box::new(accession),
                Box::new(text(date)),
                Box::new(modalities),
            ],
        })
    }

    pub(crate) fn series(s: &SeriesRecord) -> Result<Self, StorageError> {
        Ok(RecordColumns {
            record: encode("series", &s.series_instance_uid, s)?,
            columns: vec![
                Box::new(s.study_instance_uid.clone()),
                Box::new(text(first_value(&s.attributes, "00080060"))),
            ],
        })
    }

    pub(crate) fn instance(i: &InstanceRecord) -> Result<Self, StorageError> {
        Ok(RecordColumns {
            record: encode("instance", &i.sop_instance_uid, i)?,
            columns: vec![Box::new(i.series_instance_uid.clone())],
        })
    }

    pub(crate) fn rejected(r: &RejectedInstance) -> Result<Self, StorageError> {
        Ok(RecordColumns {
            record: encode("rejected instance", &r.record.sop_instance_uid, r)?,
            columns: Vec::new(),
        })
    }
}
