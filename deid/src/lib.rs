//! De-identification of DICOM objects per DICOM PS3.15 Annex E: the Basic Application Level
//! Confidentiality Profile (Table E.1-1) and its options, as named [`Profile`]s.
//!
//! The action table ([`actions::action_for`]) is data generated from two PyPI packages (see
//! `tools/gen_table.py`) and checked against an independent copy of Table E.1-1 by
//! `tests/oracle.rs` on real multi-vendor files.
//!
//! What is and is not done:
//! - Compound action codes resolve to the alternative that keeps any IOD valid (see
//!   [`actions::Code::resolve`]): Z/D, X/D, X/Z/D give a dummy, X/Z gives zero length, X/Z/U*
//!   keeps the sequence with its UIDs replaced.
//! - D on a sequence keeps the sequence and de-identifies its items (the table then applies to
//!   every attribute inside), which keeps e.g. an SR's Content Sequence structurally valid.
//! - Patient ID and Patient's Name (Z in the table) get the pseudonyms of [`Pseudonyms::patient`]
//!   instead of zero length, so the pseudonym table can re-identify.
//! - Retain Safe Private (113111): no private attribute is known safe here (the standard's list
//!   of safe private attributes, PS3.15 E.3.10, is per creator and not machine-readable), so
//!   every private attribute is removed, with or without the option. The option is still
//!   named in the method code sequence: keeping none of the safe attributes conforms to it.
//! - Clean (C) on text keeps the text with every occurrence of the object's own identifiers
//!   (patient names and IDs, accession number, physicians' and operators' names, and
//!   institution and station names unless retained) masked; it cannot recognise identifying
//!   text that the object does not name elsewhere.
//! - Not covered: burned-in pixel text (Clean Pixel Data), Clean Graphics / Structured Content
//!   options, overlays stored in pixel data's unused bits.

#![forbid(unsafe_code)]

pub mod actions;
mod dates;
mod engine;
mod pseudonyms;
mod table;

pub use dates::{shift_da, shift_dt};
pub use engine::{deidentify, deidentify_file, MAX_DEPTH};
pub use pseudonyms::{
    patient_key, HashedPseudonyms, Mapping, MappingKind, PatientPseudonym, Pseudonyms,
    MAX_DATE_OFFSET_DAYS,
};

/// What to do with longitudinal temporal information (dates and times of events).
#[derive(Debug, Clone, Copy, Default, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DateOption {
    /// The basic profile's action (most dates removed or emptied).
    #[default]
    Remove,
    /// Retain Longitudinal Temporal Information with Full Dates Option (113106).
    Full,
    /// Retain Longitudinal Temporal Information with Modified Dates Option (113107): dates
    /// shifted by the patient's offset ([`Pseudonyms::date_offset_days`]), times kept.
    Modified,
}

/// A named de-identification profile: the basic profile and the options it adds.
#[derive(Debug, Clone, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The name the configuration refers to it by.
    pub name: String,
    /// Retain UIDs Option (113110).
    #[serde(default)]
    pub retain_uids: bool,
    /// Retain Device Identity Option (113109).
    #[serde(default)]
    pub retain_device_identity: bool,
    /// Retain Patient Characteristics Option (113108).
    #[serde(default)]
    pub retain_patient_characteristics: bool,
    /// Retain Institution Identity Option (113112).
    #[serde(default)]
    pub retain_institution_identity: bool,
    /// Retain Longitudinal Temporal Information: "remove" (basic), "full" (113106) or
    /// "modified" (113107).
    #[serde(default)]
    pub retain_longitudinal_dates: DateOption,
    /// Clean Descriptors Option (113105).
    #[serde(default)]
    pub clean_descriptors: bool,
    /// Retain Safe Private Option (113111); no private attribute is kept (see the crate docs).
    #[serde(default)]
    pub retain_safe_private: bool,
}

impl Profile {
    /// The basic profile, named "basic", with no option.
    pub fn basic() -> Profile {
        Profile {
            name: "basic".to_owned(),
            retain_uids: false,
            retain_device_identity: false,
            retain_patient_characteristics: false,
            retain_institution_identity: false,
            retain_longitudinal_dates: DateOption::Remove,
            clean_descriptors: false,
            retain_safe_private: false,
        }
    }

    /// The CID 7050 codes (scheme DCM) of the profile and each option it uses, with their
    /// code meanings: the basic profile first.
    pub fn method_codes(&self) -> Vec<(&'static str, &'static str)> {
        let mut codes = vec![("113100", "Basic Application Confidentiality Profile")];
        let options = [
            (self.clean_descriptors, "113105", "Clean Descriptors Option"),
            (
                self.retain_longitudinal_dates == DateOption::Full,
                "113106",
                "Retain Longitudinal Temporal Information Full Dates Option",
            ),
            (
                self.retain_longitudinal_dates == DateOption::Modified,
                "113107",
                "Retain Longitudinal Temporal Information Modified Dates Option",
            ),
            (
                self.retain_patient_characteristics,
                "113108",
                "Retain Patient Characteristics Option",
            ),
            (
                self.retain_device_identity,
                "113109",
                "Retain Device Identity Option",
            ),
            (self.retain_uids, "113110", "Retain UIDs Option"),
            (
                self.retain_safe_private,
                "113111",
                "Retain Safe Private Option",
            ),
            (
                self.retain_institution_identity,
                "113112",
                "Retain Institution Identity Option",
            ),
        ];
        codes.extend(
            options
                .into_iter()
                .filter(|(on, _, _)| *on)
                .map(|(_, code, meaning)| (code, meaning)),
        );
        codes
    }
}

/// What a de-identification did, counted per attribute (UIDs per value).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Attributes removed (X, private, curves, overlays).
    pub removed: usize,
    /// Attributes given a dummy, a pseudonym, a shifted date or cleaned text.
    pub replaced: usize,
    /// Attributes made zero-length (Z; sequences emptied of their items).
    pub emptied: usize,
    /// UID values replaced by pseudonymous UIDs.
    pub uids_replaced: usize,
}

/// Why a de-identification failed. The object is then partly modified and must be discarded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeidError {
    /// Sequences nested deeper than [`MAX_DEPTH`] (a hostile or broken object).
    #[error("sequences nested deeper than {max} levels (at {path})")]
    TooDeep {
        /// The bound.
        max: usize,
        /// The tags of the enclosing sequences, outermost first.
        path: String,
    },
}
