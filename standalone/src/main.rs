//! `livemix`: the control node and an edge in one process, on embedded backends — SQLite in a data directory
//! instead of PostgreSQL, the byte-bounded in-memory segment cache instead of memcached, a local object directory
//! instead of S3, the in-process bus instead of Pub/Sub. Each is the implementation production's trait has for
//! local runs, so the code paths above them are production's. Same ports and APIs as the split deployment.

mod demo;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Context;
use clap::Parser;
use livemix_common::{
    bus::{BusArgs, SharedBus, memory::MemoryBus},
    cache::memory::MemoryCache,
    store::{SharedStore, local::LocalStore},
    telemetry::LogArgs,
};
use livemix_control::{
    Backends, Listeners,
    auth::EdgeTokens,
    config::Settings,
    db::{Db, SqliteDb},
};
use livemix_edge::config::EdgeSettings;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The edge's id inside the process (its command topic on the in-process bus, its credential's name).
const EDGE_ID: &str = "livemix-standalone-edge";
/// Key prefix of recorded segments in the object directory.
const OBJECT_PREFIX: &str = "recordings";

/// LiveMix in one process: control node (management, VOD and edge-facing APIs) and an edge (ingest), with their
/// state in --data-dir. `--demo` adds a test-pattern camera.
#[derive(Debug, Parser)]
#[command(name = "livemix", version, about, max_term_width = 110)]
struct Args {
    #[command(flatten)]
    log: LogArgs,
    /// Where the database, recordings and the edge's spool live; kept across restarts.
    #[arg(long, env = "LIVEMIX_DATA_DIR", default_value = "./livemix-data")]
    data_dir: PathBuf,
    /// Register a camera, feed it ffmpeg's test pattern, turn streaming on, record a few seconds and print what to
    /// play.
    #[arg(long)]
    demo: bool,
    /// Address of the management API; loopback unless a management token is set.
    #[arg(long, env = "LIVEMIX_MANAGEMENT_ADDR", default_value = "127.0.0.1:8080")]
    management_addr: SocketAddr,
    /// Address of the VOD API (players).
    #[arg(long, env = "LIVEMIX_VOD_ADDR", default_value = "0.0.0.0:8081")]
    vod_addr: SocketAddr,
    /// Address of the edge-facing API. Only this process's own edge uses it (with a per-process token).
    #[arg(long, env = "LIVEMIX_EDGE_API_ADDR", default_value = "127.0.0.1:8082")]
    edge_api_addr: SocketAddr,
    /// Address of the edge's ingest and preview API (encoders push here). Loopback unless an ingest token is set
    /// (`LIVEMIX_INGEST_TOKEN`, read by the edge's own settings).
    #[arg(long, env = "LIVEMIX_EDGE_ADDR", default_value = "127.0.0.1:9080")]
    ingest_addr: SocketAddr,
    /// Byte budget of the in-memory segment cache.
    #[arg(long, env = "LIVEMIX_MEMORY_CACHE_BYTES", default_value_t = 256 * 1024 * 1024)]
    memory_cache_bytes: usize,
    #[command(flatten)]
    settings: Settings,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Args = livemix_common::config::parse();
    livemix_common::memory::tune_allocator();
    livemix_common::telemetry::init_logging(&args.log);
    // Every listener's connection cap is derived from the descriptor limit: raise it before any is bound.
    livemix_common::fds::raise_limit();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("livemix failed: {err:#}");
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    tracing::info!(version = env!("CARGO_PKG_VERSION"), data_dir = %args.data_dir.display(), "starting livemix");
    let data = &args.data_dir;
    std::fs::create_dir_all(data).with_context(|| format!("creating the data directory {}", data.display()))?;
    let mut settings = args.settings;
    // The edge proves itself to the control node as any edge does, with a credential minted for this process.
    let edge_token = random_token();
    settings.edge_tokens = Some(
        EdgeTokens::parse(&format!("{EDGE_ID}:{edge_token}")).map_err(|err| anyhow::anyhow!("edge token: {err}"))?,
    );
    // One edge serves every source here.
    settings.default_edge = Some(EDGE_ID.to_owned());

