//! HL7 v2 intake: the `[hl7]` settings, and the handler that applies each message from
//! `pacs_hl7`'s MLLP listener: ORM/OMI to the store's orders (the shared intake rules of
//! `pacs_storage::order_intake`), ADT merges and updates as corrections
//! ([`crate::hl7_patients`]), auditing every message.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pacs_hl7::ack::Sender;
use pacs_hl7::adt::{PatientChange, PatientMessage};
use pacs_hl7::mapping::OrderMessage;
use pacs_hl7::message::Header;
use pacs_hl7::nak::{AckCode, ErrorCode, Refusal};
use pacs_hl7::server::MllpSettings;
use pacs_hl7::server::{BoxFuture, MessageHandler, Outcome};
use pacs_hl7::Inbound;
use pacs_storage::audit::{AuditEntry, Interface, Outcome as AuditOutcome};
use pacs_storage::order_intake::{self, Intent};
use pacs_storage::Store;
use serde::Deserialize;

use crate::config::ConfigError;

/// `[hl7]` in the config file: every key optional; no port, no listener.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Hl7Config {
    /// MLLP port (0 picks a free port) [default: off].
    pub port: Option<u16>,
    /// Address to bind [default: as dicom_bind].
    pub bind: Option<IpAddr>,
    /// Largest message in bytes; a larger one is refused and its connection closed [1 MiB].
    pub max_message_bytes: Option<usize>,
    /// Connections at once; more are closed unread [default: 16].
    pub max_connections: Option<usize>,
    /// Seconds a message has to arrive whole [default: 30].
    pub message_timeout_secs: Option<u64>,
    /// Seconds a connection may wait between messages [default: 300].
    pub idle_timeout_secs: Option<u64>,
    /// MSH-3 / MSH-4 of our ACKs [default: PACS].
    pub sending_application: Option<String>,
    pub sending_facility: Option<String>,
}

/// The resolved `[hl7]`.
#[derive(Debug, Clone)]
pub struct Hl7Settings {
    pub addr: SocketAddr,
    pub mllp: MllpSettings,
}

impl Hl7Config {
    /// The listener's settings, when a port is set (`port_override`: `PACS_HL7_PORT` /
    /// `--hl7-port`).
    pub fn resolve(
        self,
        port_override: Option<u16>,
        dicom_bind: IpAddr,
    ) -> Result<Option<Hl7Settings>, ConfigError> {
        let Some(port) = port_override.or(self.port) else {
            return Ok(None);
        };
        let positive = |name: &str, v: Option<u64>, default: u64| match v {
            Some(0) => Err(ConfigError::Invalid(format!(
                "hl7.{name} must be at least 1"
            ))),
            v => Ok(v.unwrap_or(default)),
        };
        let max_message_bytes = positive(
            "max_message_bytes",
            self.max_message_bytes.map(|v| v as u64),
            1 << 20,
        )?;
        Ok(Some(Hl7Settings {
            addr: SocketAddr::new(self.bind.unwrap_or(dicom_bind), port),
            mllp: MllpSettings {
                max_message_bytes: usize::try_from(max_message_bytes).unwrap_or(usize::MAX),
                max_connections: usize::try_from(positive(
                    "max_connections",
                    self.max_connections.map(|v| v as u64),
                    16,
                )?)
                .unwrap_or(16),
                message_timeout: Duration::from_secs(positive(
                    "message_timeout_secs",
                    self.message_timeout_secs,
                    30,
                )?),
                idle_timeout: Duration::from_secs(positive(
                    "idle_timeout_secs",
                    self.idle_timeout_secs,
                    300,
                )?),
                sender: Sender {
                    application: self.sending_application.unwrap_or_else(|| "PACS".into()),
                    facility: self.sending_facility.unwrap_or_else(|| "PACS".into()),
                },
            },
        }))
    }
}

/// Applies orders and patient changes to the store and audits each message.
pub struct IntakeHandler {
    pub store: Arc<Store>,
}

