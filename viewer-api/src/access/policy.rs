//! The one access decision: may this principal take this action, and over which studies.
//! Every HTTP route maps to an [`Action`] (the guard does the mapping), and the scope this
//! returns is applied both to single-study requests (refused) and to searches (filtered).

use pacs_auth::role::Role;
use pacs_storage::query::{Matcher, QueryKey};
use pacs_storage::records::Attributes;

use super::principal::Principal;

/// Everything a caller can do over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// QIDO-RS searches.
    Search,
    /// WADO-RS instances (DICOM files).
    Retrieve,
    /// WADO-RS metadata (DICOM JSON without pixel data).
    Metadata,
    /// WADO-RS frames (pixel data).
    Frames,
    /// WADO-RS bulk data.
    BulkData,
    /// Rendered images.
    Rendered,
    /// Thumbnails.
    Thumbnail,
    /// STOW-RS.
    Store,
    /// DELETE of a study, series or instance.
    Delete,
    /// FHIR ImagingStudy search.
    FhirRead,
    /// Reading AI and quality flags.
    ReadFlags,
    /// Posting AI results (flags).
    PostFlags,
    /// Marking a study read or unread.
    MarkRead,
    /// The reading worklist.
    Worklist,
    /// The change feed of stored studies.
    ChangeFeed,
    /// Outbox and worker deliveries, and retrying them.
    Deliveries,
    /// Archive statistics and raw index records.
    IndexAdmin,
    /// The audit trail.
    Audit,
    /// Viewing what a share link opens.
    ShareView,
    /// Downloading the de-identified study a research link names.
    ResearchDownload,
    /// Merging two patients (the EHR as the patient master, or an admin).
    MergePatients,
    /// Placing, changing and cancelling orders (FHIR ServiceRequest create/update).
    PlaceOrder,
    /// Reading orders (FHIR ServiceRequest read/search).
    ReadOrders,
    /// The modality worklist of scheduled steps over HTTP.
    ReadWorklist,
}

impl Action {
    /// The name recorded in the audit trail.
    pub fn audit_name(self) -> &'static str {
        match self {
            Action::Search => "qido.search",
            Action::Retrieve => "wado.retrieve",
            Action::Metadata => "wado.metadata",
            Action::Frames => "wado.frames",
            Action::BulkData => "wado.bulkdata",
            Action::Rendered => "wado.rendered",
            Action::Thumbnail => "wado.thumbnail",
            Action::Store => "stow.store",
            Action::Delete => "dicomweb.delete",
            Action::FhirRead => "fhir.search",
            Action::ReadFlags => "flags.read",
            Action::PostFlags => "flags.post",
            Action::MarkRead => "worklist.mark-read",
            Action::Worklist => "worklist.read",
            Action::ChangeFeed => "events.changefeed",
            Action::Deliveries => "events.deliveries",
            Action::IndexAdmin => "admin.index",
            Action::Audit => "audit.read",
            Action::ShareView => "share.view",
            Action::ResearchDownload => "study.export",
            Action::PlaceOrder => "order.place",
            Action::MergePatients => "patient.merge",
            Action::ReadOrders => "order.read",
            Action::ReadWorklist => "worklist.mwl",
        }
    }
}

/// A patient as an account names one: Patient ID, and the Issuer of Patient ID when the
/// account says `ID^^^ISSUER` (HL7 CX notation). A Patient ID alone is not unique across
/// issuers: with an issuer, only studies under that same issuer match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientRef {
    pub id: String,
    pub issuer: Option<String>,
}

impl PatientRef {
    pub fn parse(text: &str) -> PatientRef {
        match text.split_once("^^^") {
            Some((id, issuer)) if !issuer.trim().is_empty() => PatientRef {
                id: id.trim().to_string(),
                issuer: Some(issuer.trim().to_string()),
            },
            _ => PatientRef {
                id: text.trim().to_string(),
                issuer: None,
            },
        }
    }

    /// Whether a study of this Patient ID and issuer ("" when it has none) is this patient's.
    /// An account entry without an issuer matches the ID under any issuer (single-domain
    /// sites); one with an issuer never matches a study without it.
    pub fn matches(&self, patient_id: &str, issuer: &str) -> bool {
        self.id == patient_id.trim() && self.issuer.as_deref().is_none_or(|i| i == issuer.trim())
    }
}

/// Which studies a granted action covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    /// Only studies of these patients (none: nothing).
    Patients(Vec<PatientRef>),
    /// Only this study.
    Study(String),
}

impl Scope {
    /// Whether a study (with its Patient ID and Issuer of Patient ID) is inside the scope.
    pub fn admits(&self, study_uid: &str, patient_id: &str, issuer: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Patients(refs) => refs.iter().any(|r| r.matches(patient_id, issuer)),
            Scope::Study(uid) => uid == study_uid,
        }
    }

    /// Whether a search match (its attributes include the study's and the patient's) is
    /// inside the scope. Searches narrow by [`Scope::query_keys`] first and check each match
    /// with this before counting it, so paging stays exact.
    pub fn admits_match(&self, attrs: &Attributes) -> bool {
        let first = |tag: &str| {
            attrs
                .get(tag)
                .and_then(|v| v.values.first())
                .map_or("", String::as_str)
        };
        match self {
            Scope::All => true,
            _ => self.admits(first(STUDY_UID), first(PATIENT_ID), first(ISSUER)),
        }
    }
}

