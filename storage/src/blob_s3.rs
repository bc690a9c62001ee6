//! Blobs on S3-compatible storage (`[blobs] url = "s3://bucket/prefix"`), for several nodes
//! sharing one bucket. An instance is staged in a local file as with the file store, then
//! uploaded (multipart above 16 MiB) before `persist` returns, so an acknowledged instance
//! is in the bucket before the index names it. Reads stream the object; frames and bulk data
//! ask for their byte range.
//!
//! The store's interface is blocking (ingest and the readers run on blocking threads); the
//! object store is async, so its calls run on a small runtime of this store's own and the
//! caller waits on a channel (never `block_on` inside someone else's runtime).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload, WriteMultipart};

pub use crate::blob::S3Settings;
use crate::blob::{BlobKey, BlobStore, StagedBlob};
use crate::error::StorageError;

/// Objects larger than this go up in parts.
const MULTIPART_ABOVE: u64 = 16 << 20;
const PART: usize = 8 << 20;
/// How long one request is retried, and the limits of one attempt.
const RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(10);
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
/// Chunks of a streamed read buffered ahead of the reader.
const READ_AHEAD: usize = 4;

pub struct S3BlobStore {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    staging: PathBuf,
    /// Taken on drop (shut down in the background: the last handle may go in async code).
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for S3BlobStore {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for S3BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3BlobStore")
            .field("prefix", &self.prefix)
            .finish()
    }
}

fn object_error(
    context: &'static str,
    key: &str,
) -> impl FnOnce(object_store::Error) -> StorageError {
    let key = key.to_string();
    move |source| StorageError::ObjectStore {
        context,
        key,
        source,
    }
}

impl S3BlobStore {
    /// Open the bucket named by `settings` (credentials from the settings, else from
    /// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY); staging files go to `<data>/staging`.
    pub fn open(data_dir: &std::path::Path, settings: &S3Settings) -> Result<Self, StorageError> {
        let bad = |detail: String| StorageError::BadKey(format!("[blobs] url: {detail}"));
        let rest = settings
            .url
            .strip_prefix("s3://")
            .ok_or_else(|| bad(format!("{:?} is not s3://bucket[/prefix]", settings.url)))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad(format!("{:?} names no bucket", settings.url)));
        }
        // A bucket that is away must fail a C-STORE within seconds (0xA700: the modality
        // sends again), not after object_store's default three minutes of retries.
        let retry = object_store::RetryConfig {
            backoff: object_store::BackoffConfig::default(),
            max_retries: 3,
            retry_timeout: RETRY_FOR,
        };
        let mut builder = AmazonS3Builder::from_env()
            .with_retry(retry)
            .with_client_options(
                object_store::ClientOptions::new()
                    .with_connect_timeout(CONNECT_TIMEOUT)
                    .with_timeout(REQUEST_TIMEOUT),
            )
            .with_bucket_name(bucket)
            .with_allow_http(settings.allow_http)
            .with_region(settings.region.as_deref().unwrap_or("us-east-1"));
        if let Some(e) = &settings.endpoint {
            builder = builder.with_endpoint(e);
        }
        if let Some(k) = &settings.access_key_id {
            builder = builder.with_access_key_id(k);
        }
        if let Some(k) = &settings.secret_access_key {
            builder = builder.with_secret_access_key(k);
        }
        let store = builder
            .build()
            .map_err(object_error("configuring bucket", bucket))?;
        let staging = data_dir.join("staging");
        fs::create_dir_all(&staging).map_err(|e| StorageError::io("creating", &staging, e))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("s3-blobs")
            .enable_all()
            .build()
            .map_err(|e| StorageError::io("starting the object store runtime", &staging, e))?;
        Ok(S3BlobStore {
            store: Arc::new(store),
            prefix: prefix.trim_matches('/').to_string(),
            staging,
            runtime: Some(runtime),
        })
    }

    fn handle(&self) -> Result<&tokio::runtime::Runtime, StorageError> {
        self.runtime.as_ref().ok_or_else(|| {
            StorageError::io(
                "using",
                &self.staging,
                std::io::Error::other("the object store runtime is shut down"),
            )
        })
    }

    fn path(&self, key: &BlobKey) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(key.0.as_str())
        } else {
            ObjectPath::from(format!("{}/{}", self.prefix, key.0))
        }
    }

    /// Run `fut` on this store's runtime and wait for it here.
    fn run<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T, StorageError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.handle()?.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().map_err(|_| {
            StorageError::io(
                "waiting for",
                &self.staging,
                std::io::Error::other("the object store task ended"),
            )
        })
    }

    fn upload(&self, path: &std::path::Path, key: &BlobKey) -> Result<(), StorageError> {
        let size = fs::metadata(path)
            .map_err(|e| StorageError::io("reading", path, e))?
            .len();
        let (store, location) = (self.store.clone(), self.path(key));
        let name = key.0.clone();
        if size <= MULTIPART_ABOVE {
            let bytes = fs::read(path).map_err(|e| StorageError::io("reading", path, e))?;
            return self
                .run(async move { store.put(&location, PutPayload::from(bytes)).await })?
                .map(|_| ())
                .map_err(object_error("uploading", &name));
        }
        let mut file = File::open(path).map_err(|e| StorageError::io("reading", path, e))?;
        let upload = self
            .run({
                let store = store.clone();
                let location = location.clone();
                async move { store.put_multipart(&location).await }
            })?
            .map_err(object_error("starting the upload of", &name))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut buf = vec![0u8; PART];
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| StorageError::io("reading", path, e))?;
            if n == 0 {
                break;
            }
            writer.write(&buf[..n]);
            // Bound what is in flight: wait for parts before reading more.
            let (w, r) = self.run(async move {
                let r = writer.wait_for_capacity(2).await;
                (writer, r)
            })?;
            writer = w;
            r.map_err(object_error("uploading", &name))?;
        }
        self.run(async move { writer.finish().await })?
            .map(|_| ())
            .map_err(object_error("finishing the upload of", &name))
    }
}

