//! Delivers outbox events to one worker: at least once, in order per study, retried with
//! exponential backoff, dead after `max_attempts`, every attempt carrying the same
//! `Idempotency-Key`. Progress (cursor, delivery states) lives in the outbox, so a restart
//! resumes where the last committed step left off.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pacs_storage::{Delivery, DeliveryState, Event, Store};
use tokio_util::sync::CancellationToken;

use super::{Outgoing, Prepared, Worker};

/// How a worker's deliveries are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl RetryPolicy {
    pub fn from_target(t: &crate::config::TargetConfig) -> RetryPolicy {
        RetryPolicy {
            max_attempts: t.max_attempts.unwrap_or(8).max(1),
            first_backoff: Duration::from_millis(t.backoff_ms.unwrap_or(1000)),
            max_backoff: Duration::from_millis(t.max_backoff_ms.unwrap_or(300_000)),
        }
    }
}

/// The HTTP client workers share (rustls; bounded waits so a dead target cannot stall them).
pub fn http_client() -> Result<reqwest::Client, crate::error::AppError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| crate::error::AppError::Internal(format!("HTTP client: {e}")))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

const POLL: Duration = Duration::from_millis(200);
const INTAKE: usize = 256;
/// Heavy workers start once no instance has arrived for this long.
const INGEST_QUIET_MS: u64 = 1000;

pub struct Dispatcher {
    pub worker: Arc<dyn Worker>,
    pub store: Arc<Store>,
    pub retry: RetryPolicy,
    pub client: reqwest::Client,
}

