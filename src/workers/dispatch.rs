//! Delivers outbox events to one worker: at least once, in order per study (different studies
//! concurrently, bounded), retried with exponential backoff, dead after `max_attempts`, every
//! attempt carrying the same `Idempotency-Key`. Progress (cursor, delivery states) lives in
//! the outbox, so a restart resumes where the last committed step left off; shutdown cancels
//! sends in flight without recording them, so they are sent again after the restart.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pacs_storage::{Delivery, DeliveryState, Event, Store};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::error::WorkerError;
use super::queue::Queue;
use super::send::{http_client, send};
use super::{Prepared, Worker};

/// How a worker's deliveries are retried and bounded.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// One request's time limit.
    pub timeout: Duration,
    /// Deliveries (of different studies) attempted at once.
    pub max_in_flight: usize,
}

impl RetryPolicy {
    pub fn from_target(t: &super::settings::TargetConfig) -> RetryPolicy {
        RetryPolicy {
            max_attempts: t.max_attempts.unwrap_or(8).max(1),
            first_backoff: Duration::from_millis(t.backoff_ms.unwrap_or(1000)),
            max_backoff: Duration::from_millis(t.max_backoff_ms.unwrap_or(300_000)),
            timeout: Duration::from_secs_f64(t.timeout_secs.unwrap_or(30.0)),
            max_in_flight: t.max_in_flight.unwrap_or(8).max(1),
        }
    }
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

#[derive(Clone)]
pub struct Dispatcher {
    pub worker: Arc<dyn Worker>,
    pub store: Arc<Store>,
    pub retry: RetryPolicy,
    pub client: reqwest::Client,
}

/// How one attempt ended, for the queue.
struct Finished {
    study: String,
    /// The delivery as recorded; None when shutdown cancelled the attempt (nothing recorded).
    after: Option<Delivery>,
}

impl Dispatcher {
    pub fn new(
        worker: Arc<dyn Worker>,
        store: Arc<Store>,
        target: &super::settings::TargetConfig,
    ) -> Result<Dispatcher, crate::error::AppError> {
        let retry = RetryPolicy::from_target(target);
        let client = http_client(retry.timeout).map_err(crate::error::AppError::HttpClient)?;
        Ok(Dispatcher {
            worker,
            store,
            retry,
            client,
        })
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let name = this.worker.name().to_string();
        let mut queue = Queue::default();
        match this.load_pending().await {
            Ok(p) => p.into_iter().for_each(|d| {
                queue.push(d);
            }),
            Err(e) => tracing::error!(worker = %name, error = %e, "cannot read pending deliveries"),
        }
        let mut tasks: JoinSet<Finished> = JoinSet::new();
        loop {
            this.take_retries(&mut queue).await;
            if let Err(e) = this.intake(&mut queue).await {
                tracing::error!(worker = %name, error = %e, "reading the outbox failed");
            }
            if this.may_start() {
                for d in queue.start(now_ms(), this.retry.max_in_flight) {
                    tasks.spawn(this.clone().deliver(d, shutdown.clone()));
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(done) = tasks.join_next() => match done {
                    Ok(f) => queue.finish(&f.study, f.after),
                    Err(e) => tracing::error!(worker = %name, error = %e, "a delivery task failed"),
                },
                _ = tokio::time::sleep(POLL) => {}
            }
        }
        // Attempts in flight see the cancellation and return at once, unrecorded (pending).
        let cancelled = queue.in_flight();
        while tasks.join_next().await.is_some() {}
        if cancelled > 0 {
            tracing::info!(worker = %name, cancelled, "shutdown: sends in flight cancelled; they stay pending");
        }
    }

    /// Heavy workers wait until instances stop arriving (they catch up in the quiet).
    fn may_start(&self) -> bool {
        !self.worker.yields_to_ingest()
            || now_ms().saturating_sub(self.store.ingestor.last_activity_ms()) >= INGEST_QUIET_MS
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, WorkerError> + Send + 'static,
    ) -> Result<T, WorkerError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store)).await?
    }

    async fn load_pending(&self) -> Result<Vec<Delivery>, WorkerError> {
        let name = self.worker.name().to_string();
        self.blocking(move |store| {
            let mut out = Vec::new();
            let mut after: Option<u64> = None;
            loop {
                let page = store.outbox.deliveries(
                    Some(&name),
                    after.map(|s| (name.as_str(), s)),
                    1000,
                )?;
                let Some(last) = page.last() else { break };
                after = Some(last.seq);
                out.extend(
                    page.into_iter()
                        .filter(|d| d.state == DeliveryState::Pending),
                );
            }
            Ok(out)
        })
        .await
    }

    async fn take_retries(&self, queue: &mut Queue) {
        let name = self.worker.name().to_string();
        match self
            .blocking(move |store| Ok(store.outbox.take_retries(&name)?))
            .await
        {
            Ok(retried) => {
                for d in retried {
                    let seq = d.seq;
                    if queue.push(d) {
                        tracing::info!(worker = self.worker.name(), seq, "retry requested");
                    } else {
                        tracing::info!(
                            worker = self.worker.name(),
                            seq,
                            "retry requested while being attempted; left to that attempt"
                        );
                    }
                }
            }
            Err(e) => {
                tracing::error!(worker = self.worker.name(), error = %e, "reading retries failed")
            }
        }
    }

    /// Turn new outbox events this worker wants into pending deliveries.
    async fn intake(&self, queue: &mut Queue) -> Result<(), WorkerError> {
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
            queue.push(d);
        }
        Ok(())
    }

    /// One attempt, recorded; cancelled (and not recorded) when shutdown comes first.
    async fn deliver(self: Arc<Self>, d: Delivery, shutdown: CancellationToken) -> Finished {
        let study = d.study_instance_uid.clone();
        let seq = d.seq;
        let d = tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                tracing::info!(worker = self.worker.name(), seq, "attempt cancelled by shutdown");
                return Finished { study, after: None };
            }
            d = self.attempt(d) => d,
        };
        let record = d.clone();
        if let Err(e) = self
            .blocking(move |store| Ok(store.outbox.put_delivery(&record)?))
            .await
        {
            tracing::error!(worker = self.worker.name(), seq, error = %e, "cannot record a delivery");
        }
        Finished {
            study,
            after: Some(d),
        }
    }

    async fn attempt(&self, mut d: Delivery) -> Delivery {
        let seq = d.seq;
        let worker = self.worker.clone();
        let prepared = self
            .blocking(move |store| {
                let event = store.outbox.events_after(seq - 1, 1)?.into_iter().next();
                event
                    .filter(|e: &Event| e.seq == seq)
                    .map(|e| worker.prepare(&e, store))
                    .transpose()
            })
            .await;
        let outgoing = match prepared {
            Ok(Some(Prepared::Send(out))) => out,
            Ok(Some(Prepared::Skip)) | Ok(None) => {
                d.state = DeliveryState::Skipped;
                return d;
            }
            Ok(Some(Prepared::Done)) => {
                d.attempts += 1;
                d.state = DeliveryState::Delivered;
                return d;
            }
            Ok(Some(Prepared::Hold(reason))) => {
                tracing::warn!(worker = self.worker.name(), seq, %reason, "held");
                d.state = DeliveryState::Held;
                d.last_error = Some(reason);
                return d;
            }
            Err(e) => {
                self.failed(&mut d, &e.to_string());
                return d;
            }
        };
        match send(&self.client, outgoing, &d.idempotency_key).await {
            Ok(()) => {
                d.attempts += 1;
                d.state = DeliveryState::Delivered;
                d.last_error = None;
                tracing::info!(worker = self.worker.name(), seq, key = %d.idempotency_key, "delivered");
            }
            Err(e) => self.failed(&mut d, &e.to_string()),
        }
        d
    }

    fn failed(&self, d: &mut Delivery, error: &str) {
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
}