/// A streamed object: chunks arrive from the runtime through a bounded channel.
struct ObjectReader {
    chunks: mpsc::Receiver<Result<Bytes, std::io::Error>>,
    current: Bytes,
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.recv() {
                Ok(Ok(chunk)) => self.current = chunk,
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

impl S3BlobStore {
    fn stream(
        &self,
        key: &BlobKey,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<Box<dyn Read + Send>, StorageError> {
        let (store, location) = (self.store.clone(), self.path(key));
        let name = key.0.clone();
        let got = self.run(async move {
            match range {
                Some(r) => {
                    let options = object_store::GetOptions {
                        range: Some(r.into()),
                        ..Default::default()
                    };
                    store.get_opts(&location, options).await
                }
                None => store.get(&location).await,
            }
        })?;
        let result = got.map_err(object_error("reading", &name))?;
        let (tx, rx) = mpsc::sync_channel(READ_AHEAD);
        self.handle()?.spawn(async move {
            let mut stream = result.into_stream();
            while let Some(chunk) = stream.next().await {
                let item = chunk.map_err(std::io::Error::other);
                let failed = item.is_err();
                if tx.send(item).is_err() || failed {
                    break;
                }
            }
        });
        Ok(Box::new(ObjectReader {
            chunks: rx,
            current: Bytes::new(),
        }))
    }
}

impl BlobStore for S3BlobStore {
    fn stage(&self) -> Result<StagedBlob, StorageError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let path = self.staging.join(format!("{id}.part"));
        crate::blob::stage_file(path, BlobKey(format!("{}/{id}.dcm", &id[0..2])))
    }

    fn persist(&self, staged: StagedBlob) -> Result<BlobKey, StorageError> {
        let StagedBlob {
            path,
            mut file,
            key,
        } = staged;
        let result = file
            .flush()
            .map_err(|e| StorageError::io("writing", &path, e))
            .and_then(|()| self.upload(&path, &key));
        drop(file);
        let _ = fs::remove_file(&path);
        result.map(|()| key)
    }

    fn discard(&self, staged: StagedBlob) {
        let StagedBlob { path, file, .. } = staged;
        drop(file);
        let _ = fs::remove_file(&path);
    }

    fn open(&self, key: &BlobKey) -> Result<Box<dyn Read + Send>, StorageError> {
        self.stream(key, None)
    }

    fn open_range(
        &self,
        key: &BlobKey,
        offset: u64,
        len: u64,
    ) -> Result<Box<dyn Read + Send>, StorageError> {
        if len == 0 {
            return Ok(Box::new(std::io::empty()));
        }
        self.stream(key, Some(offset..offset.saturating_add(len)))
    }

    fn local_path(&self, _key: &BlobKey) -> Option<PathBuf> {
        None
    }

    fn list(&self) -> Result<Vec<(BlobKey, u64)>, StorageError> {
        let store = self.store.clone();
        let prefix = (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()));
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let listed = self.run(async move {
            let mut out = Vec::new();
            let mut objects = store.list(prefix.as_ref());
            while let Some(meta) = objects.next().await {
                let meta = meta?;
                out.push((
                    meta.location.to_string(),
                    meta.last_modified.timestamp_millis(),
                ));
            }
            Ok::<_, object_store::Error>(out)
        })?;
        let listed = listed.map_err(object_error("listing", &self.prefix))?;
        Ok(listed
            .into_iter()
            .filter_map(|(location, ms)| {
                let key = location.strip_prefix(&strip)?.to_string();
                Some((BlobKey(key), u64::try_from(ms).unwrap_or(0)))
            })
            .collect())
    }

    fn delete(&self, key: &BlobKey) -> Result<(), StorageError> {
        let (store, location) = (self.store.clone(), self.path(key));
        match self.run(async move { store.delete(&location).await })? {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(object_error("deleting", &key.0)(e)),
        }
    }
}
