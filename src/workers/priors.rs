//! Fetch priors: when a study is stable here or an order is placed, the patient's earlier
//! studies of the same body part (or, where the body part is not known, a shared modality)
//! are looked up on the `[priors] from` node by C-FIND and moved here by C-MOVE, the newest
//! `max_studies` of them, through the dispatcher (retried, dead letters, `worker=priors`).
//! Studies that arrived from that node do not start another search: fetching a prior must
//! not walk the patient's whole history.

use std::collections::BTreeSet;
use std::sync::Arc;

use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use pacs_storage::records::first_value;
use pacs_storage::{Event, EventKind, Store};
use serde::Deserialize;

use super::settings::{SettingsError, TargetConfig};
use super::{Prepared, Worker, WorkerError};
use crate::dimse::qr_scu::{series_identifier, study_identifier};
use crate::remote::DimseRemotes;

/// Most studies one search looks at (C-FIND matches) and checks by series.
const CANDIDATES: usize = 200;
const SERIES_CHECKS: usize = 20;

/// `[priors]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorsConfig {
    /// The `[[nodes]]` entry (the old archive) searched and retrieved from.
    pub from: String,
    /// The newest this many matching earlier studies are fetched [default: 3].
    pub max_studies: Option<usize>,
    /// What makes an earlier study relevant: "body-part" (BodyPartExamined of a series in
    /// common, falling back on a modality when either side has none), "modality", or "any"
    /// [default: "body-part"].
    pub relevance: Option<Relevance>,
    /// Search when an order is placed too, so priors are here before the exam [default: true].
    pub on_orders: Option<bool>,
    pub max_attempts: Option<u32>,
    pub backoff_ms: Option<u64>,
    pub max_backoff_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Relevance {
    BodyPart,
    Modality,
    Any,
}

impl PriorsConfig {
    pub fn check(&self, nodes: &[String]) -> Result<(), SettingsError> {
        if !nodes.contains(&self.from) {
            return Err(SettingsError(format!(
                "priors.from {:?} is not the AE title of a [[nodes]] entry",
                self.from
            )));
        }
        if self.max_studies.is_some_and(|n| !(1..=20).contains(&n)) {
            return Err(SettingsError("priors.max_studies must be 1 to 20".into()));
        }
        if self.max_attempts == Some(0) {
            return Err(SettingsError(
                "priors.max_attempts must be at least 1".into(),
            ));
        }
        Ok(())
    }

    pub fn target(&self) -> TargetConfig {
        TargetConfig {
            enabled: true,
            url: format!("dicom:{}", self.from),
            token: None,
            max_attempts: self.max_attempts,
            backoff_ms: self.backoff_ms,
            max_backoff_ms: self.max_backoff_ms,
            timeout_secs: None,
            max_in_flight: Some(2),
            profile: None,
            project: None,
        }
    }
}

pub struct PriorsWorker {
    pub from: String,
    pub max_studies: usize,
    pub relevance: Relevance,
    pub on_orders: bool,
    pub remotes: Arc<DimseRemotes>,
    pub runtime: tokio::runtime::Handle,
}

/// Whom and what to look for.
struct Wanted {
    patient_id: String,
    issuer: String,
    /// The study that prompted the search (not a prior of itself).
    study: String,
    modalities: BTreeSet<String>,
    body_parts: BTreeSet<String>,
    /// Only studies before this date (YYYYMMDD); empty: any.
    before: String,
}

fn text(obj: &InMemDicomObject, tag: dicom_core::Tag) -> String {
    obj.get(tag)
        .and_then(|e| e.value().to_str().ok())
        .map(|v| v.trim_end_matches(['\0', ' ']).trim().to_uppercase())
        .unwrap_or_default()
}

