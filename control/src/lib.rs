//! LiveMix control node.
//!
//! [`run`] starts it from its configuration; [`serve`] starts it on backing services and listeners the caller
//! built, which is how the tests run real control nodes on the real services.

pub mod api;
pub mod auth;
pub mod config;
pub mod db;
pub mod domain;
pub mod edge_link;
pub mod export;
pub mod inbox;
pub mod lifecycle;
pub mod live_playlists;
pub mod openapi;
pub mod playlist;
pub mod recording_playlists;
pub mod segments;
pub mod state;

use std::future::Future;

use anyhow::Context;
use livemix_common::bus::{BusArgs, SharedBus};
use tokio::net::TcpListener;

use crate::{
    config::{ControlArgs, Settings},
    db::Db,
    inbox::Inbox,
    state::AppState,
};

/// The sockets of the three APIs.
pub struct Listeners {
    pub management: TcpListener,
    pub vod: TcpListener,
    pub edge: TcpListener,
}

/// Starts the control node from its configuration and runs until SIGINT or SIGTERM.
pub async fn run(args: ControlArgs) -> anyhow::Result<()> {
    let mut settings = args.settings.clone();
    settings.lifecycle.object_prefix.clone_from(&args.store.object_prefix);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "starting livemix-control");
    refuse_empty_secrets()?;
    let (management_addr, edge_addr) = (args.management_addr(), args.edge_api_addr());
    // Before any connection is made: a refused exposure is a configuration error, said at once.
    check_auth(&settings, management_addr, edge_addr)?;
    let db = Db::connect(&args.database_url, args.db_max_connections, settings.reachable_within())
        .await
        .context("database (DATABASE_URL)")?;
    tracing::info!(database = db.kind(), "database ready, migrations applied");
    let cache = args.cache.connect().context("segment cache (MEMCACHED_URL)")?;
    let store = args.store.connect().await.context("object store (LIVEMIX_BUCKET, S3_ENDPOINT)")?;
    let bus = args.bus.connect().await.context("message bus (PUBSUB_PROJECT_ID, PUBSUB_EMULATOR_HOST)")?;
    prepare_topics(&args.bus, &bus, &settings).await?;
    let listeners = Listeners {
        management: bind(management_addr, "management").await?,
        vod: bind(args.vod_addr, "VOD").await?,
        edge: bind(edge_addr, "edge-facing").await?,
    };
    serve(settings, Backends { db, cache, store, bus }, listeners, shutdown_signal()).await
}

async fn bind(addr: std::net::SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await.with_context(|| format!("binding the {what} API to {addr}"))?;
    tracing::info!(%addr, "{what} API listening");
    Ok(listener)
}

/// clap reads an environment variable set to nothing as unset; a token variable that is present but empty is a
/// broken Secret or template, which must stop the start rather than silently drop the token.
fn refuse_empty_secrets() -> anyhow::Result<()> {
    for name in
        ["LIVEMIX_MANAGEMENT_TOKEN", "LIVEMIX_EDGE_TOKEN", "LIVEMIX_EDGE_TOKENS", "LIVEMIX_PLAYBACK_SIGNING_KEY"]
    {
        if std::env::var_os(name).is_some_and(|v| v.to_string_lossy().trim().is_empty()) {
            anyhow::bail!("{name} is set but empty; give it a value or unset it");
        }
    }
    Ok(())
}

/// The credentials are consistent and no API without them is exposed beyond loopback (unless insisted on).
fn check_auth(settings: &Settings, management: std::net::SocketAddr, edge: std::net::SocketAddr) -> anyhow::Result<()> {
    let edge_tokens = settings.edge_credentials().map_err(|err| anyhow::anyhow!("edge credentials: {err}"))?;
    auth::check_exposure(
        settings.management_token.is_some(),
        management,
        settings.has_edge_credentials(),
        edge,
        settings.insecure_no_auth,
    )?;
    if settings.edge_token.is_some() {
        tracing::warn!(
            "LIVEMIX_EDGE_TOKEN is deprecated: every edge holding it can act for any source; give each edge its own \
             token with LIVEMIX_EDGE_TOKENS or --edge-tokens-file (both may be set while edges move over)"
        );
    }
    if !edge_tokens.is_empty() {
        tracing::info!(edges = edge_tokens.len(), "per-edge credentials loaded; sources are bound to their edge");
    }
    if settings.playback_signing_key.is_some() {
        tracing::info!("playback URLs must be signed (GET /v1/playback-url on the management API mints them)");
    }
    Ok(())
}

