//! Re-identification of what comes back from a de-identified send (the AI service's results):
//! UIDs and patient pseudonyms of one pseudonym project are looked up in the pseudonym
//! table and replaced by what they stand for, so a returned SR or SEG lands in the original
//! study under the real patient, and a flag on the original study.

use std::collections::HashMap;
use std::path::Path;

use dicom_core::value::{PrimitiveValue, Value};
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::tags;
use dicom_object::{InMemDicomObject, OpenFileOptions};
use pacs_storage::records::first_value;
use pacs_storage::{IngestError, StorageError, Store};

/// Nesting followed at most (a returned SR is a few levels deep).
const MAX_DEPTH: usize = 32;

pub struct Reidentifier<'a> {
    store: &'a Store,
    project: &'a str,
    cache: HashMap<(String, &'static str), Option<String>>,
}

impl<'a> Reidentifier<'a> {
    pub fn new(store: &'a Store, project: &'a str) -> Self {
        Reidentifier {
            store,
            project,
            cache: HashMap::new(),
        }
    }

    fn original(
        &mut self,
        replacement: &str,
        kind: &'static str,
    ) -> Result<Option<String>, StorageError> {
        let key = (replacement.to_string(), kind);
        if let Some(hit) = self.cache.get(&key) {
            return Ok(hit.clone());
        }
        let found = self
            .store
            .pseudonyms
            .reidentify(self.project, replacement)?
            .into_iter()
            .find(|e| e.kind == kind)
            .map(|e| e.original);
        self.cache.insert(key, found.clone());
        Ok(found)
    }

    /// The original of a UID handed out in this project.
    pub fn uid(&mut self, replacement: &str) -> Result<Option<String>, StorageError> {
        self.original(replacement, "uid")
    }

    /// Replace every known pseudonymous UID in the data set (sequences included) and, when
    /// the PatientID is a pseudonym of this project, the patient attributes by the stored
    /// patient's. Returns how many values were replaced.
    pub fn dataset(&mut self, obj: &mut InMemDicomObject) -> Result<usize, StorageError> {
        let mut replaced = self.uids(obj, 0)?;
        let pseudonym = obj
            .get(tags::PATIENT_ID)
            .and_then(|e| e.value().to_str().ok())
            .map(|v| v.trim_end_matches(['\0', ' ']).to_string());
        if let Some(key) = pseudonym
            .as_deref()
            .map(|p| self.original(p, "patient-id"))
            .transpose()?
            .flatten()
        {
            // The pseudonym table names a patient as PatientID[^^^Issuer] (as HL7 CX does).
            let (id, issuer) = key.split_once("^^^").unwrap_or((key.as_str(), ""));
            let key = pacs_storage::records::patient_key(id, issuer);
            if let Some(patient) = self.store.index.patient(&key)? {
                for (tag, vr, hex) in [
                    (tags::PATIENT_ID, VR::LO, "00100020"),
                    (tags::ISSUER_OF_PATIENT_ID, VR::LO, "00100021"),
                    (tags::PATIENT_NAME, VR::PN, "00100010"),
                    (tags::PATIENT_BIRTH_DATE, VR::DA, "00100030"),
                    (tags::PATIENT_SEX, VR::CS, "00100040"),
                ] {
                    let value = first_value(&patient.attributes, hex);
                    obj.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
                }
                // It names the patient again.
                obj.remove_element(tags::PATIENT_IDENTITY_REMOVED);
                obj.remove_element(tags::DEIDENTIFICATION_METHOD);
                obj.remove_element(tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE);
                replaced += 1;
            }
        }
        Ok(replaced)
    }

    fn uids(&mut self, obj: &mut InMemDicomObject, depth: usize) -> Result<usize, StorageError> {
        if depth > MAX_DEPTH {
            return Ok(0);
        }
        let mut replaced = 0;
        let tags_here: Vec<_> = obj.iter().map(|e| e.header().tag).collect();
        for tag in tags_here {
            let Some(elem) = obj.get(tag) else { continue };
            match (elem.vr(), elem.value()) {
                (VR::UI, Value::Primitive(p)) => {
                    let text = p.to_str();
                    let mut values: Vec<String> = text
                        .split('\\')
                        .map(|v| v.trim_end_matches(['\0', ' ']).to_string())
                        .collect();
                    let mut changed = false;
                    for v in values.iter_mut() {
                        if let Some(original) = self.uid(v)? {
                            *v = original;
                            changed = true;
                        }
                    }
                    if changed {
                        replaced += 1;
                        obj.put(DataElement::new(
                            tag,
                            VR::UI,
                            PrimitiveValue::from(values.join("\\")),
                        ));
                    }
                }
                (VR::SQ, Value::Sequence(_)) => {
                    let Some(mut elem) = obj.take_element(tag).ok() else {
                        continue;
                    };
                    if let Some(items) = elem.items_mut() {
                        for item in items.iter_mut() {
                            replaced += self.uids(item, depth + 1)?;
                        }
                    }
                    obj.put(elem);
                }
                _ => {}
            }
        }
        Ok(replaced)
    }
}

/// Re-identify a staged Part 10 file in place (checked for sane lengths first); whether
/// anything changed.
pub fn reidentify_file(store: &Store, project: &str, path: &Path) -> Result<bool, IngestError> {
    pacs_storage::lengths::check_part10_file(path)
        .map_err(|e| IngestError::Unparseable(e.to_string()))?;
    let mut file = OpenFileOptions::new()
        .open_file(path)
        .map_err(|e| IngestError::Unparseable(pacs_storage::error_chain(&e)))?;
    let replaced = Reidentifier::new(store, project).dataset(&mut file)?;
    if replaced == 0 {
        return Ok(false);
    }
    let io = |source| StorageError::Io {
        context: "re-identifying",
        path: path.to_path_buf(),
        source,
    };
    // The same inode, so the staged file's handle (synced when it is kept) still names it.
    let out = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(io)?;
    let mut out = std::io::BufWriter::new(out);
    file.write_all(&mut out)
        .map_err(|e| IngestError::Unparseable(format!("writing the re-identified file: {e}")))?;
    std::io::Write::flush(&mut out).map_err(io)?;
    Ok(true)
}
