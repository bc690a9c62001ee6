//! ADT patient changes from the EHR applied as corrections (the same code as the API's merge
//! and patient PATCH): an A40 merges the prior patient's studies into the surviving patient,
//! or renames the prior patient when the archive holds nothing of the surviving one yet; an
//! A08 sets the patient's demographics. A patient the archive has never seen is no error:
//! the EHR merges and updates far more patients than were ever imaged. Orders still on the
//! worklist follow a merge too, so the modality picks the surviving patient for images not
//! yet taken.

use pacs_hl7::adt::{PatientChange, PatientRef};
use pacs_hl7::nak::{AckCode, ErrorCode, Refusal};
use pacs_storage::audit::Interface;
use pacs_storage::corrections::{self, AttributeEdits, Corrected, CorrectionError};
use pacs_storage::orders::OrderPatient;
use pacs_storage::records::patient_key;
use pacs_storage::{StorageError, Store};
use serde_json::{json, Map, Value};

/// What a change did.
#[derive(Debug)]
pub enum Applied {
    /// The prior patient's studies now belong to the surviving patient.
    Merged(Corrected),
    /// The prior patient took the surviving patient's identity (nothing stored under it yet).
    Renamed(Corrected),
    Updated(Corrected),
    /// Nothing stored under that patient (or already merged): nothing to do.
    NothingStored,
}

impl Applied {
    pub fn action(&self, change: &PatientChange) -> &'static str {
        match (self, change) {
            (Applied::Updated(_), _) | (_, PatientChange::Update(_)) => "patient.update",
            _ => "patient.merge",
        }
    }

    pub fn detail(&self) -> String {
        match self {
            Applied::Merged(c) => format!("merged {}", c.audit_detail()),
            Applied::Renamed(c) => format!("renamed {}", c.audit_detail()),
            Applied::Updated(c) => format!("updated {}", c.audit_detail()),
            Applied::NothingStored => "nothing stored for that patient".into(),
        }
    }
}

/// The stored patient an HL7 identifier names: the exact ID and issuer, else the same ID
/// stored without an issuer (modalities often leave IssuerOfPatientID empty). Without an
/// issuer in the message, the ID must name one stored patient.
fn stored(store: &Store, id: &str, issuer: &str) -> Result<Option<String>, CorrectionError> {
    if issuer.is_empty() {
        return corrections::find_patient(store, id, None);
    }
    for key in [patient_key(id, issuer), patient_key(id, "")] {
        if store.index.patient(&key)?.is_some() {
            return Ok(Some(key));
        }
    }
    Ok(None)
}

/// DICOM JSON of the demographics the EHR sent (empty ones left out); `identity` adds
/// PatientID and IssuerOfPatientID.
fn demographics(p: &OrderPatient, identity: bool) -> Value {
    let mut m = Map::new();
    let mut put = |tag: &str, vr: &str, v: Value| {
        m.insert(tag.into(), json!({"vr": vr, "Value": [v]}));
    };
    if identity {
        put("00100020", "LO", json!(p.id));
        if !p.issuer.is_empty() {
            put("00100021", "LO", json!(p.issuer));
        }
    }
    if !p.name.is_empty() {
        put("00100010", "PN", json!({"Alphabetic": p.name}));
    }
    if !p.birth_date.is_empty() {
        put("00100030", "DA", json!(p.birth_date));
    }
    if !p.sex.is_empty() {
        put("00100040", "CS", json!(p.sex));
    }
    Value::Object(m)
}

/// Apply one change (blocking: rewrites files and commits the index).
pub fn apply(store: &Store, change: &PatientChange) -> Result<Applied, CorrectionError> {
    match change {
        PatientChange::Merge { prior, surviving } => {
            let applied = merge(store, prior, surviving)?;
            // A merge of stored patients moved the orders itself; a rename or a patient
            // never imaged still has orders to move.
            if !matches!(applied, Applied::Merged(_)) {
                corrections::follow_orders(
                    store,
                    &prior.id,
                    &prior.issuer,
                    surviving,
                    crate::hl7_intake::now_ms(),
                )?;
            }
            Ok(applied)
        }
        PatientChange::Update(p) => {
            let Some(key) = stored(store, &p.id, &p.issuer)? else {
                return Ok(Applied::NothingStored);
            };
            let body = demographics(p, false);
            if body.as_object().is_some_and(Map::is_empty) {
                return Ok(Applied::NothingStored);
            }
            let edits = AttributeEdits::from_dicom_json(&body)?;
            corrections::update_patient(store, &key, &edits, Interface::Hl7).map(Applied::Updated)
        }
    }
}

fn merge(
    store: &Store,
    prior: &PatientRef,
    surviving: &OrderPatient,
) -> Result<Applied, CorrectionError> {
    let Some(from) = stored(store, &prior.id, &prior.issuer)? else {
        return Ok(Applied::NothingStored);
    };
    match stored(store, &surviving.id, &surviving.issuer)? {
        Some(into) if into == from => Ok(Applied::NothingStored),
        Some(into) => {
            corrections::merge_patients(store, &from, &into, Interface::Hl7).map(Applied::Merged)
        }
        None => {
            let edits = AttributeEdits::from_dicom_json(&demographics(surviving, true))?;
            corrections::update_patient(store, &from, &edits, Interface::Hl7).map(Applied::Renamed)
        }
    }
}

/// How the ACK reports a correction that was not made.
pub fn refusal(e: &CorrectionError) -> Refusal {
    let text = e.to_string();
    match e {
        CorrectionError::NotFound(_) => {
            Refusal::new(AckCode::Error, ErrorCode::UnknownKey, text).at("PID", 3)
        }
        CorrectionError::Invalid(_) => {
            Refusal::new(AckCode::Error, ErrorCode::DataType, text).at("PID", 3)
        }
        // Someone corrected the same study at that moment: the sender retries.
        CorrectionError::Storage(StorageError::ChangedMeanwhile { .. }) => {
            Refusal::new(AckCode::Error, ErrorCode::RecordLocked, text)
        }
        CorrectionError::Rewrite { .. } | CorrectionError::Storage(_) => {
            Refusal::new(AckCode::Error, ErrorCode::InternalError, text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demographics_leave_out_what_the_ehr_did_not_send() {
        let p = OrderPatient {
            id: "MRN-1".into(),
            issuer: String::new(),
            name: "Roe^Ann".into(),
            birth_date: String::new(),
            sex: "F".into(),
        };
        let v = demographics(&p, true);
        let keys: Vec<&String> = v
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        assert_eq!(keys, ["00100010", "00100020", "00100040"]);
        assert_eq!(v["00100010"]["Value"][0]["Alphabetic"], "Roe^Ann");
        let v = demographics(&p, false);
        assert!(v.get("00100020").is_none());
    }
}
