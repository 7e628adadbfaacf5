//! What the bench records: latency samples, counters and errors, one set per phase.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
    time::Duration,
};

use parking_lot::Mutex;

/// Latency samples in microseconds (every sample is kept; a run has at most a few hundred thousand).
#[derive(Default)]
pub struct Latencies(Mutex<Vec<u64>>);

impl Latencies {
    pub fn record(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.0.lock().push(micros);
    }

    pub fn summary(&self) -> Summary {
        let mut samples = self.0.lock().clone();
        Summary::of(&mut samples)
    }
}

/// Percentiles of a set of samples, in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub count: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(samples: &mut [u64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let n = samples.len();
        // Nearest-rank percentile.
        let at = |q: f64| samples[((q * n as f64).ceil() as usize).clamp(1, n) - 1] as f64 / 1000.0;
        Self { count: n, p50: at(0.50), p95: at(0.95), p99: at(0.99), max: samples[n - 1] as f64 / 1000.0 }
    }
}

/// Failed requests by what was asked and how it failed (an HTTP status, `timeout`, `connect`...).
#[derive(Default)]
pub struct Errors(Mutex<BTreeMap<(String, String), u64>>);

impl Errors {
    pub fn add(&self, what: &str, how: impl Into<String>) {
        *self.0.lock().entry((what.to_owned(), how.into())).or_default() += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<(String, String), u64> {
        self.0.lock().clone()
    }

    pub fn total(&self) -> u64 {
        self.0.lock().values().sum()
    }
}

/// How a request failed, for [`Errors`].
pub fn failure_kind(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "timeout".into()
    } else if err.is_connect() {
        "connect".into()
    } else if let Some(status) = err.status() {
        status.as_u16().to_string()
    } else if err.is_body() || err.is_decode() {
        "body".into()
    } else {
        "transport".into()
    }
}

#[derive(Default)]
pub struct PhaseStats {
    /// Camera: `PUT /v1/ingest/{source}/{n}.ts`.
    pub segment_put: Latencies,
    /// Camera: `PUT /v1/ingest/{source}/index.m3u8` (the edge ingests the listed segments in this request).
    pub playlist_put: Latencies,
    /// From the start of a segment's PUT to the edge until the control node's live playlist lists it.
    pub end_to_end: Latencies,
    pub player_playlist: Latencies,
    pub player_segment: Latencies,
    /// Segments uploaded by the cameras (2xx).
    pub segments_pushed: AtomicU64,
    /// Segments the edge reported as new in its playlist replies.
    pub segments_ingested: AtomicU64,
    /// Camera ticks that came late because the previous upload took longer than a segment.
    pub late_ticks: AtomicU64,
    pub player_requests: AtomicU64,
    pub player_bytes: AtomicU64,
    pub errors: Errors,
}

impl PhaseStats {
    /// A live player's request answered with `body`.
    pub fn count_served(&self, body: &[u8]) {
        self.player_requests.fetch_add(1, Relaxed);
        self.player_bytes.fetch_add(body.len() as u64, Relaxed);
    }
}

/// The phase stats every task records into; the orchestrator moves `current` forward.
pub struct Phases {
    pub stats: Vec<PhaseStats>,
    current: AtomicUsize,
}

impl Phases {
    pub fn new(count: usize) -> Self {
        Self { stats: (0..count).map(|_| PhaseStats::default()).collect(), current: AtomicUsize::new(0) }
    }

    pub fn now(&self) -> &PhaseStats {
        &self.stats[self.current.load(Relaxed).min(self.stats.len() - 1)]
    }

    pub fn index(&self) -> usize {
        self.current.load(Relaxed)
    }

    pub fn advance_to(&self, index: usize) {
        self.current.store(index, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut samples: Vec<u64> = (1..=100).map(|ms| ms * 1000).collect();
        let s = Summary::of(&mut samples);
        assert_eq!(s.count, 100);
        assert_eq!((s.p50, s.p95, s.p99, s.max), (50.0, 95.0, 99.0, 100.0));
        assert_eq!(Summary::of(&mut []).count, 0);
        let one = Summary::of(&mut [2500]);
        assert_eq!((one.p50, one.p99, one.max), (2.5, 2.5, 2.5));
    }
}