fn action(intent: Intent) -> &'static str {
    match intent {
        Intent::Place => "order.place",
        Intent::Change | Intent::Upsert => "order.change",
        Intent::Cancel => "order.cancel",
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The sending application and facility: who the HL7 peer says it is.
fn user(header: Option<&Header>) -> String {
    match header {
        Some(h) if !h.sending_application.is_empty() => {
            format!("{}@{}", h.sending_application, h.sending_facility)
        }
        _ => "unknown".into(),
    }
}

impl IntakeHandler {
    fn record(&self, entry: AuditEntry) {
        if let Err(e) = self.store.audit.record(entry) {
            tracing::error!(error = %e, "cannot record audit entry");
        }
    }

    fn order(&self, peer: SocketAddr, message: OrderMessage) -> BoxFuture<'_, Outcome> {
        Box::pin(async move {
            let orders = self.store.orders.clone();
            let OrderMessage {
                header,
                intent,
                order_control,
                order,
            } = message;
            let accession = order.accession_number.clone();
            let patient_id = order.patient.id.clone();
            // RocksDB writes are synced: off the async workers.
            let result = tokio::task::spawn_blocking(move || {
                order_intake::receive(orders.as_ref(), order, intent, now_ms())
            })
            .await;
            let outcome = match result {
                Ok(Ok(received)) => {
                    tracing::info!(
                        %peer,
                        accession = %accession,
                        control = %order_control,
                        unchanged = received.unchanged,
                        "HL7 order applied"
                    );
                    Ok(received)
                }
                Ok(Err(e)) => {
                    tracing::warn!(%peer, accession = %accession, error = %e, "HL7 order refused");
                    Err(Refusal::from_intake(&e))
                }
                Err(e) => {
                    tracing::error!(%peer, error = %e, "HL7 intake task failed");
                    Err(Refusal::new(
                        AckCode::Error,
                        ErrorCode::InternalError,
                        "internal error",
                    ))
                }
            };
            let mut e = AuditEntry::new(
                Interface::Hl7,
                user(Some(&header)),
                peer.to_string(),
                action(intent),
                if outcome.is_ok() {
                    AuditOutcome::Success
                } else {
                    AuditOutcome::Failure
                },
            );
            e.target = Some(format!("accession {accession}"));
            e.patient_id = Some(patient_id).filter(|p| !p.is_empty());
            match &outcome {
                Ok(r) => {
                    e.study_uid = Some(r.order.study_instance_uid.clone());
                    e.detail = Some(format!(
                        "{} {}^{} control {}",
                        order_control, header.message_type, header.trigger, header.control_id
                    ));
                }
                Err(r) => e.detail = Some(r.text.clone()),
            }
            self.record(e);
            outcome.map(|_| ())
        })
    }

    fn patient(&self, peer: SocketAddr, message: PatientMessage) -> BoxFuture<'_, Outcome> {
        Box::pin(async move {
            let PatientMessage { header, change } = message;
            let store = self.store.clone();
            let task_change = change.clone();
            // Rewrites files and commits the index: off the async workers.
            let result = tokio::task::spawn_blocking(move || {
                crate::hl7_patients::apply(&store, &task_change)
            })
            .await;
            let (patient_id, target) = match &change {
                PatientChange::Merge { prior, surviving } => (
                    surviving.id.clone(),
                    format!("patient {} into {}", prior.id, surviving.id),
                ),
                PatientChange::Update(p) => (p.id.clone(), format!("patient {}", p.id)),
            };
            let (outcome, action, detail) = match result {
                Ok(Ok(applied)) => {
                    tracing::info!(%peer, %target, result = %applied.detail(), "HL7 patient change applied");
                    (Ok(()), applied.action(&change), applied.detail())
                }
                Ok(Err(e)) => {
                    tracing::warn!(%peer, %target, error = %e, "HL7 patient change refused");
                    let r = crate::hl7_patients::refusal(&e);
                    let text = r.text.clone();
                    (Err(r), patient_action(&change), text)
                }
                Err(e) => {
                    tracing::error!(%peer, error = %e, "HL7 patient task failed");
                    let r =
                        Refusal::new(AckCode::Error, ErrorCode::InternalError, "internal error");
                    (Err(r), patient_action(&change), "internal error".into())
                }
            };
            let mut e = AuditEntry::new(
                Interface::Hl7,
                user(Some(&header)),
                peer.to_string(),
                action,
                if outcome.is_ok() {
                    AuditOutcome::Success
                } else {
                    AuditOutcome::Failure
                },
            );
            e.target = Some(target);
            e.patient_id = Some(patient_id).filter(|p| !p.is_empty());
            e.detail = Some(format!(
                "{}^{} control {}: {detail}",
                header.message_type, header.trigger, header.control_id
            ));
            self.record(e);
            outcome
        })
    }
}

fn patient_action(change: &PatientChange) -> &'static str {
    match change {
        PatientChange::Merge { .. } => "patient.merge",
        PatientChange::Update(_) => "patient.update",
    }
}

impl MessageHandler for IntakeHandler {
    fn handle(&self, peer: SocketAddr, message: Inbound) -> BoxFuture<'_, Outcome> {
        match message {
            Inbound::Order(m) => self.order(peer, *m),
            Inbound::Patient(m) => self.patient(peer, *m),
        }
    }

    fn refused(&self, peer: SocketAddr, header: Option<&Header>, refusal: &Refusal) {
        let mut e = AuditEntry::new(
            Interface::Hl7,
            user(header),
            peer.to_string(),
            "order.message",
            AuditOutcome::Failure,
        );
        e.detail = Some(format!("{} {}", refusal.code.code(), refusal.text));
        self.record(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_turns_it_on_and_defaults_apply() {
        let any = IpAddr::from([0, 0, 0, 0]);
        assert!(Hl7Config::default()
            .resolve(None, any)
            .expect("ok")
            .is_none());
        let s = Hl7Config::default()
            .resolve(Some(2575), any)
            .expect("ok")
            .expect("on");
        assert_eq!(s.addr, SocketAddr::new(any, 2575));
        assert_eq!(s.mllp.max_message_bytes, 1 << 20);
        assert_eq!(s.mllp.max_connections, 16);
        assert_eq!(s.mllp.message_timeout, Duration::from_secs(30));
        assert_eq!(s.mllp.idle_timeout, Duration::from_secs(300));
        assert_eq!(s.mllp.sender.application, "PACS");
        let bad = Hl7Config {
            port: Some(1),
            max_connections: Some(0),
            ..Default::default()
        };
        assert!(bad.resolve(None, any).is_err());
    }
}
