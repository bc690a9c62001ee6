//! QIDO-RS (PS3.18 10.6): search at study, series and instance level through the storage
//! crate's query engine (the one C-FIND uses), answered as DICOM JSON from the index.

use std::collections::BTreeSet;

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::Tag;
use dicom_dictionary_std::StandardDataDictionary;
use pacs_storage::attrs::tag_key;
use pacs_storage::query::{self, Level, MatchOptions, Matcher, Query, QueryKey};
use pacs_storage::records::{AttrValue, Attributes};
use serde::ser::{Serialize, SerializeMap};

use super::json;
use crate::error::ApiError;

/// Most results one response carries; a larger `limit` is cut to this with a Warning.
pub const MAX_RESULTS: usize = 1000;

const STUDY_UID: &str = "0020000D";
const SERIES_UID: &str = "0020000E";
const SOP_UID: &str = "00080018";
const RETRIEVE_URL: &str = "00081190";
const INSTANCE_AVAILABILITY: &str = "00080056";
const MODALITY: &str = "00080060";
const MODALITIES_IN_STUDY: &str = "00080061";

/// Attributes each level returns by default (PS3.18 Table 10.6.3-3, -4, -5).
const STUDY_DEFAULT: &[&str] = &[
    "00080005", "00080020", "00080030", "00080050", "00080056", "00080061", "00080090", "00080201",
    "00081190", "00100010", "00100020", "00100030", "00100040", "0020000D", "00200010", "00201206",
    "00201208",
];
const SERIES_DEFAULT: &[&str] = &[
    "00080060", "00080201", "0008103E", "00081190", "0020000E", "00200011", "00201209", "00400244",
    "00400245", "00400275",
];
const INSTANCE_DEFAULT: &[&str] = &[
    "00080016", "00080018", "00080056", "00080201", "00081190", "00200013", "00280008", "00280010",
    "00280011", "00280100",
];

/// A parsed QIDO-RS request.
#[derive(Debug)]
pub struct Search {
    pub query: Query,
    pub limit: usize,
    pub offset: usize,
    include_all: bool,
    include: BTreeSet<String>,
    /// Study attributes are returned too when the search spans studies.
    with_study_attributes: bool,
    /// Texts of `Warning: 299` headers (keys ignored, limits applied).
    pub warnings: Vec<String>,
    /// Which matches the caller may see (access scope), checked before paging counts them.
    admit: Admit,
}

struct Admit(Box<dyn Fn(&Attributes) -> bool + Send>);

impl std::fmt::Debug for Admit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Admit(..)")
    }
}

/// Tag and dictionary VR of a QIDO attribute name: a keyword or 8 hex digits.
fn resolve_attribute(name: &str) -> Option<(String, String)> {
    let entry = if name.len() == 8 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
        let n = u32::from_str_radix(name, 16).ok()?;
        let tag = Tag((n >> 16) as u16, (n & 0xFFFF) as u16);
        match StandardDataDictionary.by_tag(tag) {
            Some(e) => e,
            // A private or unknown tag: known by number only, matched as text.
            None => return Some((tag_key(tag), "UN".into())),
        }
    } else {
        StandardDataDictionary.by_name(name)?
    };
    let tag = entry.tag_range().inner();
    let vr = match entry.vr() {
        VirtualVr::Exact(vr) => vr.to_string().to_string(),
        VirtualVr::Xs => "US".into(),
        VirtualVr::Ox | VirtualVr::Px => "OB".into(),
        _ => "LT".into(),
    };
    Some((tag_key(tag), vr))
}

fn number(name: &str, value: &str) -> Result<usize, ApiError> {
    value.trim().parse::<usize>().map_err(|_| {
        ApiError::BadRequest(format!(
            "{name} must be a non-negative integer, got {value:?}"
        ))
    })
}

