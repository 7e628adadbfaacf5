//! The edge's segment cache: every source's recent segments, bounded in bytes and by a tracking window.
//!
//! The window is how far back a recording can start (back-fill); the byte bound keeps a burst of large
//! segments from exhausting memory.
//!
//! Not `moka`: its eviction is TinyLFU (it may refuse to admit the newest segment, or evict a recent one before
//! an old one), expiry and the weight bound are applied lazily, and it cannot list one source's segments in order
//! (the preview's newest N, a recording's back-fill). Live segments are a FIFO per source, and everything here is
//! O(1) per segment: one queue over all sources in arrival order (what expires or is evicted first), one per
//! source, and an index by name.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use livemix_common::segment::SegmentRecord;
use parking_lot::Mutex;

/// A segment the edge has accepted.
#[derive(Debug)]
pub struct CachedSegment {
    /// What the edge decided about it, once, when it accepted it (see [`crate::identity`]): its id, the name the
    /// encoder gave it (reused when the encoder restarts), its start by the edge's clock (see [`crate::timing`]),
    /// its length and whether a discontinuity precedes it. Forwarded and recorded as it is.
    pub record: SegmentRecord,
    pub source_name: String,
    /// As listed (finite, > 0 and bounded, checked when the playlist was parsed); the edge's own preview
    /// playlist lists it so.
    pub duration_secs: f64,
    pub data: Bytes,
    pub cached_at: Instant,
}

impl CachedSegment {
    /// A segment accepted now.
    pub fn new(record: SegmentRecord, source_name: &str, duration_secs: f64, data: Bytes) -> Arc<Self> {
        Arc::new(Self { record, source_name: source_name.to_owned(), duration_secs, data, cached_at: Instant::now() })
    }

    /// `start_ts` plus `ms`; durations are bounded at parse time, so the fallback (the start) is never taken.
    fn after(&self, ms: i64) -> DateTime<Utc> {
        let start = self.record.start_ts;
        TimeDelta::try_milliseconds(ms).and_then(|d| start.checked_add_signed(d)).unwrap_or(start)
    }

    /// The instant a segment is attributed to when deciding whether it belongs to a recording: its middle, so a
    /// recording's duration is right to within one segment.
    pub fn midpoint(&self) -> DateTime<Utc> {
        self.after(self.record.length_ms / 2)
    }
}

/// The edge's one byte budget (`--cache-bytes`): cached segments plus pushed segments waiting in the
/// [`crate::uploads::Uploads`] for their playlist.
#[derive(Debug)]
pub struct ByteBudget {
    max: usize,
    pushed: AtomicUsize,
}

impl ByteBudget {
    pub fn new(max: usize) -> Self {
        Self { max, pushed: AtomicUsize::new(0) }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Bytes held by pushed uploads.
    pub fn pushed(&self) -> usize {
        self.pushed.load(Ordering::Relaxed)
    }

    pub fn add_pushed(&self, bytes: usize) {
        self.pushed.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn sub_pushed(&self, bytes: usize) {
        let _ = self.pushed.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| Some(held.saturating_sub(bytes)));
    }
}

pub struct EdgeCache {
    budget: Arc<ByteBudget>,
    window: Duration,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Every cached segment in arrival order: the front expires, and is evicted, first.
    arrivals: VecDeque<Arc<CachedSegment>>,
    sources: HashMap<String, PerSource>,
    bytes: usize,
}

#[derive(Default)]
struct PerSource {
    /// This source's segments in arrival order, each with its position (how many arrived before it).
    segments: VecDeque<(u64, Arc<CachedSegment>)>,
    /// The newest segment under each name (a restarted encoder reuses names).
    by_name: HashMap<String, Arc<CachedSegment>>,
    arrived: u64,
}

impl Inner {
    /// Drops the oldest segment of all; it is also the oldest of its source.
    fn pop_oldest(&mut self) -> Option<Arc<CachedSegment>> {
        let oldest = self.arrivals.pop_front()?;
        self.bytes -= oldest.data.len();
        if let Some(source) = self.sources.get_mut(&oldest.source_name) {
            if source.segments.front().is_some_and(|(_, s)| Arc::ptr_eq(s, &oldest)) {
                source.segments.pop_front();
            }
            if source.by_name.get(&oldest.record.name).is_some_and(|s| Arc::ptr_eq(s, &oldest)) {
                source.by_name.remove(&oldest.record.name);
            }
            if source.segments.is_empty() {
                self.sources.remove(&oldest.source_name);
            }
        }
        Some(oldest)
    }

