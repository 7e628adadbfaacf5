//! What every handler and background task of the control node shares.

use std::{sync::Arc, time::Duration};

use axum::extract::FromRef;
use livemix_common::{
    bus::SharedBus,
    cache::SharedCache,
    door::BodyBudget,
    rpc::Requester,
    telemetry::{HttpMetrics, Metrics},
};
use prometheus_client::metrics::counter::Counter;

use moka::future::Cache;
use uuid::Uuid;

use crate::{
    Backends,
    api::auth::Bindings,
    config::Settings,
    db::Db,
    edge_link::EdgeLink,
    lifecycle::Lifecycle,
    live_playlists::LivePlaylists,
    recording_playlists::RecordingPlaylists,
    segments::{HotSegments, SegmentLoader},
};

/// How long a request waits for room in the body budget before it is refused (503 busy).
const BODY_BUDGET_WAIT: Duration = Duration::from_secs(1);

/// Bytes of rendered recording playlists a replica keeps (a day of two-second segments renders to about 3 MB).
const RECORDING_PLAYLIST_BYTES: u64 = 64 * 1024 * 1024;

/// Sources whose live playlist (and registered segment length) a replica keeps in memory.
const MAX_LIVE_SOURCES: u64 = 100_000;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub cache: SharedCache,
    pub bus: SharedBus,
    pub edges: EdgeLink,
    /// Deletes, retention, the object deletion queue and storage accounting.
    pub lifecycle: Lifecycle,
    pub loader: Arc<SegmentLoader>,
    /// The segments players fetch, in this process's memory.
    pub hot: HotSegments,
    /// Rendered live playlists, per source.
    pub playlists: LivePlaylists,
    /// Rendered recording playlists, per recording.
    pub recording_playlists: RecordingPlaylists,
    /// Registered segment lengths (seconds), which never change: a new segment's cache TTL is known before the
    /// one database statement that indexes it.
    pub segment_lengths: Cache<Uuid, i32>,
    /// Which edge each source is bound to, as recently read (see [`crate::api::auth::Bindings`]).
    pub bindings: Bindings,
    /// Bytes of request bodies this process holds at once, across its APIs.
    pub body_budget: BodyBudget,
    pub settings: Arc<Settings>,
    pub metrics: Metrics,
    /// Request counts and latencies, registered once for all three APIs.
    pub http_metrics: HttpMetrics,
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
        let metrics = Metrics::new("livemix_control");
        let http_metrics = HttpMetrics::new(&metrics);
        let store_reads =
            metrics.register("object_store_reads", "Recorded segments read from the object store", Counter::default());
        let requester = Requester::new(bus.clone(), settings.reply_topic.clone(), settings.command_timeout());
        let hot = HotSegments::new(settings.hot_segment_bytes);
        let lifecycle = Lifecycle::new(db.clone(), store.clone(), settings.lifecycle.clone(), &metrics);
        let loader = SegmentLoader::new(
            hot.clone(),
            cache.clone(),
            store,
            Duration::from_secs(settings.recording_cache_ttl_secs),
            store_reads,
        );
        Self {
            db,
            cache,
            bus,
            edges: EdgeLink::new(requester),
            lifecycle,
            loader: Arc::new(loader),
            hot,
            playlists: LivePlaylists::new(MAX_LIVE_SOURCES),
            recording_playlists: RecordingPlaylists::new(RECORDING_PLAYLIST_BYTES),
            segment_lengths: Cache::new(MAX_LIVE_SOURCES),
            bindings: Bindings::default(),
            body_budget: BodyBudget::new(settings.body_budget_bytes, BODY_BUDGET_WAIT),
            settings: Arc::new(settings),
            metrics,
            http_metrics,
        }
    }

    /// Publishes a system event on the broadcast topic without making the caller wait or fail for it.
    pub fn broadcast(&self, body: livemix_common::messages::Message) {
        if self.settings.broadcast_topic.is_empty() {
            return;
        }
        let bus = self.bus.clone();
        let topic = self.settings.broadcast_topic.clone();
        tokio::spawn(async move {
            let envelope = livemix_common::messages::Envelope::new(body);
            if let Err(err) = bus.publish(&topic, &envelope).await {
                tracing::warn!(%err, "broadcast failed");
            }
        });
    }
}