/// Creates the control node's topics and subscriptions when `--create-topics` is set.
pub async fn prepare_topics(args: &BusArgs, bus: &SharedBus, settings: &Settings) -> anyhow::Result<()> {
    args.prepare(bus.as_ref(), &settings.control_topic, Some(&settings.control_subscription)).await?;
    args.prepare(bus.as_ref(), &settings.reply_topic, None).await?;
    if !settings.broadcast_topic.is_empty() {
        args.prepare(bus.as_ref(), &settings.broadcast_topic, None).await?;
    }
    Ok(())
}

/// Serves the three APIs and runs the bus consumers and timers until `shutdown` completes.
pub async fn serve(
    settings: Settings,
    backends: Backends,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut settings = settings;
    settings.vod_port = settings.vod_port.or_else(|| listeners.vod.local_addr().ok().map(|addr| addr.port()));
    let state = AppState::new(settings.clone(), backends);
    let (reply_topic, reply_subscription) = (&settings.reply_topic, settings.reply_subscription());
    let bus = state.bus();
    bus.renew_owned_subscription(&reply_subscription, reply_topic)
        .await
        .with_context(|| format!("creating this replica's subscription on the reply topic {reply_topic}"))?;
    let replies = bus
        .subscribe(&reply_subscription)
        .await
        .with_context(|| format!("subscribing to the reply subscription {reply_subscription}"))?;
    let inbox = bus
        .subscribe(&settings.control_subscription)
        .await
        .with_context(|| format!("subscribing to {}", settings.control_subscription))?;
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(state.requester().clone().run_reply_loop(replies));
    tasks.spawn(Inbox::new(state.db().clone(), state.lifecycle().clone(), state.metrics()).run(inbox));
    tasks.spawn(state.lifecycle().clone().run_deletions());
    tasks.spawn(state.lifecycle().clone().run_retention());
    tasks.spawn(state.lifecycle().clone().run_gc());
    tasks.spawn(state.live().clone().run_pruning());

    check_auth(&settings, listeners.management.local_addr()?, listeners.edge.local_addr()?)?;
    let limits = livemix_common::server::Limits {
        max_connections: settings.max_connections as usize,
        ..livemix_common::server::Limits::default()
    };
    let apps = [
        ("management", api::management::app(state.clone()), listeners.management),
        ("vod", api::vod::app(state.clone()), listeners.vod),
        ("edge", api::edge::app(state.clone()), listeners.edge),
    ];

    let stop = tokio_util::sync::CancellationToken::new();
    let mut servers = tokio::task::JoinSet::new();
    for (service, app, listener) in apps {
        let stopped = stop.clone().cancelled_owned();
        servers.spawn(async move {
            livemix_common::server::serve_with(listener, app, limits, stopped)
                .await
                .with_context(|| format!("{service} API server"))
        });
    }
    tracing::info!("livemix-control ready");
    shutdown.await;
    tracing::info!("shutting down");
    stop.cancel();
    while let Some(done) = servers.join_next().await {
        done??;
    }
    tasks.abort_all();
    // A replica's reply subscription is its own: left behind, it would collect every answer to every replica.
    if let Err(err) = state.bus().delete_subscription(&reply_subscription).await {
        tracing::warn!(%err, subscription = reply_subscription, "could not delete the reply subscription");
    }
    Ok(())
}

pub use livemix_common::signal::shutdown_signal;
pub use state::Backends;
