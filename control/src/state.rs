//! What every handler and background task of the control node shares: the domain's operations
//! ([`crate::domain`]) and the plumbing the server itself needs. Fields are private; handlers reach the
//! operations, never the database or caches behind them.

use std::{sync::Arc, time::Duration};

use axum::extract::FromRef;
use livemix_common::{
    bus::SharedBus,
    cache::SharedCache,
    door::BodyBudget,
    rpc::Requester,
    store::SharedStore,
    telemetry::{HttpMetrics, Metrics},
};
use prometheus_client::metrics::counter::Counter;

use crate::{
    config::Settings,
    db::Db,
    domain::{
        Events,
        evidence::Evidence,
        live::Live,
        ranges::Ranges,
        recordings::{ReadLimits, Recordings},
        sources::Sources,
    },
    edge_link::EdgeLink,
    export::Exporter,
    lifecycle::Lifecycle,
    recording_playlists::RecordingPlaylists,
    segments::{HotSegments, SegmentLoader},
};

/// How long a request waits for room in the body budget before it is refused (503 busy).
const BODY_BUDGET_WAIT: Duration = Duration::from_secs(1);

/// Bytes of rendered recording playlists a replica keeps (a day of two-second segments renders to about 3 MB).
const RECORDING_PLAYLIST_BYTES: u64 = 64 * 1024 * 1024;

/// The backing services a control node runs on.
#[derive(Clone)]
pub struct Backends {
    pub db: Db,
    pub cache: SharedCache,
    pub store: SharedStore,
    pub bus: SharedBus,
}

#[derive(Clone)]
pub struct AppState {
    sources: Sources,
    recordings: Recordings,
    live: Live,
    ranges: Ranges,
    evidence: Evidence,
    exporter: Exporter,
    /// Deletes, retention, the object deletion queue and storage accounting.
    lifecycle: Lifecycle,
    requester: Requester,
    db: Db,
    cache: SharedCache,
    bus: SharedBus,
    /// Bytes of request bodies this process holds at once, across its APIs.
    body_budget: BodyBudget,
    settings: Arc<Settings>,
    metrics: Metrics,
    /// Request counts and latencies, registered once for all three APIs.
    http_metrics: HttpMetrics,
}

impl FromRef<AppState> for Metrics {
    fn from_ref(state: &AppState) -> Metrics {
        state.metrics.clone()
    }
}

impl AppState {
    /// The state of a control node on these backends, with a fresh metrics registry. Builds no connection and
    /// starts no task: [`crate::serve`] runs the loops (replies, inbox, timers) beside it.
    pub fn new(settings: Settings, backends: Backends) -> Self {
        let Backends { db, cache, store, bus } = backends;
        let settings = Arc::new(settings);
        let metrics = Metrics::new("livemix_control");
        let http_metrics = HttpMetrics::new(&metrics);
        let store_reads =
            metrics.register("object_store_reads", "Recorded segments read from the object store", Counter::default());
        let requester = Requester::new(bus.clone(), settings.reply_topic.clone(), settings.command_timeout());
        let edges = EdgeLink::new(requester.clone());
        let events = Events::new(bus.clone(), settings.broadcast_topic.clone());
        let hot = HotSegments::new(settings.hot_segment_bytes);
        let lifecycle = Lifecycle::new(db.clone(), store.clone(), settings.lifecycle.clone(), &metrics);
        let archive = Arc::new(settings.archive.clone());
        let exporter = Exporter::new(store.clone(), Arc::clone(&archive));
        let evidence =
            Evidence::new(db.clone(), store.clone(), settings.playback_signing_key.clone(), archive.max_range_segments);
        let loader = Arc::new(SegmentLoader::new(
            hot.clone(),
            cache.clone(),
            store,
            Duration::from_secs(settings.recording_cache_ttl_secs),
            store_reads,
        ));
        let sources =
            Sources::new(db.clone(), edges.clone(), lifecycle.clone(), events.clone(), settings.default_edge.clone());
        let ranges = Ranges::new(db.clone(), Arc::clone(&loader), archive, settings.prime_segments);
        let recordings = Recordings::new(
            db.clone(),
            edges,
            lifecycle.clone(),
            events,
            loader,
            RecordingPlaylists::new(RECORDING_PLAYLIST_BYTES),
            ReadLimits { prime: settings.prime_segments, max_segments: settings.archive.max_range_segments },
        );
        let live = Live::new(db.clone(), cache.clone(), hot, sources.clone(), Arc::clone(&settings));
        Self {
            sources,
            recordings,
            live,
            ranges,
            evidence,
            exporter,
            lifecycle,
            requester,
            db,
            cache,
            bus,
            body_budget: BodyBudget::new(settings.body_budget_bytes, BODY_BUDGET_WAIT),
            settings,
            metrics,
            http_metrics,
        }
    }

    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    pub fn recordings(&self) -> &Recordings {
        &self.recordings
    }

    pub fn live(&self) -> &Live {
        &self.live
    }

    pub fn ranges(&self) -> &Ranges {
        &self.ranges
    }

    pub fn evidence(&self) -> &Evidence {
        &self.evidence
    }

    pub fn exporter(&self) -> &Exporter {
        &self.exporter
    }

    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn body_budget(&self) -> &BodyBudget {
        &self.body_budget
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn http_metrics(&self) -> &HttpMetrics {
        &self.http_metrics
    }

    /// The requester whose reply loop must run for commands to edges to get their answers.
    pub fn requester(&self) -> &Requester {
        &self.requester
    }

    /// The backing services, for the server's own wiring (subscriptions, the inbox) and readiness.
    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn cache(&self) -> &SharedCache {
        &self.cache
    }

    pub fn bus(&self) -> &SharedBus {
        &self.bus
    }

    /// A copy with other settings (tests of settings-dependent pages).
    #[cfg(test)]
    pub fn with_settings(mut self, settings: Settings) -> Self {
        self.settings = Arc::new(settings);
        self
    }
}
