//! Reconcile metrics: how often each kind reconciles, how often and why it fails, and how long it takes.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Instant,
};

use livemix_common::telemetry::Metrics;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    kind: &'static str,
    reason: &'static str,
}

#[derive(Clone)]
pub struct ReconcileMetrics {
    runs: Family<KindLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    duration: Family<KindLabels, Histogram>,
    last_reconcile: Arc<AtomicI64>,
}

impl ReconcileMetrics {
    pub fn new(metrics: &Metrics) -> Self {
        Self {
            runs: metrics.register("reconciles", "Reconciles started", Family::default()),
            failures: metrics.register("reconcile_failures", "Reconciles that failed, by reason", Family::default()),
            duration: metrics.register(
                "reconcile_duration_seconds",
                "Time spent in one reconcile",
                Family::<KindLabels, Histogram>::new_with_constructor(|| {
                    Histogram::new([0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 15.0])
                }),
            ),
            last_reconcile: Arc::default(),
        }
    }

    /// Counts a reconcile of `kind`; its duration is recorded when the returned timer drops.
    pub fn start(&self, kind: &'static str) -> ReconcileTimer {
        self.runs.get_or_create(&KindLabels { kind }).inc();
        self.last_reconcile.store(chrono::Utc::now().timestamp(), Ordering::Relaxed);
        ReconcileTimer { histogram: self.duration.get_or_create(&KindLabels { kind }).clone(), started: Instant::now() }
    }

    pub fn failure(&self, kind: &'static str, reason: &'static str) {
        self.failures.get_or_create(&FailureLabels { kind, reason }).inc();
    }

    /// Unix time of the last reconcile started, if any.
    pub fn last_reconcile(&self) -> Option<i64> {
        Some(self.last_reconcile.load(Ordering::Relaxed)).filter(|t| *t > 0)
    }
}

pub struct ReconcileTimer {
    histogram: Histogram,
    started: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_runs_failures_and_durations_per_kind() {
        let registry = Metrics::new("livemix_operator");
        let metrics = ReconcileMetrics::new(&registry);
        drop(metrics.start("VideoSource"));
        drop(metrics.start("VideoSource"));
        metrics.failure("Recording", "SourceNotFound");
        let text = registry.encode();
        assert!(text.contains(r#"livemix_operator_reconciles_total{kind="VideoSource"} 2"#), "{text}");
        assert!(
            text.contains(r#"livemix_operator_reconcile_failures_total{kind="Recording",reason="SourceNotFound"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"livemix_operator_reconcile_duration_seconds_count{kind="VideoSource"} 2"#), "{text}");
        assert!(metrics.last_reconcile().is_some());
    }
}
