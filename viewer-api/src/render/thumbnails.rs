//! A bounded cache of rendered thumbnails (least recently used out), so a study list showing
//! a hundred thumbnails is served from memory the second time. Entries are keyed by the
//! instance and its receive time (a replaced instance misses) and evicted when it is deleted.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use bytes::Bytes;
use lru::LruCache;

pub struct ThumbnailCache {
    entries: Mutex<LruCache<String, Bytes>>,
}

fn key(sop_instance_uid: &str, received_ms: u64, variant: &str) -> String {
    format!("{sop_instance_uid}|{received_ms}|{variant}")
}

impl ThumbnailCache {
    pub fn new(capacity: usize) -> ThumbnailCache {
        let cap = NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        ThumbnailCache {
            entries: Mutex::new(LruCache::new(cap)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, Bytes>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn get(&self, sop: &str, received_ms: u64, variant: &str) -> Option<Bytes> {
        self.lock().get(&key(sop, received_ms, variant)).cloned()
    }

    pub fn put(&self, sop: &str, received_ms: u64, variant: &str, image: Bytes) {
        self.lock().put(key(sop, received_ms, variant), image);
    }

    /// Drop every thumbnail of the given instances.
    pub fn evict(&self, sop_instance_uids: &[String]) {
        let mut cache = self.lock();
        let doomed: Vec<String> = cache
            .iter()
            .filter(|(k, _)| {
                let sop = k.split('|').next().unwrap_or_default();
                sop_instance_uids.iter().any(|u| u == sop)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            cache.pop(&k);
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_keyed_by_receive_time_and_evicted_on_delete() {
        let c = ThumbnailCache::new(2);
        c.put("1.1", 5, "jpeg", Bytes::from_static(b"a"));
        c.put("1.2", 5, "jpeg", Bytes::from_static(b"b"));
        assert_eq!(c.get("1.1", 5, "jpeg").as_deref(), Some(&b"a"[..]));
        assert!(
            c.get("1.1", 6, "jpeg").is_none(),
            "replaced instance misses"
        );
        c.put("1.3", 5, "jpeg", Bytes::from_static(b"c"));
        assert!(
            c.get("1.2", 5, "jpeg").is_none(),
            "least recently used went"
        );
        c.evict(&["1.1".to_string()]);
        assert!(c.get("1.1", 5, "jpeg").is_none());
        assert_eq!(c.len(), 1);
    }
}