fn values(obj: &InMemDicomObject, tag: dicom_core::Tag) -> BTreeSet<String> {
    text(obj, tag)
        .split('\\')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

impl PriorsWorker {
    pub fn new(config: &PriorsConfig, remotes: Arc<DimseRemotes>) -> Self {
        PriorsWorker {
            from: config.from.clone(),
            max_studies: config.max_studies.unwrap_or(3),
            relevance: config.relevance.unwrap_or(Relevance::BodyPart),
            on_orders: config.on_orders.unwrap_or(true),
            remotes,
            runtime: tokio::runtime::Handle::current(),
        }
    }

    fn wanted(&self, event: &Event, store: &Store) -> Result<Option<Wanted>, WorkerError> {
        if event.kind == EventKind::OrderPlaced {
            let Some(acc) = &event.accession_number else {
                return Ok(None);
            };
            let Some(order) = store.orders.order(acc)? else {
                return Ok(None);
            };
            let modality = order.step.modality.to_uppercase();
            return Ok(Some(Wanted {
                patient_id: order.patient.id,
                issuer: order.patient.issuer,
                study: order.study_instance_uid,
                modalities: std::iter::once(modality)
                    .filter(|m| !m.is_empty())
                    .collect(),
                body_parts: BTreeSet::new(),
                before: String::new(),
            }));
        }
        let Some(study) = store.index.study(&event.study_instance_uid)? else {
            return Ok(None);
        };
        let records = store.index.study_instances(&study.study_instance_uid)?;
        if !records.is_empty() && records.iter().all(|r| r.source == self.from) {
            // A prior we fetched (or anything from that archive): no search from it.
            return Ok(None);
        }
        let mut body_parts = BTreeSet::new();
        for uid in store.index.series_uids(&study.study_instance_uid)? {
            if let Some(series) = store.index.series(&uid)? {
                let part = first_value(&series.attributes, "00180015")
                    .trim()
                    .to_uppercase();
                if !part.is_empty() {
                    body_parts.insert(part);
                }
            }
        }
        Ok(Some(Wanted {
            patient_id: first_value(&study.attributes, "00100020").to_string(),
            issuer: first_value(&study.attributes, "00100021").to_string(),
            study: study.study_instance_uid.clone(),
            modalities: study.modalities.iter().map(|m| m.to_uppercase()).collect(),
            body_parts,
            before: first_value(&study.attributes, "00080020").to_string(),
        }))
    }

    /// The remote's earlier studies of the patient that are relevant and not here yet,
    /// newest first, at most `max_studies`.
    async fn priors(&self, w: &Wanted, store: &Store) -> Result<Vec<String>, WorkerError> {
        // By PatientID alone: an archive that keeps no issuer would match nothing with one.
        let identifier = study_identifier(&[(tags::PATIENT_ID, w.patient_id.clone())]);
        let matches = self
            .remotes
            .find(&self.from, &identifier, CANDIDATES)
            .await?;
        let mut candidates: Vec<(String, String, BTreeSet<String>)> = Vec::new();
        for m in &matches {
            let uid = text(m, tags::STUDY_INSTANCE_UID);
            let date = text(m, tags::STUDY_DATE);
            if uid.is_empty() || uid == w.study || store.index.study(&uid)?.is_some() {
                continue;
            }
            let issuer = text(m, tags::ISSUER_OF_PATIENT_ID);
            if !issuer.is_empty() && !w.issuer.is_empty() && issuer != w.issuer.to_uppercase() {
                continue;
            }
            if !w.before.is_empty() && !date.is_empty() && date >= w.before {
                continue;
            }
            candidates.push((date, uid, values(m, tags::MODALITIES_IN_STUDY)));
        }
        candidates.sort_by(|a, b| b.0.cmp(&a.0));
        let mut out = Vec::new();
        for (checked, (_, uid, modalities)) in candidates.into_iter().enumerate() {
            if out.len() >= self.max_studies || checked >= SERIES_CHECKS {
                break;
            }
            if self.relevant(w, &uid, modalities).await? {
                out.push(uid);
            }
        }
        Ok(out)
    }

    async fn relevant(
        &self,
        w: &Wanted,
        study: &str,
        mut modalities: BTreeSet<String>,
    ) -> Result<bool, WorkerError> {
        if self.relevance == Relevance::Any {
            return Ok(true);
        }
        let need_series = modalities.is_empty()
            || (self.relevance == Relevance::BodyPart && !w.body_parts.is_empty());
        let mut body_parts = BTreeSet::new();
        if need_series {
            let series = self
                .remotes
                .find(&self.from, &series_identifier(study), CANDIDATES)
                .await?;
            for s in &series {
                modalities.extend(values(s, tags::MODALITY));
                body_parts.extend(values(s, tags::BODY_PART_EXAMINED));
            }
        }
        if self.relevance == Relevance::BodyPart
            && !w.body_parts.is_empty()
            && !body_parts.is_empty()
        {
            return Ok(!w.body_parts.is_disjoint(&body_parts));
        }
        Ok(w.modalities.is_empty() || !w.modalities.is_disjoint(&modalities))
    }
}

impl Worker for PriorsWorker {
    fn name(&self) -> &str {
        "priors"
    }

    fn wants(&self, event: &Event) -> bool {
        event.kind == EventKind::StudyStable
            || (self.on_orders && event.kind == EventKind::OrderPlaced)
    }

    fn prepare(&self, event: &Event, store: &Store) -> Result<Prepared, WorkerError> {
        let Some(wanted) = self.wanted(event, store)? else {
            return Ok(Prepared::Skip);
        };
        if wanted.patient_id.is_empty() {
            return Ok(Prepared::Skip);
        }
        // On the dispatcher's blocking thread: drive the queries and moves here.
        self.runtime.block_on(async {
            let priors = self.priors(&wanted, store).await?;
            for uid in &priors {
                let counts = self.remotes.retrieve(&self.from, uid).await?;
                if counts.failed > 0 {
                    return Err(WorkerError::PriorIncomplete {
                        node: self.from.clone(),
                        study: uid.clone(),
                        failed: counts.failed,
                    });
                }
                tracing::info!(study = %wanted.study, prior = %uid, instances = counts.completed, "prior fetched");
            }
            Ok(())
        })?;
        Ok(Prepared::Done)
    }
}
