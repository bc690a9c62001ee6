//! Worker modules beside the server: each reacts to events of the outbox and delivers to a
//! hospital system through the dispatcher (at least once, in order per study, retried, dead
//! letters kept), plus the stability detector that emits the quiet-period events.

pub mod dispatch;
pub mod ehr;
pub mod stability;

use pacs_storage::{Event, Store};

/// One request to a target system.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub method: reqwest::Method,
    pub url: String,
    pub content_type: &'static str,
    pub body: serde_json::Value,
    pub bearer: Option<String>,
}

/// A worker: which events it wants and what it sends for one (built on a blocking thread, with
/// the store at hand). `Ok(None)`: nothing to send for this event.
pub trait Worker: Send + Sync {
    fn name(&self) -> &str;
    fn wants(&self, event: &Event) -> bool;
    fn prepare(&self, event: &Event, store: &Store) -> Result<Option<Outgoing>, String>;
}
