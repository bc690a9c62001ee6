//! `[[routes]]`: forwarding rules. When a study (or a series) is stable and matches a rule's
//! conditions, it goes to a configured node by C-STORE or to a DICOMweb endpoint by STOW-RS,
//! optionally de-identified or in another transfer syntax, delivered by the dispatcher like
//! every worker (retries, dead letters, `/api/events?worker=route-<name>`).

use std::collections::BTreeMap;

use dicom_core::dictionary::DataDictionary;
use dicom_dictionary_std::StandardDataDictionary;
use serde::Deserialize;

use super::settings::{SettingsError, TargetConfig};

/// When a rule looks at what arrived.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouteTrigger {
    /// Once per study, after its quiet period (StudyStable).
    #[default]
    StudyStable,
    /// Once per series, after its quiet period (SeriesStable).
    SeriesStable,
}

/// One `[[routes]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Letters, digits, `-` and `_`; the worker is `route-<name>`.
    pub name: String,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    #[serde(default)]
    pub on: RouteTrigger,
    /// Any of these modalities (ModalitiesInStudy for a study, Modality for a series).
    #[serde(default)]
    pub modality: Vec<String>,
    /// Any of these calling AE titles sent an instance of it.
    #[serde(default)]
    pub calling_ae: Vec<String>,
    /// Attribute (keyword or `GGGGEEEE`) → value with `*` and `?` wildcards, compared
    /// case-insensitively with the study's attributes or those of one of its series.
    #[serde(default, alias = "tags")]
    pub tag: BTreeMap<String, String>,
    /// The AE title of a `[[nodes]]` entry: sent by C-STORE.
    pub to: Option<String>,
    /// A DICOMweb base URL: sent by STOW-RS.
    pub stow: Option<String>,
    /// Bearer token for `stow`.
    pub token: Option<String>,
    /// De-identify with this `[[deid_profiles]]` profile on the way out.
    pub profile: Option<String>,
    /// Pseudonym project of the de-identification [default: "default"].
    pub project: Option<String>,
    /// C-STORE in this transfer syntax (re-encoded or decompressed as C-MOVE does)
    /// [default: as stored].
    pub transfer_syntax: Option<String>,
    pub max_attempts: Option<u32>,
    pub backoff_ms: Option<u64>,
    pub max_backoff_ms: Option<u64>,
    pub timeout_secs: Option<f64>,
    pub max_in_flight: Option<usize>,
}

fn enabled_by_default() -> bool {
    true
}

impl RouteConfig {
    /// The worker's name in the outbox and the events API.
    pub fn worker_name(&self) -> String {
        format!("route-{}", self.name)
    }

    /// The retry settings, in the shape every worker target has.
    pub fn target(&self) -> TargetConfig {
        TargetConfig {
            enabled: self.enabled,
            url: self
                .stow
                .clone()
                .or_else(|| self.to.as_ref().map(|ae| format!("dicom:{ae}")))
                .unwrap_or_default(),
            token: self.token.clone(),
            max_attempts: self.max_attempts,
            backoff_ms: self.backoff_ms,
            max_backoff_ms: self.max_backoff_ms,
            timeout_secs: self.timeout_secs,
            max_in_flight: self.max_in_flight.or(Some(2)),
            profile: None,
            project: None,
        }
    }

    /// The attribute conditions with their tags as 8 hex digits.
    pub fn tag_conditions(&self) -> Result<Vec<(String, String)>, SettingsError> {
        self.tag
            .iter()
            .map(|(k, v)| {
                Ok((
                    tag_key(k).ok_or_else(|| {
                        self.error(format!("tag: {k:?} is neither a keyword nor GGGGEEEE"))
                    })?,
                    v.clone(),
                ))
            })
            .collect()
    }

    fn error(&self, what: String) -> SettingsError {
        SettingsError(format!("routes {:?}: {what}", self.name))
    }

