//! The workers' settings: one `[workers.<name>]` target per worker module.

use serde::Deserialize;

/// A worker setting that cannot work, with the key and why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub String);

/// `[workers.*]` sections.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkersConfig {
    pub ehr: Option<TargetConfig>,
    pub billing: Option<TargetConfig>,
    pub pharmacy: Option<TargetConfig>,
    /// External AI service (DICOMweb base receiving stable series by STOW-RS).
    pub ai: Option<TargetConfig>,
    /// Patient portal receiving "results available" notices with share links.
    pub portal: Option<TargetConfig>,
    /// Built-in quality analyzers (blank/saturated images, missing slices, orientation)
    /// [default: on].
    pub quality: Option<bool>,
}

/// Where and how a worker delivers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Base URL of the target (for the EHR: its FHIR base).
    pub url: String,
    /// Bearer token sent with each request.
    pub token: Option<String>,
    /// Attempts before a delivery is dead [default: 8].
    pub max_attempts: Option<u32>,
    /// First retry delay in ms, doubled per attempt [default: 1000].
    pub backoff_ms: Option<u64>,
    /// Longest retry delay in ms [default: 300000].
    pub max_backoff_ms: Option<u64>,
    /// Time limit of one request in seconds; a target that has not answered by then fails
    /// the attempt [default: 30].
    pub timeout_secs: Option<f64>,
    /// Deliveries of different studies sent at once (a study's own are always one at a
    /// time, in order) [default: 8].
    pub max_in_flight: Option<usize>,
    /// AI only: de-identify what is sent with this `[[deid_profiles]]` profile, and put back
    /// what returns (results by STOW-RS, flags) through the pseudonym table.
    pub profile: Option<String>,
    /// AI only: the pseudonym project of those sends [default: "ai"].
    pub project: Option<String>,
}

fn enabled_by_default() -> bool {
    true
}

impl WorkersConfig {
    /// The settings, or what is wrong with them.
    pub fn checked(self) -> Result<WorkersConfig, SettingsError> {
        for (name, target) in [
            ("ehr", &self.ehr),
            ("billing", &self.billing),
            ("pharmacy", &self.pharmacy),
            ("ai", &self.ai),
            ("portal", &self.portal),
        ] {
            let Some(t) = target else { continue };
            let ok = (t.url.starts_with("http://") || t.url.starts_with("https://"))
                && t.url.len() > "https://".len();
            if !ok {
                return Err(SettingsError(format!(
                    "workers.{name}.url {:?} must be an http:// or https:// URL",
                    t.url
                )));
            }
            if t.max_attempts == Some(0) {
                return Err(SettingsError(format!(
                    "workers.{name}.max_attempts must be at least 1"
                )));
            }
            if t.timeout_secs
                .is_some_and(|s| !(s.is_finite() && s > 0.0 && s <= 86_400.0))
            {
                return Err(SettingsError(format!(
                    "workers.{name}.timeout_secs must be more than 0 and at most 86400"
                )));
            }
            if name != "ai" && (t.profile.is_some() || t.project.is_some()) {
                return Err(SettingsError(format!(
                    "workers.{name}: profile and project apply to workers.ai only"
                )));
            }
            if t.max_in_flight == Some(0) {
                return Err(SettingsError(format!(
                    "workers.{name}.max_in_flight must be at least 1"
                )));
            }
        }
        Ok(self)
    }
}
