//! Segment bytes for players, served from this process's memory first.
//!
//! [`HotSegments`] keeps the newest live segments and the recorded segments players are replaying as [`Bytes`]
//! (shared, never copied per request) in a byte-bounded in-process cache. Behind it, live segments come from the
//! shared cache (memcached: a segment may have arrived at another replica) and recorded ones from the shared
//! cache with the object store behind it ([`SegmentLoader`]). Concurrent misses for one key make one fill, in
//! this process and therefore at most one object-store read per replica.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use livemix_common::{
    cache::{CacheError, SharedCache},
    store::{SharedStore, StoreError},
};
use moka::{Expiry, future::Cache};
use prometheus_client::metrics::counter::Counter;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Cache key of a live segment.
pub fn live_cache_key(source: Uuid, name: &str) -> String {
    format!("live:{source}:{name}")
}

/// Cache key of a recorded object.
pub fn recorded_cache_key(uri: &str) -> String {
    format!("obj:{uri}")
}

/// How long a live segment filled from the shared cache stays in this process. Short: a restarted encoder reuses
/// names (`index0.ts` again) once a name is a minute old (`db::RETRY_WINDOW`), and only the replica that takes the
/// new segment replaces its copy; long enough that a segment is read from memcached about once per listing.
pub const LIVE_FILL_TTL: Duration = Duration::from_secs(10);

/// Segment bytes with their entity tag, computed once when they enter this process.
#[derive(Debug, Clone)]
pub struct SegmentBytes {
    pub data: Bytes,
    /// A strong `ETag` (quoted) derived from the bytes, so every replica gives the same bytes the same tag.
    pub etag: Arc<str>,
}

impl SegmentBytes {
    pub fn new(data: Bytes) -> Self {
        let etag = etag_of(&data).into();
        Self { data, etag }
    }
}

/// A strong entity tag of `data`: its length and the first 64 bits of its SHA-256, quoted. A specified hash (not
/// std's `DefaultHasher`, whose algorithm may change between Rust releases), so replicas built apart, as in a
/// rolling upgrade, give the same bytes the same tag.
pub fn etag_of(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    format!("\"{:x}-{:016x}\"", data.len(), u64::from_be_bytes(first))
}

#[derive(Clone)]
struct Entry {
    body: SegmentBytes,
    ttl: Duration,
}

/// Each entry lives for the TTL it was stored with; a replacement restarts it.
struct PerEntryTtl;

impl Expiry<String, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _key: &String, entry: &Entry, _at: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        entry: &Entry,
        _at: Instant,
        _remaining: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// Why a live segment could not be read from the shared cache.
#[derive(Debug, thiserror::Error)]
enum LiveMiss {
    /// Not there: never arrived, or expired. Not remembered, as the segment may arrive any moment.
    #[error("not cached")]
    Absent,
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// The shared cache failed while filling this process's copy of a segment.
pub type FillError = Arc<dyn std::error::Error + Send + Sync>;

/// The in-process, byte-bounded layer in front of the shared cache. Cheap to clone (one shared cache).
#[derive(Clone)]
pub struct HotSegments {
    cache: Cache<String, Entry>,
    /// `false` for a zero budget: nothing is kept, but concurrent misses still share one load.
    keeps: bool,
}

impl HotSegments {
    /// A layer holding at most `max_bytes` of segments (and keys); 0 keeps none.
    pub fn new(max_bytes: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &String, entry: &Entry| u32::try_from(entry.body.data.len() + key.len()).unwrap_or(u32::MAX))
            .expire_after(PerEntryTtl)
            .build();
        Self { cache, keeps: max_bytes > 0 }
    }

    fn ttl(&self, ttl: Duration) -> Duration {
        if self.keeps { ttl } else { Duration::ZERO }
    }

    /// Keeps `data` under `key` for `ttl`, replacing what was there; returns it with its tag.
    pub async fn insert(&self, key: String, data: Bytes, ttl: Duration) -> SegmentBytes {
        let body = SegmentBytes::new(data);
        self.cache.insert(key, Entry { body: body.clone(), ttl: self.ttl(ttl) }).await;
        body
    }

    pub fn contains(&self, key: &str) -> bool {
        self.keeps && self.cache.contains_key(key)
    }

    /// The bytes under `key`: from memory, or else from `load` (once, however many ask at the same time: the
    /// others wait for that load), kept for `ttl`. Failures are not remembered.
    pub async fn get_or_load<E, F>(&self, key: &str, ttl: Duration, load: F) -> Result<SegmentBytes, Arc<E>>
    where
        E: Send + Sync + 'static,
        F: Future<Output = Result<Bytes, E>>,
    {
        if let Some(entry) = self.cache.get(key).await {
            return Ok(entry.body);
        }
        let ttl = self.ttl(ttl);
        let init = async { load.await.map(|data| Entry { body: SegmentBytes::new(data), ttl }) };
        self.cache.try_get_with(key.to_owned(), init).await.map(|entry| entry.body)
    }

