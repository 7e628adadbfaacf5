//! LiveMix edge node.
//!
//! [`run`] starts it from its configuration; [`serve`] starts it on a bus, object store and listener the
//! caller built.

pub mod api;
pub mod auth;
pub mod cache;
pub mod config;
pub mod control_client;
pub mod fetch;
pub mod fetch_allow;
pub mod forwarder;
pub mod gate;
pub mod identity;
pub mod node;
pub mod recorder;
pub mod sources;
pub mod timing;
pub mod uploads;

use std::{future::Future, sync::Arc, time::Duration};

use anyhow::Context;
use livemix_common::{
    api::with_conventions,
    bus::{BusArgs, SharedBus},
    door::BodyBudget,
    store::SharedStore,
    supervise::{Policy, Supervisor},
    telemetry::{HttpMetrics, Metrics},
};
use prometheus_client::metrics::{counter::Counter, family::Family};
use tokio::net::TcpListener;

use crate::{
    api::ApiState,
    config::{EdgeArgs, EdgeSettings},
    control_client::ControlClient,
    fetch::Fetcher,
    forwarder::{ForwardMetrics, Forwarder},
    identity::RunMarks,
    node::{Edge, Parts},
    recorder::{RecordMetrics, Recorder, RecorderConfig},
    sources::Sources,
};

/// How long a request body waits for room in the body budget before it is refused (503).
const BODY_BUDGET_WAIT: Duration = Duration::from_secs(1);

/// How long supervised tasks get to finish after the API stopped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Starts the edge from its configuration and runs until SIGINT or SIGTERM.
pub async fn run(args: EdgeArgs) -> anyhow::Result<()> {
    tracing::info!(version = env!("CARGO_PKG_VERSION"), edge_id = %args.settings.edge_id(), "starting livemix-edge");
    if let Some(root) = &args.settings.file_root {
        anyhow::ensure!(root.is_dir(), "--file-root {} is not a directory", root.display());
    }
    // Settings that cannot work stop the start before any service is dialled.
    args.settings.control_token()?;
    args.settings.fetch_allow().map_err(anyhow::Error::msg).context("--fetch-allow")?;
    args.settings.source_fetch_allow().map_err(anyhow::Error::msg).context("--source-fetch-allow")?;
    let store = args.store.connect().await.context("object store (LIVEMIX_BUCKET, S3_ENDPOINT)")?;
    let bus = args.bus.connect().await.context("message bus (PUBSUB_PROJECT_ID, PUBSUB_EMULATOR_HOST)")?;
    prepare_topics(&args.bus, &bus, &args.settings).await?;
    let addr = args.listen_addr();
    auth::check_exposure(args.settings.auth().protects_ingest(), addr, args.settings.insecure_no_auth)?;
    let listener = TcpListener::bind(addr).await.with_context(|| format!("binding the edge API to {addr}"))?;
    tracing::info!(%addr, "edge API listening");
    let edge_id = args.settings.edge_id();
    let served =
        serve(args.settings, args.store.object_prefix.clone(), store, bus.clone(), listener, shutdown_signal()).await;
    if args.bus.manages_topics() {
        // Commands sent while no process of this edge runs would be stale by the time one starts.
        if let Err(err) = bus.delete_subscription(&edge_id).await {
            tracing::warn!(%err, subscription = edge_id, "could not delete the command subscription");
        }
    }
    served
}

/// Creates the edge's command topic (and the control topic) when `--create-topics` is set, and renews the edge's
/// command subscription: commands left for an earlier process of this edge are stale (their senders gave up).
pub async fn prepare_topics(args: &BusArgs, bus: &SharedBus, settings: &EdgeSettings) -> anyhow::Result<()> {
    let edge_id = settings.edge_id();
    args.prepare(bus.as_ref(), &edge_id, None).await?;
    args.prepare(bus.as_ref(), &settings.control_topic, None).await?;
    if args.manages_topics() {
        bus.renew_owned_subscription(&edge_id, &edge_id)
            .await
            .with_context(|| format!("creating the command subscription {edge_id}"))?;
    }
    Ok(())
}

/// Serves the edge API, takes commands and reports status until `shutdown` completes.
pub async fn serve(
    settings: EdgeSettings,
    object_prefix: String,
    store: SharedStore,
    bus: SharedBus,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let metrics = Metrics::new("livemix_edge");
    let http_metrics = HttpMetrics::new(&metrics);
    let forward_metrics = ForwardMetrics {
        forwarded: metrics.register("segments_forwarded", "Segments forwarded to the control node", Counter::default()),
        dropped: metrics.register("segments_not_forwarded", "Segments not forwarded, by reason", Family::default()),
    };
    let recorder = Recorder::start(
        RecorderConfig {
            spool_dir: settings.spool_dir(),
            spool_bytes: settings.spool_bytes,
            object_prefix,
            control_topic: settings.control_topic.clone(),
        },
        store,
        bus.clone(),
        RecordMetrics::register(&metrics),
    )
    .await
    .context("recorder (--spool-dir)")?;
    let edge_id = settings.edge_id();
    let supervisor = Supervisor::new(&metrics, Policy::default());
    settings.source_fetch_allow().map_err(anyhow::Error::msg).context("--source-fetch-allow")?;
    let control = ControlClient::new(&settings.control_url, settings.control_token()?)
        .context("control node's edge-facing API (--control-url)")?;
    let marks = RunMarks::open(settings.spool_dir().join("runs")).context("encoder runs (--spool-dir)")?;
    let sources = Arc::new(Sources::with_marks(marks));
    let commands = bus.subscribe(&edge_id).await.with_context(|| format!("subscribing to commands on {edge_id}"))?;
    let edge = Edge::new(Parts {
        fetcher: Fetcher::new(
            settings.fetch_timeout(),
            settings.max_segment_bytes,
            Arc::new(settings.fetch_allow().map_err(anyhow::Error::msg).context("--fetch-allow")?),
        )
        .context("HTTP client")?,
        forwarder: Arc::new(Forwarder::new(
            control.clone(),
            Arc::clone(&sources),
            settings.forward_queue,
            forward_metrics,
            supervisor.clone(),
        )),
        recorder,
        control,
        sources,
        bus,
        supervisor: supervisor.clone(),
        settings: settings.clone(),
    });
    edge.start(commands);

    let limits = gate::BodyLimits {
        max_playlist_bytes: settings.max_playlist_bytes,
        max_segment_bytes: settings.max_segment_bytes,
    };
    let auth = settings.auth();
    let preview_protected = auth.protects_preview();
    let door = gate::EdgeGate::door(auth, limits, BodyBudget::new(settings.body_budget_bytes, BODY_BUDGET_WAIT));
    let app = with_conventions(api::routes(limits, door), "edge", http_metrics).with_state(ApiState {
        edge,
        metrics,
        preview_origins: settings.preview_cors_origins.clone().into(),
        preview_protected,
    });
    // Tokens given in the path move into the header before routing (and before the access log sees the path).
    let app = axum::Router::new()
        .fallback_service(tower::Layer::layer(&axum::middleware::map_request(auth::lift_path_token), app));
    tracing::info!("livemix-edge ready");
    let served = livemix_common::server::serve(listener, app, shutdown).await.context("edge API server");
    supervisor.shutdown(SHUTDOWN_GRACE).await;
    served
}

pub use livemix_common::signal::shutdown_signal;
