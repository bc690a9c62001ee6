//! Why a worker could not build or send a delivery; the text ends up in the delivery's
//! `last_error` (listed by `GET /api/events`).

use std::error::Error as _;

/// Building a request from the archive failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Storage(#[from] pacs_storage::StorageError),
    #[error(transparent)]
    Query(#[from] pacs_storage::query::QueryError),
    #[error("reading the stored file of {sop}: {source}")]
    ReadBlob {
        sop: String,
        #[source]
        source: std::io::Error,
    },
    #[error("preparing the delivery failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Route(#[from] super::route_send::RouteError),
    #[error(transparent)]
    Remote(#[from] pacs_viewer_api::RemoteError),
    #[error("de-identifying: {0}")]
    Deidentify(String),
    #[error("{node} did not send {failed} instances of prior {study}")]
    PriorIncomplete {
        node: String,
        study: String,
        failed: u16,
    },
}

/// Sending a request failed (the attempt counts as failed and is retried).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{url}: {}", describe(.source))]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// Redirects are never followed: a client that follows a 302 turns a POST into a GET of
    /// wherever it points (a login page, say) and the delivery looks done.
    #[error("{url} answered {status} redirecting to {location}; deliveries do not follow redirects (fix the target URL)")]
    Redirected {
        url: String,
        status: reqwest::StatusCode,
        location: String,
    },
    #[error("{url} answered {status}: {body}")]
    Refused {
        url: String,
        status: reqwest::StatusCode,
        body: String,
    },
}

/// A reqwest error with its causes (its own text names neither a timeout nor a refused
/// connection).
fn describe(e: &reqwest::Error) -> String {
    let mut out = if e.is_timeout() {
        "timed out (timeout_secs)".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        e.to_string()
    };
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