impl Scope {
    /// Query keys that keep a search inside the scope (ANDed with the caller's own keys),
    /// so results are filtered by the index rather than after paging.
    pub fn query_keys(&self) -> Vec<QueryKey> {
        match self {
            Scope::All => Vec::new(),
            Scope::Patients(refs) => {
                let mut ids: Vec<String> = refs.iter().map(|r| r.id.clone()).collect();
                ids.dedup();
                vec![QueryKey {
                    tag: PATIENT_ID.into(),
                    vr: "LO".into(),
                    matcher: match ids.as_slice() {
                        [one] => Matcher::Single(one.clone()),
                        // Any of several; none matches nothing.
                        _ => Matcher::UidList(ids),
                    },
                }]
            }
            Scope::Study(uid) => vec![QueryKey {
                tag: STUDY_UID.into(),
                vr: "UI".into(),
                matcher: Matcher::Single(uid.clone()),
            }],
        }
    }
}

const PATIENT_ID: &str = "00100020";
const ISSUER: &str = "00100021";
const STUDY_UID: &str = "0020000D";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

/// Searching and reading studies, images included.
fn is_reading(action: Action) -> bool {
    use Action::*;
    matches!(
        action,
        Search | Retrieve | Metadata | Frames | BulkData | Rendered | Thumbnail
    )
}

/// Which roles may take an action at all (before scope).
fn role_may(role: Role, action: Action) -> bool {
    use Action::*;
    match role {
        Role::Admin => true,
        Role::Radiologist => {
            is_reading(action)
                || matches!(
                    action,
                    FhirRead
                        | ReadFlags
                        | PostFlags
                        | MarkRead
                        | Worklist
                        | ReadOrders
                        | ReadWorklist
                )
        }
        Role::Technologist => {
            is_reading(action) || matches!(action, Store | ReadFlags | ReadOrders | ReadWorklist)
        }
        Role::ReferringPhysician => is_reading(action) || action == FhirRead,
        // Demographics, codes and counts: no pixel data, no bulk data.
        Role::Billing => matches!(action, Search | Metadata | FhirRead),
        Role::Patient => is_reading(action) || matches!(action, FhirRead | ShareView),
        Role::AiService => is_reading(action) || matches!(action, Store | ReadFlags | PostFlags),
        Role::Ehr => matches!(
            action,
            Search | FhirRead | ChangeFeed | PlaceOrder | ReadOrders | ReadWorklist | MergePatients
        ),
    }
}