impl Dispatcher {
    pub async fn run(self, shutdown: CancellationToken) {
        let name = self.worker.name().to_string();
        // Pending deliveries by sequence number (in memory; the outbox holds the truth).
        let mut pending: BTreeMap<u64, Delivery> = BTreeMap::new();
        match self.load_pending().await {
            Ok(p) => pending = p,
            Err(e) => tracing::error!(worker = %name, error = %e, "cannot read pending deliveries"),
        }
        loop {
            let name2 = name.clone();
            match self
                .blocking(move |store| store.outbox.take_retries(&name2))
                .await
            {
                Ok(retried) => {
                    for d in retried {
                        tracing::info!(worker = %name, seq = d.seq, "retry requested");
                        pending.insert(d.seq, d);
                    }
                }
                Err(e) => tracing::error!(worker = %name, error = %e, "reading retries failed"),
            }
            if let Err(e) = self.intake(&mut pending).await {
                tracing::error!(worker = %name, error = %e, "reading the outbox failed");
            }
            self.attempt_due(&mut pending, &shutdown).await;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, pacs_storage::StorageError> + Send + 'static,
    ) -> Result<T, String> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    async fn load_pending(&self) -> Result<BTreeMap<u64, Delivery>, String> {
        let name = self.worker.name().to_string();
        self.blocking(move |store| {
            let mut out = BTreeMap::new();
            let mut after: Option<u64> = None;
            loop {
                let page = store.outbox.deliveries(
                    Some(&name),
                    after.map(|s| (name.as_str(), s)),
                    1000,
                )?;
                let Some(last) = page.last() else { break };
                after = Some(last.seq);
                for d in page {
                    if d.state == DeliveryState::Pending {
                        out.insert(d.seq, d);
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// Turn new outbox events this worker wants into pending deliveries.
    async fn intake(&self, pending: &mut BTreeMap<u64, Delivery>) -> Result<(), String> {
        let worker = self.worker.clone();
        let created = self
            .blocking(move |store| {
                let cursor = store.outbox.cursor(worker.name())?;
                let events = store.outbox.events_after(cursor, INTAKE)?;
                let Some(last) = events.last().map(|e| e.seq) else {
                    return Ok(Vec::new());
                };
                let created: Vec<Delivery> = events
                    .iter()
                    .filter(|e| worker.wants(e))
                    .map(|e| Delivery::new(worker.name(), e))
                    .collect();
                store.outbox.advance(worker.name(), last, &created)?;
                Ok(created)
            })
            .await?;
        for d in created {
            pending.insert(d.seq, d);
        }
        Ok(())
    }

    /// Try every due delivery whose study has no earlier delivery still pending.
    async fn attempt_due(
        &self,
        pending: &mut BTreeMap<u64, Delivery>,
        shutdown: &CancellationToken,
    ) {
        let now = now_ms();
        // Heavy workers wait until instances stop arriving (they catch up in the quiet).
        if self.worker.yields_to_ingest()
            && now.saturating_sub(self.store.ingestor.last_activity_ms()) < INGEST_QUIET_MS
        {
            return;
        }
        let mut blocked_studies: HashSet<String> = HashSet::new();
        let mut due = Vec::new();
        for d in pending.values() {
            if blocked_studies.contains(&d.study_instance_uid) {
                continue;
            }
            // Whether due or not, this study's later deliveries wait for this one.
            blocked_studies.insert(d.study_instance_uid.clone());
            if d.next_attempt_ms <= now {
                due.push(d.seq);
            }
        }
        for seq in due {
            if shutdown.is_cancelled() {
                return;
            }
            let Some(mut d) = pending.remove(&seq) else {
                continue;
            };
            self.attempt(&mut d).await;
            let still_pending = d.state == DeliveryState::Pending;
            let record = d.clone();
            if let Err(e) = self
                .blocking(move |store| store.outbox.put_delivery(&record))
                .await
            {
                tracing::error!(worker = self.worker.name(), error = %e, "cannot record a delivery");
            }
            if still_pending {
                pending.insert(seq, d);
            }
        }
    }

    async fn attempt(&self, d: &mut Delivery) {
        let seq = d.seq;
        let worker = self.worker.clone();
        let prepared = self
            .blocking(move |store| {
                let event = store.outbox.events_after(seq - 1, 1)?.into_iter().next();
                Ok(event.map(|e: Event| worker.prepare(&e, store)))
            })
            .await;
        let outgoing = match prepared {
            Ok(Some(Ok(Prepared::Send(out)))) => out,
            Ok(Some(Ok(Prepared::Skip))) | Ok(None) => {
                d.state = DeliveryState::Skipped;
                return;
            }
            Ok(Some(Ok(Prepared::Done))) => {
                d.attempts += 1;
                d.state = DeliveryState::Delivered;
                return;
            }
            Ok(Some(Ok(Prepared::Hold(reason)))) => {
                tracing::warn!(worker = self.worker.name(), seq = d.seq, %reason, "held");
                d.state = DeliveryState::Held;
                d.last_error = Some(reason);
                return;
            }
            Ok(Some(Err(e))) | Err(e) => return self.failed(d, e),
        };
        match self.send(&outgoing, &d.idempotency_key).await {
            Ok(()) => {
                d.attempts += 1;
                d.state = DeliveryState::Delivered;
                d.last_error = None;
                tracing::info!(worker = self.worker.name(), seq = d.seq, key = %d.idempotency_key, "delivered");
            }
            Err(e) => self.failed(d, e),
        }
    }

    fn failed(&self, d: &mut Delivery, error: String) {
        d.attempts += 1;
        d.last_error = Some(error.chars().take(500).collect());
        if d.attempts >= self.retry.max_attempts {
            d.state = DeliveryState::Dead;
            tracing::error!(worker = self.worker.name(), seq = d.seq, error = %error, "delivery dead after {} attempts", d.attempts);
            return;
        }
        let backoff = self
            .retry
            .first_backoff
            .saturating_mul(1u32 << (d.attempts - 1).min(16))
            .min(self.retry.max_backoff);
        d.next_attempt_ms = now_ms() + backoff.as_millis() as u64;
        tracing::warn!(worker = self.worker.name(), seq = d.seq, attempt = d.attempts, error = %error, "delivery failed; retrying in {backoff:?}");
    }

    async fn send(&self, out: &Outgoing, key: &str) -> Result<(), String> {
        let mut req = self
            .client
            .request(out.method.clone(), &out.url)
            .header("Idempotency-Key", key)
            .header("Content-Type", out.content_type.as_str())
            .body(out.body.clone());
        if let Some(token) = &out.bearer {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.map_err(|e| format!("{}: {e}", out.url))?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            let text = resp.text().await.unwrap_or_default();
            Err(format!(
                "{} answered {status}: {}",
                out.url,
                text.chars().take(200).collect::<String>()
            ))
        }
    }
}
