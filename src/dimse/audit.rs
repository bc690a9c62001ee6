//! The DIMSE side of the audit trail: refused associations, each C-FIND / C-MOVE / C-GET with
//! its outcome, and the instances stored over an association, one record per study (as
//! ATNA's "DICOM Instances Transferred" counts them), written when the association ends.

use std::collections::BTreeMap;

use pacs_storage::audit::{AuditEntry, Interface, Outcome};
use pacs_storage::query::{Matcher, Query};
use pacs_storage::{IngestOutcome, Store};

use super::peer::DimsePeer;
use super::status::Status;

/// Per-study counts of one association's C-STOREs.
#[derive(Debug, Default, Clone, Copy)]
struct StoreCounts {
    stored: u64,
    duplicates: u64,
    failed: u64,
}

/// What an association has done, for the audit trail.
pub struct AssociationAudit {
    calling_ae: String,
    /// The association's user (DICOM user identity) and how they showed it; boxed, as most
    /// associations have none (this is inline in every association's future).
    user: Option<Box<(String, &'static str)>>,
    source: String,
    /// The TLS client certificate's name, when the peer sent one.
    client_cn: Option<String>,
    stores: BTreeMap<(String, String), StoreCounts>,
    /// Study and patient named by the query being answered.
    query_target: (Option<String>, Option<String>),
}

fn entry(
    calling_ae: &str,
    source: &str,
    client_cn: Option<&str>,
    action: &str,
    outcome: Outcome,
) -> AuditEntry {
    let mut e = AuditEntry::new(Interface::Dimse, calling_ae, source, action, outcome);
    e.ae_title = Some(calling_ae.to_string());
    e.target = client_cn.map(|cn| format!("TLS client {cn}"));
    e
}

impl AssociationAudit {
    /// An entry acting for the association's user, when it named one, else its AE title.
    fn entry(&self, action: &str, outcome: Outcome) -> AuditEntry {
        let mut e = entry(
            &self.calling_ae,
            &self.source,
            self.client_cn.as_deref(),
            action,
            outcome,
        );
        if let Some((name, _)) = self.user.as_deref() {
            e.user = name.clone();
        }
        e
    }

    /// A detail text with the identity method and the TLS client's name appended.
    fn detail(&self, text: String) -> Option<String> {
        let text = match self.user.as_deref() {
            Some((_, method)) => format!("{text}; user identity by {method}"),
            None => text,
        };
        detail(text, self.client_cn.as_deref())
    }
}

/// A detail text with the TLS client's name appended, when there is one.
fn detail(text: String, client_cn: Option<&str>) -> Option<String> {
    Some(match client_cn {
        Some(cn) => format!("{text}; TLS client {cn}"),
        None => text,
    })
}

fn record(store: &Store, e: AuditEntry) {
    if let Err(err) = store.audit.record(e) {
        tracing::error!(error = %err, "cannot record audit entry");
    }
}

/// The record of a refused association, with its reason.
fn refusal_entry(peer: &DimsePeer, calling_ae: &str, reason: String) -> AuditEntry {
    let mut e = entry(
        calling_ae,
        &peer.addr.to_string(),
        peer.client_cn.as_deref(),
        "dimse.associate",
        Outcome::Denied,
    );
    e.detail = detail(reason, peer.client_cn.as_deref());
    e
}

/// A refused association (unknown node, wrong address, called AE title).
pub fn rejected(store: &Store, peer: &DimsePeer, calling_ae: &str, reason: &str) {
    record(store, refusal_entry(peer, calling_ae, reason.to_string()));
}

/// An association refused for its user identity, naming the user it claimed.
pub fn rejected_identity(
    store: &Store,
    peer: &DimsePeer,
    calling_ae: &str,
    refusal: &super::identity::IdentityRefusal,
) {
    let mut e = refusal_entry(
        peer,
        calling_ae,
        format!("user identity refused: {refusal}"),
    );
    if let Some(user) = refusal.claimed_user() {
        e.user = user.to_string();
    }
    record(store, e);
}

/// Failure statuses (PS3.7 C): anything but success, pending, cancel and warnings.
fn is_failure(status: Status) -> bool {
    !matches!(
        status.0,
        0x0000 | 0xFE00 | 0xFF00 | 0xFF01 | 0xB000..=0xBFFF | 0x0001
    )
}

/// Single value of a key, if the query names exactly one.
fn single(query: &Query, tag: &str) -> Option<String> {
    query
        .keys
        .iter()
        .find(|k| k.tag == tag)
        .and_then(|k| match &k.matcher {
            Matcher::Single(v) => Some(v.clone()),
            _ => None,
        })
}

impl AssociationAudit {
    pub fn new(
        peer: &DimsePeer,
        calling_ae: &str,
        user: Option<&super::identity::DimseUser>,
    ) -> Self {
        AssociationAudit {
            calling_ae: calling_ae.to_string(),
            user: user.map(|u| Box::new((u.name.clone(), u.method.as_str()))),
            source: peer.addr.to_string(),
            client_cn: peer.client_cn.clone(),
            stores: BTreeMap::new(),
            query_target: (None, None),
        }
    }

    /// Remember which study and patient the current query names.
    pub fn query(&mut self, query: &Query) {
        self.query_target = (single(query, "0020000D"), single(query, "00100020"));
    }

    /// Remember which patient the current worklist query names.
    pub fn worklist_query(&mut self, query: &pacs_storage::worklist::WorklistQuery) {
        let patient = match &query.patient_id {
            Matcher::Single(v) => Some(v.clone()),
            _ => None,
        };
        self.query_target = (None, patient);
    }

    /// Remember which patient the current MPPS report names.
    pub fn mpps(&mut self, patient_id: Option<String>) {
        self.query_target = (None, patient_id.filter(|p| !p.is_empty()));
    }

    pub fn stored(
        &mut self,
        study: Option<String>,
        patient: Option<String>,
        outcome: Option<IngestOutcome>,
    ) {
        let key = (study.unwrap_or_default(), patient.unwrap_or_default());
        let c = self.stores.entry(key).or_default();
        match outcome {
            Some(IngestOutcome::Duplicate) => c.duplicates += 1,
            Some(_) => c.stored += 1,
            None => c.failed += 1,
        }
    }

    /// A C-FIND, C-MOVE or C-GET answered with its final status.
    pub fn answered(&mut self, store: &Store, action: &str, status: Status, comment: Option<&str>) {
        let outcome = if status == Status::NOT_AUTHORIZED {
            Outcome::Denied
        } else if is_failure(status) {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        let mut e = self.entry(action, outcome);
        let (study, patient) = std::mem::take(&mut self.query_target);
        e.study_uid = study;
        e.patient_id = patient;
        let status_text = format!("status 0x{:04X}", status.0);
        let text = match comment {
            Some(c) => format!("{status_text}: {c}"),
            None => status_text,
        };
        e.detail = self.detail(text);
        record(store, e);
    }

    /// The association ended: one record per study stored over it.
    pub fn finish(self, store: &Store) {
        for ((study, patient), c) in &self.stores {
            let outcome = if c.stored + c.duplicates == 0 {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            let mut e = self.entry("dimse.c-store", outcome);
            e.study_uid = Some(study.clone()).filter(|s| !s.is_empty());
            e.patient_id = Some(patient.clone()).filter(|p| !p.is_empty());
            e.detail = self.detail(format!(
                "{} stored, {} duplicates, {} failed",
                c.stored, c.duplicates, c.failed
            ));
            record(store, e);
        }
    }
}
