//! The rayon pool that decodes and encodes images, sized to the cores, and the bridge that
//! lets async handlers wait for it without blocking a tokio thread.

use std::sync::Arc;

/// A rendering thread pool shared by all requests.
#[derive(Clone)]
pub struct RenderPool {
    pool: Arc<rayon::ThreadPool>,
}

impl RenderPool {
    /// A pool of `threads` workers (0 = one per core).
    pub fn new(threads: usize) -> Result<RenderPool, rayon::ThreadPoolBuildError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("render-{i}"))
            // A panic in a decoder must not take the server down: log it; the waiting request
            // sees its result channel closed and answers 500.
            .panic_handler(|p| {
                let what = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(panic = %what, "render task panicked");
            })
            .build()?;
        Ok(RenderPool {
            pool: Arc::new(pool),
        })
    }

    /// Run `f` on the pool; None if it panicked.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pool.spawn(move || {
            let _ = tx.send(f());
        });
        rx.await.ok()
    }

    /// Run `f` inside the pool from a blocking thread (for parallel iterators).
    pub fn install<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        self.pool.install(f)
    }

    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }
}