    /// A live segment: from memory, else from the shared cache (it may have arrived at another replica).
    /// `Ok(None)` when it is in neither.
    pub async fn live(&self, cache: &SharedCache, source: Uuid, name: &str) -> Result<Option<SegmentBytes>, FillError> {
        let key = live_cache_key(source, name);
        let load = async { cache.get(&key).await?.ok_or(LiveMiss::Absent) };
        match self.get_or_load(&key, LIVE_FILL_TTL, load).await {
            Ok(body) => Ok(Some(body)),
            Err(miss) if matches!(*miss, LiveMiss::Absent) => Ok(None),
            Err(failed) => Err(failed),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    #[error("recorded segment {0} is missing from the object store")]
    Missing(String),
    #[error("{0}")]
    Store(Arc<StoreError>),
}

/// Recorded segments: this process's memory, then the shared cache, then the object store.
pub struct SegmentLoader {
    hot: HotSegments,
    cache: SharedCache,
    store: SharedStore,
    ttl: Duration,
    store_reads: Counter,
}

impl SegmentLoader {
    pub fn new(hot: HotSegments, cache: SharedCache, store: SharedStore, ttl: Duration, store_reads: Counter) -> Self {
        Self { hot, cache, store, ttl, store_reads }
    }

    /// The bytes of a recorded object, from memory, the shared cache or else (once, however many ask at the
    /// same time) from the object store. A replayed recording is read from the shared services once per replica.
    pub async fn get(&self, uri: &str) -> Result<SegmentBytes, LoadError> {
        self.hot.get_or_load(&recorded_cache_key(uri), self.ttl, self.load(uri)).await.map_err(|err| (*err).clone())
    }

    /// Loads the objects not yet in memory or the shared cache, in the background, so the next requests of a
    /// player find them. Shared-cache presence is checked with `touch`, so cached segments are not downloaded
    /// just to find out they are there.
    pub fn prime(self: &Arc<Self>, uris: Vec<String>) {
        for uri in uris {
            if self.hot.contains(&recorded_cache_key(&uri)) {
                continue;
            }
            let this = Arc::clone(self);
            tokio::spawn(async move {
                if this.cache.touch(&recorded_cache_key(&uri), this.ttl).await.unwrap_or(false) {
                    return;
                }
                if let Err(err) = this.get(&uri).await {
                    tracing::warn!(%uri, %err, "prefetching a recorded segment failed");
                }
            });
        }
    }

    async fn cached(&self, uri: &str) -> Option<Bytes> {
        match self.cache.get(&recorded_cache_key(uri)).await {
            Ok(hit) => hit,
            Err(err) => {
                tracing::warn!(%uri, %err, "cache read failed; reading the object store");
                None
            }
        }
    }

    async fn load(&self, uri: &str) -> Result<Bytes, LoadError> {
        if let Some(data) = self.cached(uri).await {
            return Ok(data);
        }
        self.store_reads.inc();
        let data = self.store.get(uri).await.map_err(|err| match err {
            StoreError::NotFound { key } => LoadError::Missing(key),
            other => LoadError::Store(Arc::new(other)),
        })?;
        if let Err(err) = self.cache.put(&recorded_cache_key(uri), data.clone(), self.ttl).await {
            tracing::warn!(%uri, %err, "caching a recorded segment failed");
        }
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn concurrent_misses_load_once_and_failures_are_not_kept() {
        let hot = HotSegments::new(1 << 20);
        let loads = std::sync::atomic::AtomicUsize::new(0);
        let load = || async {
            loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, std::io::Error>(Bytes::from_static(b"segment"))
        };
        let ttl = Duration::from_secs(60);
        let (a, b) = tokio::join!(hot.get_or_load("k", ttl, load()), hot.get_or_load("k", ttl, load()));
        assert_eq!(a.unwrap().data, b.unwrap().data);
        assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 1);
        let failed = hot.get_or_load("f", ttl, async { Err::<Bytes, _>(std::io::Error::other("down")) }).await;
        assert!(failed.is_err());
        assert!(!hot.contains("f"), "a failure is not remembered");
    }

    #[tokio::test]
    async fn the_byte_budget_holds_and_replacements_take_over() {
        let hot = HotSegments::new(10_000);
        for i in 0..20 {
            hot.insert(format!("k{i}"), Bytes::from(vec![0; 1000]), Duration::from_secs(60)).await;
        }
        hot.cache.run_pending_tasks().await;
        assert!(hot.cache.weighted_size() <= 10_000, "{}", hot.cache.weighted_size());
        let first = hot.insert("x".into(), Bytes::from_static(b"old"), Duration::from_secs(60)).await;
        let second = hot.insert("x".into(), Bytes::from_static(b"new"), Duration::from_secs(60)).await;
        assert_ne!(first.etag, second.etag, "tags follow the bytes");
        let got = hot.get_or_load("x", Duration::from_secs(1), async { Err::<Bytes, ()>(()) }).await.unwrap();
        assert_eq!(got.data, "new");
        assert_eq!(etag_of(b"new"), etag_of(b"new"));
    }
}
