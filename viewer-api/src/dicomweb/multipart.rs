//! Streaming `multipart/related` responses (RFC 2387): a blocking producer writes parts into a
//! small bounded channel that is the response body, so a study is never held in memory and a
//! slow client slows the reader down instead of filling RAM.

use std::io::Read;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

/// Chunks in flight between the file reader and the socket.
const CHANNEL_DEPTH: usize = 8;
/// Size of one read from a blob file.
const CHUNK: usize = 256 * 1024;

/// Why a streamed body ended before its last part.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("the client went away")]
    Disconnected,
    #[error("reading the stored file: {0}")]
    Read(#[source] std::io::Error),
    #[error("instance {sop_instance_uid}: {source}")]
    Instance {
        sop_instance_uid: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(transparent)]
    Part(Box<dyn std::error::Error + Send + Sync>),
}

impl StreamError {
    /// A failure while producing the part of one instance.
    pub fn instance(
        sop_instance_uid: &str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StreamError::Instance {
            sop_instance_uid: sop_instance_uid.to_string(),
            source: source.into(),
        }
    }

    /// A failure while producing a part.
    pub fn part(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StreamError::Part(source.into())
    }
}

/// Writes the parts of one multipart body.
pub struct PartWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    boundary: String,
    /// No part written yet: the first delimiter has no CRLF in front (no preamble).
    first: std::cell::Cell<bool>,
}

impl PartWriter {
    fn send(&self, b: Bytes) -> Result<(), StreamError> {
        self.tx
            .blocking_send(Ok(b))
            .map_err(|_| StreamError::Disconnected)
    }

    /// Start a part with its Content-Type (and optional Content-Location).
    pub fn begin(&self, content_type: &str, location: Option<&str>) -> Result<(), StreamError> {
        let lead = if self.first.replace(false) {
            ""
        } else {
            "\r\n"
        };
        let mut head = format!(
            "{lead}--{}\r\nContent-Type: {content_type}\r\n",
            self.boundary
        );
        if let Some(loc) = location {
            head.push_str(&format!("Content-Location: {loc}\r\n"));
        }
        head.push_str("\r\n");
        self.send(Bytes::from(head))
    }

    pub fn bytes(&self, data: impl Into<Bytes>) -> Result<(), StreamError> {
        self.send(data.into())
    }

    /// Copy a reader into the current part chunk by chunk.
    pub fn copy_from(&self, mut reader: impl Read) -> Result<(), StreamError> {
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = reader.read(&mut buf).map_err(StreamError::Read)?;
            if n == 0 {
                return Ok(());
            }
            buf.truncate(n);
            self.send(Bytes::from(buf))?;
        }
    }

    /// End the body abnormally: the client sees a truncated response, not a complete one.
    pub fn fail(&self, reason: String) {
        let _ = self.tx.blocking_send(Err(std::io::Error::other(reason)));
    }

    fn finish(&self) -> Result<(), StreamError> {
        let lead = if self.first.get() { "" } else { "\r\n" };
        self.send(Bytes::from(format!("{lead}--{}--\r\n", self.boundary)))
    }
}

/// A 200 response of one `content_type` whose body `produce` writes on a blocking thread
/// (with [`PartWriter::bytes`] and [`PartWriter::copy_from`], no parts): one stored file
/// streamed as it is read.
pub fn single(
    content_type: &str,
    produce: impl FnOnce(&PartWriter) -> Result<(), StreamError> + Send + 'static,
) -> Response {
    let (tx, mut rx) = mpsc::channel(CHANNEL_DEPTH);
    let writer = PartWriter {
        tx,
        boundary: String::new(),
        first: std::cell::Cell::new(false),
    };
    tokio::task::spawn_blocking(move || {
        if let Err(e) = produce(&writer) {
            let reason = pacs_storage::error_chain(&e);
            tracing::warn!(%reason, "response ended early");
            writer.fail(reason);
        }
    });
    let body = Body::from_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let mut response = Response::new(body);
    if let Ok(v) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    response
}

/// A 200 response whose body `produce` writes on a blocking thread, as `multipart/related`
/// with parts of `part_type`. A failure before the first part (the stored file cannot be
/// read at all) is answered with its own status instead (503 when the bucket is away), not
/// with a 200 that breaks off.
pub async fn stream(
    part_type: &str,
    produce: impl FnOnce(&PartWriter) -> Result<(), StreamError> + Send + 'static,
) -> Response {
    let boundary = format!("pacs-{}", uuid::Uuid::new_v4().simple());
    let (tx, mut rx) = mpsc::channel(CHANNEL_DEPTH);
    let (early_tx, early_rx) = tokio::sync::oneshot::channel::<StreamError>();
    let content_type = format!("multipart/related; type=\"{part_type}\"; boundary={boundary}");
    let writer = PartWriter {
        tx,
        boundary,
        first: std::cell::Cell::new(true),
    };
    tokio::task::spawn_blocking(move || match produce(&writer) {
        Ok(()) => {
            let _ = writer.finish();
        }
        Err(e) if writer.first.get() => {
            // Nothing sent yet: the handler answers with a status.
            let _ = early_tx.send(e);
        }
        Err(e) => {
            let reason = pacs_storage::error_chain(&e);
            tracing::warn!(%reason, "multipart response ended early");
            writer.fail(reason);
        }
    });
    let first = match rx.recv().await {
        Some(first) => first,
        None => {
            return match early_rx.await {
                Ok(e) => early_failure(e),
                Err(_) => crate::ApiError::Internal("the response was not produced".into())
                    .into_response(),
            }
        }
    };
    let rest = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let body = Body::from_stream(futures_util::stream::once(async move { first }).chain(rest));
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    response
}

/// The status of a failure before any part was sent: 503 when the storage behind it is away
/// for now, else 500.
fn early_failure(e: StreamError) -> Response {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if let Some(s) = err.downcast_ref::<pacs_storage::StorageError>() {
            if s.is_unavailable() {
                return crate::ApiError::Unavailable(pacs_storage::error_chain(&e)).into_response();
            }
        }
        source = err.source();
    }
    tracing::warn!(reason = %pacs_storage::error_chain(&e), "multipart response failed before its first part");
    crate::ApiError::Internal(pacs_storage::error_chain(&e)).into_response()
}