impl Search {
    /// Parse the query string of a search at `level`, with the UIDs the path fixes.
    pub fn parse(
        level: Level,
        path_keys: &[(&str, &str)],
        raw_query: &str,
        options: MatchOptions,
    ) -> Result<Search, ApiError> {
        let mut search = Search {
            query: Query {
                level,
                keys: Vec::new(),
                options,
                relational: true,
            },
            limit: MAX_RESULTS,
            offset: 0,
            include_all: false,
            include: BTreeSet::new(),
            with_study_attributes: level != Level::Study
                && !path_keys.iter().any(|(t, _)| *t == STUDY_UID),
            warnings: Vec::new(),
            admit: Admit(Box::new(|_| true)),
        };
        let mut fuzzy = false;
        let mut limit: Option<usize> = None;
        let mut raw_keys: Vec<(String, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(raw_query.as_bytes()) {
            match name.as_ref() {
                "limit" => limit = Some(number("limit", &value)?),
                "offset" => search.offset = number("offset", &value)?,
                "fuzzymatching" => {
                    fuzzy = match value.as_ref() {
                        "true" => true,
                        "false" => false,
                        v => {
                            return Err(ApiError::BadRequest(format!(
                                "fuzzymatching must be true or false, got {v:?}"
                            )))
                        }
                    }
                }
                "includefield" => {
                    for field in value.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                        if field == "all" {
                            search.include_all = true;
                        } else if field.contains('.') {
                            search.warnings.push(format!(
                                "includefield {field} names a sequence path; not supported, ignored"
                            ));
                        } else {
                            let (tag, _) = resolve_attribute(field).ok_or_else(|| {
                                ApiError::BadRequest(format!(
                                    "includefield {field:?} is neither a DICOM keyword nor a tag"
                                ))
                            })?;
                            search.include.insert(tag);
                        }
                    }
                }
                _ => raw_keys.push((name.into_owned(), value.into_owned())),
            }
        }
        if let Some(l) = limit {
            if l > MAX_RESULTS {
                search.warnings.push(format!(
                    "limit {l} exceeds the maximum of {MAX_RESULTS} results per request; {MAX_RESULTS} returned at most, page with offset"
                ));
            }
            search.limit = l.min(MAX_RESULTS);
        }
        for (tag, uid) in path_keys {
            search.query.keys.push(QueryKey {
                tag: (*tag).to_string(),
                vr: "UI".into(),
                matcher: Matcher::Single((*uid).to_string()),
            });
        }
        for (name, value) in raw_keys {
            if name.contains('.') {
                search.warnings.push(format!(
                    "query key {name} is a sequence path; sequence matching is not supported, ignored"
                ));
                continue;
            }
            let (tag, vr) = resolve_attribute(&name).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "unknown query parameter {name:?}: not a DICOM keyword, tag or QIDO-RS parameter"
                ))
            })?;
            if path_keys.iter().any(|(t, _)| *t == tag) {
                return Err(ApiError::BadRequest(format!(
                    "{name} is already given by the resource path"
                )));
            }
            if vr == "SQ" {
                search.warnings.push(format!(
                    "query key {name} is a sequence; sequence matching is not supported, ignored"
                ));
                continue;
            }
            // QIDO-RS lists UIDs with commas; the matcher takes DICOM's backslash.
            let mut value = if vr == "UI" {
                value.replace(',', "\\")
            } else {
                value
            };
            if fuzzy && vr == "PN" && !value.contains(['*', '?']) && !value.is_empty() {
                value.push('*');
            }
            if !query::is_supported(&tag) {
                search.warnings.push(format!(
                    "query key {name} is not indexed; ignored for matching"
                ));
                continue;
            }
            let matcher = Matcher::parse(&vr, &value)
                .map_err(|e| ApiError::BadRequest(format!("{name}: {e}")))?;
            search.include.insert(tag.clone());
            search.query.keys.push(QueryKey { tag, vr, matcher });
        }
        if fuzzy {
            // Fuzzy matching of person names: case-insensitive, and a name without wildcards
            // matches as a prefix ("smi" finds SMITH^JOHN).
            search.query.options.case_insensitive_names = true;
        }
        Ok(search)
    }

    /// The tags an answer holds, as numbers, for checking every attribute of every match.
    fn wanted_tags(&self) -> WantedTags {
        let defaults = match self.query.level {
            Level::Patient | Level::Study => STUDY_DEFAULT,
            Level::Series => SERIES_DEFAULT,
            Level::Image => INSTANCE_DEFAULT,
        };
        let study = if self.with_study_attributes {
            STUDY_DEFAULT
        } else {
            &[]
        };
        let mut tags: Vec<u32> = defaults
            .iter()
            .chain(study)
            .copied()
            .chain(self.include.iter().map(String::as_str))
            .filter_map(tag_number)
            .collect();
        tags.sort_unstable();
        tags.dedup();
        WantedTags {
            all: self.include_all,
            tags,
        }
    }

    /// Run the search: the page of matches as a DICOM JSON array, and whether more matched.
    /// Answer only matches `admit` lets through (before offset and limit count them).
    pub fn admit_only(&mut self, admit: impl Fn(&Attributes) -> bool + Send + 'static) {
        self.admit = Admit(Box::new(admit));
    }

    pub fn run(
        &self,
        index: &dyn pacs_storage::Index,
        base: &str,
    ) -> Result<(Vec<u8>, bool), ApiError> {
        let mut out = Vec::with_capacity(4096);
        out.push(b'[');
        let mut written = 0usize;
        let mut skipped = 0usize;
        let mut more = false;
        let mut failure = None;
        let wanted = self.wanted_tags();
        index
            .find(&self.query, &mut |m| {
                if !(self.admit.0)(&m.attributes) {
                    return true;
                }
                if skipped < self.offset {
                    skipped += 1;
                    return true;
                }
                if written == self.limit {
                    more = true;
                    return false;
                }
                if written > 0 {
                    out.push(b',');
                }
                written += 1;
                let attrs = self.complete(m.attributes, base);
                if let Err(e) = serde_json::to_writer(
                    &mut out,
                    &MatchJson {
                        wanted: &wanted,
                        attrs: &attrs,
                    },
                ) {
                    failure = Some(e);
                    return false;
                }
                true
            })
            .map_err(|e| match e {
                query::QueryError::MissingParentKey { .. } => ApiError::BadRequest(e.to_string()),
                query::QueryError::Storage(s) => ApiError::from(s),
            })?;
        if let Some(e) = failure {
            return Err(ApiError::Internal(format!("encoding search results: {e}")));
        }
        out.push(b']');
        Ok((out, more))
    }

    /// Add the attributes computed per response: RetrieveURL, InstanceAvailability, and the
    /// study's modalities as Modality when a study search asks for it (as viewers do).
    fn complete(&self, mut attrs: Attributes, base: &str) -> Attributes {
        let first = |a: &Attributes, t: &str| {
            a.get(t)
                .and_then(|v| v.first())
                .unwrap_or_default()
                .to_string()
        };
        let study = first(&attrs, STUDY_UID);
        let url = match self.query.level {
            Level::Patient | Level::Study => format!("{base}/studies/{study}"),
            Level::Series => format!(
                "{base}/studies/{study}/series/{}",
                first(&attrs, SERIES_UID)
            ),
            Level::Image => format!(
                "{base}/studies/{study}/series/{}/instances/{}",
                first(&attrs, SERIES_UID),
                first(&attrs, SOP_UID)
            ),
        };
        let text = |vr: &str, v: String| AttrValue {
            vr: vr.into(),
            values: vec![v],
        };
        attrs.insert(RETRIEVE_URL.into(), text("UR", url));
        attrs.insert(INSTANCE_AVAILABILITY.into(), text("CS", "ONLINE".into()));
        if self.query.level == Level::Study && self.include.contains(MODALITY) {
            if let Some(m) = attrs.get(MODALITIES_IN_STUDY).cloned() {
                attrs.entry(MODALITY.into()).or_insert(m);
            }
        }
        attrs
    }
}

