//! The edge's segment cache: every source's recent segments, bounded in bytes and by a tracking window.
//!
//! The window is how far back a recording can start (back-fill); the byte bound keeps a burst of large
//! segments from exhausting memory.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;

/// A segment the edge has fetched.
#[derive(Debug)]
pub struct Segment {
    pub source_name: String,
    pub name: String,
    /// Per-source sequence number given by this edge.
    pub seq: u64,
    pub start_ts: DateTime<Utc>,
    pub duration_secs: f64,
    pub discontinuity: bool,
    pub data: Bytes,
    pub cached_at: Instant,
}

impl Segment {
    pub fn length_ms(&self) -> i64 {
        (self.duration_secs * 1000.0).round().max(1.0) as i64
    }

    pub fn end_ts(&self) -> DateTime<Utc> {
        self.start_ts + chrono::Duration::milliseconds(self.length_ms())
    }

    /// The instant a segment is attributed to when deciding whether it belongs to a recording: its middle, so a
    /// recording's duration is right to within one segment.
    pub fn midpoint(&self) -> DateTime<Utc> {
        self.start_ts + chrono::Duration::milliseconds(self.length_ms() / 2)
    }
}

pub struct EdgeCache {
    max_bytes: usize,
    window: Duration,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    sources: HashMap<String, VecDeque<Arc<Segment>>>,
    bytes: usize,
}

impl EdgeCache {
    pub fn new(max_bytes: usize, window: Duration) -> Self {
        Self { max_bytes, window, inner: Mutex::default() }
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, Inner> {
        self.inner.lock()
    }

    /// Adds a segment, evicting expired ones and then the oldest of all sources until it fits.
    pub fn insert(&self, segment: Arc<Segment>) {
        let mut inner = self.lock();
        let size = segment.data.len();
        Self::purge_locked(&mut inner, self.window);
        while inner.bytes + size > self.max_bytes {
            let oldest = inner
                .sources
                .iter()
                .filter_map(|(name, q)| q.front().map(|s| (name.clone(), s.cached_at)))
                .min_by_key(|(_, at)| *at)
                .map(|(name, _)| name);
            let Some(name) = oldest else { break };
            if let Some(evicted) = inner.sources.get_mut(&name).and_then(VecDeque::pop_front) {
                inner.bytes -= evicted.data.len();
                tracing::debug!(source = %name, segment = %evicted.name, "evicted to stay within the cache budget");
            }
        }
        inner.bytes += size;
        inner.sources.entry(segment.source_name.clone()).or_default().push_back(segment);
    }

    fn purge_locked(inner: &mut Inner, window: Duration) -> usize {
        let mut purged = 0;
        let mut freed = 0;
        for queue in inner.sources.values_mut() {
            while queue.front().is_some_and(|s| s.cached_at.elapsed() > window) {
                if let Some(s) = queue.pop_front() {
                    freed += s.data.len();
                    purged += 1;
                }
            }
        }
        inner.bytes -= freed;
        inner.sources.retain(|_, q| !q.is_empty());
        purged
    }

    /// Drops segments older than the tracking window; returns (purged, remaining).
    pub fn purge_expired(&self) -> (usize, usize) {
        let mut inner = self.lock();
        let purged = Self::purge_locked(&mut inner, self.window);
        (purged, inner.sources.values().map(VecDeque::len).sum())
    }

    /// The newest `count` segments of a source, oldest first.
    pub fn newest(&self, source: &str, count: usize) -> Vec<Arc<Segment>> {
        let inner = self.lock();
        let Some(queue) = inner.sources.get(source) else { return Vec::new() };
        queue.iter().skip(queue.len().saturating_sub(count)).cloned().collect()
    }

    /// Every cached segment of a source, oldest first.
    pub fn all(&self, source: &str) -> Vec<Arc<Segment>> {
        self.lock().sources.get(source).map(|q| q.iter().cloned().collect()).unwrap_or_default()
    }

    pub fn get(&self, source: &str, name: &str) -> Option<Arc<Segment>> {
        self.lock().sources.get(source)?.iter().rev().find(|s| s.name == name).cloned()
    }

    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(source: &str, name: &str, size: usize) -> Arc<Segment> {
        Arc::new(Segment {
            source_name: source.into(),
            name: name.into(),
            seq: 0,
            start_ts: Utc::now(),
            duration_secs: 2.0,
            discontinuity: false,
            data: Bytes::from(vec![0; size]),
            cached_at: Instant::now(),
        })
    }

    #[test]
    fn the_byte_budget_evicts_the_oldest_across_sources() {
        let cache = EdgeCache::new(100, Duration::from_secs(60));
        cache.insert(seg("a", "a0", 40));
        cache.insert(seg("b", "b0", 40));
        cache.insert(seg("a", "a1", 40));
        assert!(cache.bytes() <= 100);
        assert!(cache.get("a", "a0").is_none(), "oldest evicted");
        assert!(cache.get("b", "b0").is_some());
        assert_eq!(cache.newest("a", 5).iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), vec!["a1"]);
    }

    #[test]
    fn the_tracking_window_expires_segments() {
        let cache = EdgeCache::new(1000, Duration::from_millis(20));
        cache.insert(seg("a", "a0", 10));
        std::thread::sleep(Duration::from_millis(30));
        cache.insert(seg("a", "a1", 10));
        assert_eq!(cache.purge_expired(), (0, 1), "insert already purged a0");
        assert_eq!(cache.bytes(), 10);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(cache.purge_expired(), (1, 0));
        assert_eq!(cache.bytes(), 0);
    }
}
