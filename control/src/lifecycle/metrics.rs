//! The lifecycle's Prometheus metrics: what is stored, what was deleted and why, what garbage collection found.

use livemix_common::{management_api::RetentionReport, telemetry::Metrics};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
};

use crate::db::lifecycle::{DeletionReason, FleetState};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    reason: &'static str,
}

impl ReasonLabels {
    fn of(reason: DeletionReason) -> Self {
        Self { reason: reason.as_str() }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    state: &'static str,
}

#[derive(Clone)]
pub struct LifecycleMetrics {
    /// Sources by state: `registered` (all), `streaming` (wanted on), `reachable` (an edge reported lately),
    /// `streaming_unreachable` (wanted on, no edge reporting), `continuous` (recording every segment).
    sources: Family<StateLabels, Gauge>,
    pub recordings_active: Gauge,
    pub newest_recorded_end: Gauge,
    pub stored_bytes: Gauge,
    pub stored_segments: Gauge,
    pub pending_deletions: Gauge,
    objects_deleted: Family<ReasonLabels, Counter>,
    pub deletion_failures: Counter,
    pub delete_requests: Counter,
    retention_deleted: Family<ReasonLabels, Counter>,
    pub orphans_found: Counter,
    pub missing_objects_found: Counter,
}

impl LifecycleMetrics {
    /// Sets the object-state gauges.
    pub fn set_state(&self, state: &FleetState) {
        for (name, value) in [
            ("registered", state.sources),
            ("streaming", state.streaming),
            ("reachable", state.reachable),
            ("streaming_unreachable", state.streaming_unreachable),
            ("continuous", state.continuous),
        ] {
            self.sources.get_or_create(&StateLabels { state: name }).set(value);
        }
        self.recordings_active.set(state.recordings_active);
        self.newest_recorded_end.set(state.newest_recorded_end.map_or(0, |t| t.timestamp()));
    }

    pub fn new(metrics: &Metrics) -> Self {
        Self {
            sources: metrics.register(
                "sources",
                "Sources by state (registered, streaming, reachable, streaming_unreachable, continuous), as of the last \
                 retention tick",
                Family::default(),
            ),
            recordings_active: metrics.register(
                "recordings_active",
                "Recordings active (continuous ones included), as of the last retention tick",
                Gauge::default(),
            ),
            newest_recorded_end: metrics.register(
                "recorded_segment_newest_timestamp_seconds",
                "When the newest recorded segment indexed ended (seconds since the epoch; 0: none)",
                Gauge::default(),
            ),
            stored_bytes: metrics.register(
                "stored_bytes",
                "Bytes of recorded segments indexed (all sources, as of the last retention pass)",
                Gauge::default(),
            ),
            stored_segments: metrics.register("stored_segments", "Recorded segments indexed", Gauge::default()),
            pending_deletions: metrics.register(
                "pending_object_deletions",
                "Object deletions recorded and not yet confirmed by the store",
                Gauge::default(),
            ),
            objects_deleted: metrics.register(
                "objects_deleted",
                "Objects deleted from the store, by reason (user, source, retention, cap, orphan)",
                Family::default(),
            ),
            deletion_failures: metrics.register(
                "object_deletion_failures",
                "Object deletions the store refused or did not answer; each is retried with backoff",
                Counter::default(),
            ),
            delete_requests: metrics.register(
                "object_delete_requests",
                "Batches of deletions sent to the object store (one DeleteObjects request each on S3)",
                Counter::default(),
            ),
            retention_deleted: metrics.register(
                "retention_deleted",
                "Recorded segments deleted automatically, by reason (retention: age, cap: storage cap)",
                Family::default(),
            ),
            orphans_found: metrics.register(
                "orphans_found",
                "Objects under the prefix that no segment refers to, found by garbage collection",
                Counter::default(),
            ),
            missing_objects_found: metrics.register(
                "missing_objects_found",
                "Indexed segments whose object is missing from the store, found by garbage collection",
                Counter::default(),
            ),
        }
    }

    pub fn object_deleted(&self, reason: DeletionReason) {
        self.objects_deleted.get_or_create(&ReasonLabels::of(reason)).inc();
    }

    pub fn retention_deleted(&self, reason: DeletionReason, report: &RetentionReport) {
        if report.segments_deleted > 0 {
            self.retention_deleted.get_or_create(&ReasonLabels::of(reason)).inc_by(report.segments_deleted);
        }
    }
}
