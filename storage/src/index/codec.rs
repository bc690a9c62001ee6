//! How index values are stored by every backend: JSON (records, events, deliveries...), with
//! the kind and key named when a stored value cannot be read back.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::StorageError;

pub(crate) fn encode<T: Serialize>(
    kind: &'static str,
    key: &str,
    value: &T,
) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(value).map_err(|source| StorageError::CorruptRecord {
        kind,
        key: key.to_string(),
        source,
    })
}

pub(crate) fn decode<T: DeserializeOwned>(
    kind: &'static str,
    key: &str,
    bytes: &[u8],
) -> Result<T, StorageError> {
    serde_json::from_slice(bytes).map_err(|source| StorageError::CorruptRecord {
        kind,
        key: key.to_string(),
        source,
    })
}

/// Studies that received instances in one transaction: study → (patient key, series in
/// order of arrival), the quiet-period marks a backend writes at commit.
pub(crate) type Touched = std::collections::BTreeMap<String, (String, Vec<String>)>;

/// Note that `study` received an instance of `series`; a study already noted keeps the
/// patient key it was first noted with.
pub(crate) fn touch(touched: &mut Touched, study: &str, patient_key: &str, series: &str) {
    let (_, list) = touched
        .entry(study.to_string())
        .or_insert_with(|| (patient_key.to_string(), Vec::new()));
    if !list.iter().any(|s| s == series) {
        list.push(series.to_string());
    }
}