    let db_path = data.join("livemix.db");
    let db = SqliteDb::open_file(&db_path, settings.reachable_within())
        .await
        .with_context(|| format!("database {}", db_path.display()))?;
    let db = Db::Sqlite(db);
    let adopted = db.bind_unbound(EDGE_ID).await.context("binding sources to the embedded edge")?;
    if adopted > 0 {
        tracing::info!(adopted, "sources bound to the embedded edge");
    }
    let bus: SharedBus = Arc::new(MemoryBus::default());
    let store: SharedStore = Arc::new(LocalStore::new(data.join("objects")));
    let cache = Arc::new(MemoryCache::new(args.memory_cache_bytes));
    let bus_args = in_process_bus_args();
    livemix_control::prepare_topics(&bus_args, &bus, &settings).await?;

    let listeners = Listeners {
        management: bind(args.management_addr, "management").await?,
        vod: bind(args.vod_addr, "VOD").await?,
        edge: bind(args.edge_api_addr, "edge-facing").await?,
    };
    let ingest = bind(args.ingest_addr, "edge ingest").await?;
    let urls = demo::Urls {
        management: local_url(&listeners.management)?,
        vod: local_url(&listeners.vod)?,
        ingest: local_url(&ingest)?,
    };
    let edge_settings = edge_settings(&local_url(&listeners.edge)?, &edge_token, data)?;
    livemix_edge::auth::check_exposure(
        edge_settings.auth().protects_ingest(),
        args.ingest_addr,
        edge_settings.insecure_no_auth,
    )?;
    livemix_edge::prepare_topics(&bus_args, &bus, &edge_settings).await?;

    let stop = CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            livemix_common::signal::shutdown_signal().await;
            stop.cancel();
        }
    });
    let backends = Backends { db, cache, store: store.clone(), bus: bus.clone() };
    let control = async {
        let served = livemix_control::serve(settings, backends, listeners, stop.clone().cancelled_owned()).await;
        stop.cancel();
        served.context("control node")
    };
    let edge = async {
        let served = livemix_edge::serve(
            edge_settings,
            OBJECT_PREFIX.to_owned(),
            store,
            bus,
            ingest,
            stop.clone().cancelled_owned(),
        )
        .await;
        stop.cancel();
        served.context("edge")
    };
    println!(
        "LiveMix is running (data in {}): management {}, VOD {}, ingest {}",
        data.display(),
        urls.management,
        urls.vod,
        urls.ingest
    );
    let demo = args.demo.then(|| tokio::spawn(demo::run(urls, stop.clone())));
    let (control, edge) = tokio::join!(control, edge);
    if let Some(demo) = demo {
        // Dropping the demo's task kills its ffmpeg.
        demo.abort();
        let _ = demo.await;
    }
    control.and(edge)
}

fn in_process_bus_args() -> BusArgs {
    BusArgs {
        pubsub_project: "livemix-standalone".to_owned(),
        pubsub_emulator_host: None,
        pubsub_endpoint: None,
        create_topics: true,
        in_process_bus: true,
    }
}

/// The edge's settings as `livemix-edge` parses them (so its environment variables apply), pointed at this
/// process's control node, with its spool in the data directory so recordings survive a restart.
fn edge_settings(control_url: &str, token: &str, data: &Path) -> anyhow::Result<EdgeSettings> {
    #[derive(Parser)]
    struct EdgeOnly {
        #[command(flatten)]
        settings: EdgeSettings,
    }
    let argv = [
        "livemix-edge".to_owned(),
        format!("--edge-id={EDGE_ID}"),
        format!("--control-url={control_url}"),
        format!("--edge-token={token}"),
        format!("--spool-dir={}", data.join("spool").display()),
    ];
    Ok(EdgeOnly::try_parse_from(argv).context("edge settings")?.settings)
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("binding the {what} API to {addr}"))
}

/// `http://host:port` of a listener, with a wildcard address replaced by loopback (for printing and dialling).
fn local_url(listener: &TcpListener) -> anyhow::Result<String> {
    let mut addr = listener.local_addr().context("listener address")?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    Ok(format!("http://{addr}"))
}

/// 256 random bits (two v4 UUIDs, from the OS's generator) as hex.
fn random_token() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}