    /// What cannot work, checked at start: names, exactly one target, known node and
    /// profile, bounds.
    pub fn check(&self, nodes: &[String], profiles: &[String]) -> Result<(), SettingsError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 32
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err(self.error("name must be 1 to 32 letters, digits, '-' or '_'".into()));
        }
        match (&self.to, &self.stow) {
            (Some(ae), None) if !nodes.contains(ae) => {
                return Err(self.error(format!(
                    "to {ae:?} is not the AE title of a [[nodes]] entry"
                )))
            }
            (None, Some(url)) => {
                let parsed = reqwest::Url::parse(url)
                    .map_err(|e| self.error(format!("stow {url:?}: {e}")))?;
                if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                    return Err(self.error(format!("stow {url:?} is not an http(s) URL")));
                }
            }
            (Some(_), None) => {}
            _ => return Err(self.error("needs exactly one of to (a node) and stow (a URL)".into())),
        }
        if let Some(p) = &self.profile {
            if !profiles.contains(p) {
                return Err(self.error(format!(
                    "profile {p:?} is not a configured de-identification profile ({})",
                    profiles.join(", ")
                )));
            }
        }
        if self.transfer_syntax.is_some() && self.stow.is_some() {
            return Err(self.error("transfer_syntax applies to C-STORE routes (to) only".into()));
        }
        if let Some(ts) = &self.transfer_syntax {
            // We decode and re-encode; we do not compress.
            if !pacs_storage::transcode::is_native(ts) {
                return Err(self.error(format!(
                    "transfer_syntax {ts:?} is not an uncompressed transfer syntax \
                     (implicit or explicit VR little endian, explicit big endian, deflated)"
                )));
            }
        }
        if self.max_attempts == Some(0) || self.max_in_flight == Some(0) {
            return Err(self.error("max_attempts and max_in_flight must be at least 1".into()));
        }
        if self
            .timeout_secs
            .is_some_and(|s| !(s.is_finite() && s > 0.0 && s <= 86_400.0))
        {
            return Err(self.error("timeout_secs must be more than 0 and at most 86400".into()));
        }
        self.tag_conditions()?;
        Ok(())
    }
}

/// `GGGGEEEE` or a dictionary keyword, as the 8 hex digits the index keys attributes by.
fn tag_key(key: &str) -> Option<String> {
    if key.len() == 8 && key.chars().all(|c| c.is_ascii_hexdigit()) {
        return Some(key.to_ascii_uppercase());
    }
    let entry = StandardDataDictionary.by_name(key)?;
    let tag = entry.tag.inner();
    Some(format!("{:04X}{:04X}", tag.group(), tag.element()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(toml: &str) -> RouteConfig {
        toml::from_str(toml).expect("route")
    }

    #[test]
    fn routes_are_checked_at_start() {
        let nodes = vec!["READING".to_string()];
        let profiles = vec!["basic".to_string()];
        let ok = route("name = \"ct\"\nto = \"READING\"\nmodality = [\"CT\"]\ntag = { StudyDescription = \"*HEAD*\", \"00180015\" = \"HEAD\" }");
        ok.check(&nodes, &profiles).expect("valid");
        assert_eq!(
            ok.tag_conditions().expect("tags"),
            [
                ("00180015".to_string(), "HEAD".to_string()),
                ("00081030".to_string(), "*HEAD*".to_string())
            ]
        );
        for (bad, why) in [
            ("name = \"a b\"\nto = \"READING\"", "name"),
            ("name = \"x\"\nto = \"ELSEWHERE\"", "[[nodes]]"),
            ("name = \"x\"", "exactly one"),
            (
                "name = \"x\"\nto = \"READING\"\nstow = \"http://h/d\"",
                "exactly one",
            ),
            ("name = \"x\"\nstow = \"ftp://h/d\"", "http(s)"),
            (
                "name = \"x\"\nto = \"READING\"\nprofile = \"research\"",
                "profile",
            ),
            (
                "name = \"x\"\nstow = \"http://h/\"\ntransfer_syntax = \"1.2.840.10008.1.2\"",
                "C-STORE",
            ),
            (
                "name = \"x\"\nto = \"READING\"\ntransfer_syntax = \"1.2.840.10008.1.2.4.50\"",
                "uncompressed",
            ),
            (
                "name = \"x\"\nto = \"READING\"\ntag = { NoSuchKeyword = \"1\" }",
                "keyword",
            ),
        ] {
            let e = route(bad)
                .check(&nodes, &profiles)
                .expect_err(bad)
                .to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