    fn purge(&mut self, window: Duration) -> usize {
        let mut purged = 0;
        while self.arrivals.front().is_some_and(|s| s.cached_at.elapsed() > window) {
            self.pop_oldest();
            purged += 1;
        }
        purged
    }
}

impl EdgeCache {
    pub fn new(budget: Arc<ByteBudget>, window: Duration) -> Self {
        Self { budget, window, inner: Mutex::default() }
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, Inner> {
        self.inner.lock()
    }

    /// Adds a segment, evicting expired ones and then the oldest of all sources until it fits.
    pub fn insert(&self, segment: Arc<CachedSegment>) {
        let mut inner = self.lock();
        let size = segment.data.len();
        inner.purge(self.window);
        self.evict_beyond(&mut inner, size);
        inner.bytes += size;
        inner.arrivals.push_back(Arc::clone(&segment));
        let source = inner.sources.entry(segment.source_name.clone()).or_default();
        source.by_name.insert(segment.record.name.clone(), Arc::clone(&segment));
        source.segments.push_back((source.arrived, segment));
        source.arrived += 1;
    }

    /// Evicts the oldest segments until `extra` more bytes fit beside the cache and the uploads.
    fn evict_beyond(&self, inner: &mut Inner, extra: usize) {
        while inner.bytes + self.budget.pushed() + extra > self.budget.max() {
            let Some(evicted) = inner.pop_oldest() else { break };
            tracing::debug!(segment = %evicted.record.id, name = %evicted.record.name, "evicted to stay within the byte budget");
        }
    }

    /// Evicts what no longer fits now that the uploads hold more.
    pub fn make_room(&self) {
        self.evict_beyond(&mut self.lock(), 0);
    }

    /// Drops segments older than the tracking window; returns (purged, remaining).
    pub fn purge_expired(&self) -> (usize, usize) {
        let mut inner = self.lock();
        let purged = inner.purge(self.window);
        (purged, inner.arrivals.len())
    }

    /// The newest `count` segments of a source, oldest first, and the position of the first (how many of the
    /// source's segments arrived in this cache before it: a media sequence number that only grows).
    pub fn newest(&self, source: &str, count: usize) -> (u64, Vec<Arc<CachedSegment>>) {
        let inner = self.lock();
        let Some(source) = inner.sources.get(source) else { return (0, Vec::new()) };
        let skip = source.segments.len().saturating_sub(count);
        let first = source.segments.get(skip).map_or(0, |(position, _)| *position);
        (first, source.segments.iter().skip(skip).map(|(_, s)| Arc::clone(s)).collect())
    }

    /// Every cached segment of a source, oldest first.
    pub fn all(&self, source: &str) -> Vec<Arc<CachedSegment>> {
        self.lock()
            .sources
            .get(source)
            .map(|s| s.segments.iter().map(|(_, s)| Arc::clone(s)).collect())
            .unwrap_or_default()
    }

    /// The newest cached segment of a source under this name.
    pub fn get(&self, source: &str, name: &str) -> Option<Arc<CachedSegment>> {
        self.lock().sources.get(source)?.by_name.get(name).cloned()
    }

    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(source: &str, name: &str, size: usize) -> Arc<CachedSegment> {
        let id = livemix_common::segment_id::SegmentId { source: uuid::Uuid::nil(), run: ulid::Ulid::nil(), seq: 0 };
        let record =
            SegmentRecord { id, name: name.into(), start_ts: Utc::now(), length_ms: 2000, discontinuity: false };
        CachedSegment::new(record, source, 2.0, Bytes::from(vec![0; size]))
    }

    #[test]
    fn the_byte_budget_evicts_the_oldest_across_sources() {
        let cache = EdgeCache::new(Arc::new(ByteBudget::new(100)), Duration::from_secs(60));
        cache.insert(seg("a", "a0", 40));
        cache.insert(seg("b", "b0", 40));
        cache.insert(seg("a", "a1", 40));
        assert!(cache.bytes() <= 100);
        assert!(cache.get("a", "a0").is_none(), "oldest evicted");
        assert!(cache.get("b", "b0").is_some());
        assert_eq!(cache.newest("a", 5).1.iter().map(|s| s.record.name.as_str()).collect::<Vec<_>>(), vec!["a1"]);
    }

    #[test]
    fn pushed_segments_share_the_budget() {
        let budget = Arc::new(ByteBudget::new(100));
        let cache = EdgeCache::new(Arc::clone(&budget), Duration::from_secs(60));
        cache.insert(seg("a", "a0", 40));
        cache.insert(seg("a", "a1", 40));
        budget.add_pushed(30);
        cache.make_room();
        assert_eq!(cache.bytes(), 40, "the oldest gave way to the pushed bytes");
        assert!(cache.get("a", "a0").is_none());
    }

    #[test]
    fn the_tracking_window_expires_segments() {
        let cache = EdgeCache::new(Arc::new(ByteBudget::new(1000)), Duration::from_millis(20));
        cache.insert(seg("a", "a0", 10));
        std::thread::sleep(Duration::from_millis(30));
        cache.insert(seg("a", "a1", 10));
        assert_eq!(cache.purge_expired(), (0, 1), "insert already purged a0");
        assert_eq!(cache.bytes(), 10);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(cache.purge_expired(), (1, 0));
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn a_reused_name_finds_the_newest_and_positions_only_grow() {
        let cache = EdgeCache::new(Arc::new(ByteBudget::new(100)), Duration::from_secs(60));
        let old = seg("a", "index0.ts", 30);
        cache.insert(Arc::clone(&old));
        cache.insert(seg("a", "index1.ts", 30));
        let new = seg("a", "index0.ts", 30);
        cache.insert(Arc::clone(&new));
        assert!(Arc::ptr_eq(&cache.get("a", "index0.ts").unwrap(), &new));
        cache.insert(seg("a", "index1.ts", 30));
        assert!(Arc::ptr_eq(&cache.get("a", "index0.ts").unwrap(), &new), "evicting the old one keeps the new");
        let (first, newest) = cache.newest("a", 2);
        assert_eq!((first, newest.len()), (2, 2));
        assert_eq!(cache.all("a").len(), 3);
        assert_eq!(cache.bytes(), 90);
    }
}