/// A tag key (8 hex digits) as its number.
fn tag_number(tag: &str) -> Option<u32> {
    if tag.len() != 8 {
        return None;
    }
    tag.bytes().try_fold(0u32, |n, b| {
        let d = (b as char).to_digit(16)?;
        Some(n << 4 | d)
    })
}

/// Which attributes an answer holds: sorted tag numbers, so checking an attribute
/// costs a parse and a few integer comparisons, not string comparisons.
struct WantedTags {
    all: bool,
    tags: Vec<u32>,
}

impl WantedTags {
    fn contains(&self, tag: &str) -> bool {
        self.all || tag_number(tag).is_some_and(|n| self.tags.binary_search(&n).is_ok())
    }
}

/// One match as a DICOM JSON object holding the attributes the search returns.
struct MatchJson<'a> {
    wanted: &'a WantedTags,
    attrs: &'a Attributes,
}

impl Serialize for MatchJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (tag, value) in self.attrs {
            // An attribute without a value is left out rather than sent as {"vr"} alone:
            // DICOM JSON allows either, and mainstream viewers read `Value` unguarded (OHIF's
            // study list failed for every study when one had ModalitiesInStudy without it).
            if self.wanted.contains(tag) && value.values.iter().any(|v| !v.is_empty()) {
                map.serialize_entry(tag, &json::AttrJson(value))?;
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(level: Level, q: &str) -> Result<Search, ApiError> {
        Search::parse(level, &[], q, MatchOptions::default())
    }

    #[test]
    fn keys_by_keyword_or_tag_with_paging_and_includefield() {
        let s = parse(
            Level::Study,
            "PatientName=DOE*&00100020=123&limit=25&offset=50&includefield=00081030,00080060&includefield=StudyDescription",
        )
        .expect("parse");
        assert_eq!(s.limit, 25);
        assert_eq!(s.offset, 50);
        assert_eq!(s.query.keys.len(), 2);
        assert_eq!(s.query.keys[0].tag, "00100010");
        assert_eq!(s.query.keys[0].matcher, Matcher::Wildcard("DOE*".into()));
        assert_eq!(s.query.keys[1].tag, "00100020");
        let wanted = s.wanted_tags();
        for tag in ["00081030", "00080060", "00100010", "0020000D"] {
            assert!(wanted.contains(tag), "{tag}");
        }
        for tag in ["00181030", "0020000E", "", "0008103", "0008103X"] {
            assert!(!wanted.contains(tag), "{tag}");
        }
        assert!(s.warnings.is_empty());
    }

    #[test]
    fn bad_parameters_are_refused_with_a_reason() {
        for q in [
            "limit=abc",
            "offset=-1",
            "NotAKeyword=1",
            "StudyDate=2024-01-01x",
            "fuzzymatching=maybe",
            "includefield=Nope",
            "limit=99999999999999999999999",
        ] {
            let e = parse(Level::Study, q).expect_err(q);
            assert!(matches!(e, ApiError::BadRequest(_)), "{q}: {e}");
        }
    }

    #[test]
    fn fuzzy_names_uid_lists_and_capped_limits() {
        let s = parse(
            Level::Study,
            "PatientName=smi&fuzzymatching=true&StudyInstanceUID=1.2,1.3&limit=100000",
        )
        .expect("parse");
        assert_eq!(s.query.keys[0].matcher, Matcher::Wildcard("smi*".into()));
        assert!(s.query.options.case_insensitive_names);
        assert_eq!(
            s.query.keys[1].matcher,
            Matcher::UidList(vec!["1.2".into(), "1.3".into()])
        );
        assert_eq!(s.limit, MAX_RESULTS);
        assert_eq!(s.warnings.len(), 1);
    }
}
