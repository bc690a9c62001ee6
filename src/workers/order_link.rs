//! Which stored studies were taken for an order: the images carry the order's Accession Number
//! (0008,0050), which the modality copied from the worklist. The index answers it by key, as it
//! does a C-FIND on AccessionNumber.

use pacs_storage::query::{Level, MatchOptions, Matcher, Query, QueryKey};
use pacs_storage::records::first_value;
use pacs_storage::Store;

use super::WorkerError;

/// Study Instance UIDs of the stored studies with this accession number (usually one).
pub fn studies_with_accession(store: &Store, accession: &str) -> Result<Vec<String>, WorkerError> {
    let accession = accession.trim();
    if accession.is_empty() {
        return Ok(Vec::new());
    }
    let query = Query {
        level: Level::Study,
        keys: vec![
            QueryKey {
                tag: "00080050".into(),
                vr: "SH".into(),
                matcher: Matcher::Single(accession.to_string()),
            },
            QueryKey {
                tag: "0020000D".into(),
                vr: "UI".into(),
                matcher: Matcher::Universal,
            },
        ],
        options: MatchOptions::default(),
        relational: false,
    };
    let mut studies = Vec::new();
    store.index.find(&query, &mut |m| {
        let uid = first_value(&m.attributes, "0020000D");
        if !uid.is_empty() {
            studies.push(uid.to_string());
        }
        true
    })?;
    Ok(studies)
}
