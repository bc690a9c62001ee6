//! A routing rule as a worker: it wants StudyStable (or SeriesStable) events, and for one
//! whose study or series matches the rule's conditions it sends the instances (as they are
//! now: corrected, without those rejection notes hid) to the rule's node or endpoint. The
//! send runs on the dispatcher's blocking thread, driving the async senders on the runtime;
//! success is Done, a failure is retried with backoff and ends as a dead letter.

use std::sync::Arc;

use pacs_storage::query::matching::wildcard;
use pacs_storage::records::{first_value, Attributes, InstanceRecord};
use pacs_storage::{Event, EventKind, Store};
use pacs_viewer_api::{Deidentify, ExportTarget};
use tokio_util::sync::CancellationToken;

use super::route_send::{store_to_node, stow, NodeSend, RouteError};
use super::route_settings::{RouteConfig, RouteTrigger};
use super::{Prepared, Worker, WorkerError};
use crate::dimse::access::RemoteNode;

/// Where a route sends.
pub enum Destination {
    Node(RemoteNode),
    Stow(ExportTarget),
}

pub struct RouteWorker {
    pub name: String,
    pub trigger: RouteTrigger,
    pub modalities: Vec<String>,
    pub calling_aes: Vec<String>,
    /// (tag as 8 hex digits, pattern), patterns upper-cased.
    pub tags: Vec<(String, String)>,
    pub destination: Destination,
    pub transfer_syntax: Option<String>,
    pub deid: Option<Arc<Deidentify>>,
    pub our_ae: String,
    pub max_pdu: u32,
    pub store: Arc<Store>,
    pub runtime: tokio::runtime::Handle,
    pub shutdown: CancellationToken,
}

impl RouteWorker {
    /// The worker of a checked route.
    pub fn new(
        route: &RouteConfig,
        destination: Destination,
        deid: Option<Deidentify>,
        our_ae: &str,
        max_pdu: u32,
        store: Arc<Store>,
        shutdown: CancellationToken,
    ) -> Result<Self, super::settings::SettingsError> {
        Ok(RouteWorker {
            name: route.worker_name(),
            trigger: route.on,
            modalities: route.modality.iter().map(|m| m.to_uppercase()).collect(),
            calling_aes: route.calling_ae.clone(),
            tags: route
                .tag_conditions()?
                .into_iter()
                .map(|(t, p)| (t, p.to_uppercase()))
                .collect(),
            destination,
            transfer_syntax: route.transfer_syntax.clone(),
            deid: deid.map(Arc::new),
            our_ae: our_ae.to_string(),
            max_pdu,
            store,
            runtime: tokio::runtime::Handle::current(),
            shutdown,
        })
    }

    /// The instances to send, when the study or series matches every condition.
    fn selected(
        &self,
        event: &Event,
        store: &Store,
    ) -> Result<Option<Vec<InstanceRecord>>, WorkerError> {
        let Some(study) = store.index.study(&event.study_instance_uid)? else {
            return Ok(None);
        };
        let (series, records) = match (self.trigger, &event.series_instance_uid) {
            (RouteTrigger::SeriesStable, Some(uid)) => {
                let Some(series) = store.index.series(uid)? else {
                    return Ok(None);
                };
                (vec![series], store.index.series_instances(uid)?)
            }
            _ => {
                let mut series = Vec::new();
                for uid in store.index.series_uids(&study.study_instance_uid)? {
                    series.extend(store.index.series(&uid)?);
                }
                (
                    series,
                    store.index.study_instances(&study.study_instance_uid)?,
                )
            }
        };
        if records.is_empty() {
            return Ok(None);
        }
        let modality_ok = self.modalities.is_empty()
            || series.iter().any(|s| {
                self.modalities
                    .contains(&first_value(&s.attributes, "00080060").to_uppercase())
            });
        let ae_ok = self.calling_aes.is_empty()
            || records.iter().any(|r| self.calling_aes.contains(&r.source));
        let levels: Vec<&Attributes> = std::iter::once(&study.attributes)
            .chain(series.iter().map(|s| &s.attributes))
            .chain(records.first().map(|r| &r.attributes))
            .collect();
        let tags_ok = self.tags.iter().all(|(tag, pattern)| {
            levels.iter().any(|attrs| {
                attrs.get(tag).is_some_and(|v| {
                    v.values
                        .iter()
                        .any(|value| wildcard(pattern, &value.to_uppercase()))
                })
            })
        });
        Ok((modality_ok && ae_ok && tags_ok).then_some(records))
    }

    async fn send(&self, records: &[InstanceRecord]) -> Result<usize, RouteError> {
        match &self.destination {
            Destination::Node(node) => {
                let send = NodeSend {
                    node,
                    our_ae: &self.our_ae,
                    max_pdu: self.max_pdu,
                    transfer_syntax: self.transfer_syntax.as_deref(),
                    deid: self.deid.as_deref(),
                    shutdown: &self.shutdown,
                };
                store_to_node(&self.store, &send, records).await
            }
            Destination::Stow(target) => {
                stow(&self.store, target, records, self.deid.clone()).await
            }
        }
    }
}

impl Worker for RouteWorker {
    fn name(&self) -> &str {
        &self.name
    }

    /// Whole studies and series go out: after ingest has quietened, like the AI upload.
    fn yields_to_ingest(&self) -> bool {
        true
    }

    fn wants(&self, event: &Event) -> bool {
        match self.trigger {
            RouteTrigger::StudyStable => event.kind == EventKind::StudyStable,
            RouteTrigger::SeriesStable => event.kind == EventKind::SeriesStable,
        }
    }

    fn prepare(&self, event: &Event, store: &Store) -> Result<Prepared, WorkerError> {
        let Some(records) = self.selected(event, store)? else {
            return Ok(Prepared::Skip);
        };
        // On the dispatcher's blocking thread: drive the async senders to the end here.
        let sent = self.runtime.block_on(self.send(&records))?;
        tracing::info!(route = %self.name, study = %event.study_instance_uid, instances = sent, "routed");
        Ok(Prepared::Done)
    }
}