/// May `principal` take `action`, and over which studies.
pub fn authorize(principal: &Principal, action: Action) -> Result<Scope, Denied> {
    if principal.method == super::AuthMethod::ResearchLink {
        // A research link downloads its one study de-identified, nothing else.
        return match (&principal.share_study, action) {
            (Some(study), Action::ResearchDownload) => Ok(Scope::Study(study.clone())),
            _ => Err(Denied(format!(
                "a research link does not allow {}",
                action.audit_name()
            ))),
        };
    }
    if action == Action::ResearchDownload {
        return Err(Denied("a research link is required".into()));
    }
    if let Some(study) = &principal.share_study {
        // A share link opens one study's summary and thumbnails, nothing else.
        return match action {
            Action::ShareView | Action::Thumbnail => Ok(Scope::Study(study.clone())),
            _ => Err(Denied(format!(
                "a share link does not allow {}",
                action.audit_name()
            ))),
        };
    }
    if action == Action::ShareView {
        // Reached only through a share link (checked by the guard).
        return Err(Denied("a share link is required".into()));
    }
    if !role_may(principal.role, action) {
        return Err(Denied(format!(
            "role {} may not {}",
            principal.role,
            action.audit_name()
        )));
    }
    Ok(match principal.role {
        Role::Patient => Scope::Patients(
            principal
                .patient_ids
                .iter()
                .map(|p| PatientRef::parse(p))
                .collect(),
        ),
        _ => Scope::All,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::principal::AuthMethod;

    fn who(role: Role, patients: &[&str]) -> Principal {
        Principal {
            name: "u".into(),
            role,
            patient_ids: patients.iter().map(|p| p.to_string()).collect(),
            share_study: None,
            method: AuthMethod::Session,
        }
    }

    #[test]
    fn billing_sees_codes_but_no_pixels() {
        let b = who(Role::Billing, &[]);
        assert_eq!(authorize(&b, Action::Search), Ok(Scope::All));
        assert_eq!(authorize(&b, Action::Metadata), Ok(Scope::All));
        for a in [
            Action::Retrieve,
            Action::Frames,
            Action::BulkData,
            Action::Rendered,
            Action::Thumbnail,
            Action::Delete,
        ] {
            assert!(authorize(&b, a).is_err(), "{a:?}");
        }
    }

    #[test]
    fn patients_are_scoped_to_their_ids() {
        let p = who(Role::Patient, &["PID-A"]);
        let scope = authorize(&p, Action::Retrieve).expect("allowed");
        assert!(scope.admits("1.2", "PID-A", ""));
        assert!(scope.admits("1.2", "PID-A", "ANY-ISSUER"));
        assert!(!scope.admits("1.2", "PID-B", ""));
        assert!(authorize(&p, Action::Store).is_err());
        assert!(authorize(&p, Action::Delete).is_err());
        assert!(authorize(&p, Action::Worklist).is_err());
        let nobody = who(Role::Patient, &[]);
        assert!(!authorize(&nobody, Action::Search)
            .expect("allowed")
            .admits("1.2", "", ""));
    }

    #[test]
    fn a_patient_named_with_an_issuer_sees_that_issuer_only() {
        let p = who(Role::Patient, &["P1^^^HOSP-A"]);
        let scope = authorize(&p, Action::Search).expect("allowed");
        assert!(scope.admits("1.2", "P1", "HOSP-A"));
        assert!(
            !scope.admits("1.2", "P1", "HOSP-B"),
            "same ID, other issuer"
        );
        assert!(
            !scope.admits("1.2", "P1", ""),
            "issuer unknown on the study"
        );
        let mut attrs = Attributes::new();
        for (tag, value) in [("00100020", "P1"), ("00100021", "HOSP-B")] {
            attrs.insert(
                tag.into(),
                pacs_storage::records::AttrValue {
                    vr: "LO".into(),
                    values: vec![value.into()],
                },
            );
        }
        assert!(!scope.admits_match(&attrs));
        assert_eq!(
            PatientRef::parse("P1^^^HOSP-A"),
            PatientRef {
                id: "P1".into(),
                issuer: Some("HOSP-A".into())
            }
        );
        assert_eq!(PatientRef::parse("P1^^^").issuer, None);
    }

    #[test]
    fn share_links_open_one_study_summary_and_thumbnails_only() {
        let s = Principal::share_link("1.2.3".into());
        assert_eq!(
            authorize(&s, Action::ShareView),
            Ok(Scope::Study("1.2.3".into()))
        );
        assert!(authorize(&s, Action::Retrieve).is_err());
        assert!(authorize(&s, Action::Search).is_err());
        assert!(authorize(&who(Role::Admin, &[]), Action::ShareView).is_err());
        assert!(authorize(&s, Action::ResearchDownload).is_err());
    }

    #[test]
    fn research_links_download_their_study_only() {
        let r = Principal::research_link("1.2.3".into());
        assert_eq!(
            authorize(&r, Action::ResearchDownload),
            Ok(Scope::Study("1.2.3".into()))
        );
        for action in [
            Action::ShareView,
            Action::Thumbnail,
            Action::Retrieve,
            Action::Search,
        ] {
            assert!(authorize(&r, action).is_err(), "{action:?}");
        }
        assert!(authorize(&who(Role::Admin, &[]), Action::ResearchDownload).is_err());
    }

    #[test]
    fn only_admins_delete_and_read_the_audit_trail() {
        for role in Role::ALL {
            let p = who(role, &[]);
            let admin = role == Role::Admin;
            assert_eq!(authorize(&p, Action::Delete).is_ok(), admin, "{role}");
            assert_eq!(authorize(&p, Action::Audit).is_ok(), admin, "{role}");
            assert_eq!(authorize(&p, Action::Deliveries).is_ok(), admin, "{role}");
        }
    }

    #[test]
    fn ehr_queries_and_reads_fhir_but_gets_no_images() {
        let e = who(Role::Ehr, &[]);
        assert!(authorize(&e, Action::Search).is_ok());
        assert!(authorize(&e, Action::FhirRead).is_ok());
        assert!(authorize(&e, Action::ChangeFeed).is_ok());
        assert!(authorize(&e, Action::Retrieve).is_err());
        assert!(authorize(&e, Action::Rendered).is_err());
    }

    #[test]
    fn orders_are_for_the_ehr_and_the_imaging_staff_only() {
        for role in Role::ALL {
            let p = who(role, &[]);
            let place = matches!(role, Role::Admin | Role::Ehr);
            let read = place || matches!(role, Role::Technologist | Role::Radiologist);
            assert_eq!(authorize(&p, Action::PlaceOrder).is_ok(), place, "{role}");
            assert_eq!(authorize(&p, Action::ReadOrders).is_ok(), read, "{role}");
            assert_eq!(authorize(&p, Action::ReadWorklist).is_ok(), read, "{role}");
        }
        let s = Principal::share_link("1.2.3".into());
        assert!(authorize(&s, Action::ReadOrders).is_err());
        assert!(authorize(&s, Action::ReadWorklist).is_err());
        // A patient-scoped grant admits an order only by its patient ID and issuer.
        let scope = Scope::Patients(vec![PatientRef::parse("P1^^^HOSP")]);
        assert!(scope.admits("", "P1", "HOSP"));
        assert!(!scope.admits("", "P1", "OTHER"));
        assert!(!scope.admits("", "P2", "HOSP"));
    }
}
