//! The command line: `livemix-bench run ...` and `livemix-bench free-ports`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "livemix-bench", version, about, max_term_width = 110)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the benchmark against a running control node and edge.
    #[command(args_override_self = true)]
    Run(Box<RunArgs>),
    /// Serve the same segment and playlist from LiveMix and nginx side by side (see `bench/vs-nginx.sh`).
    #[command(name = "vs-nginx", args_override_self = true)]
    VsNginx(Box<crate::versus::VersusArgs>),
    /// Time the recordings' lifecycle on a running control node: a large delete, a retention pass, a GC scan
    /// (see `bench/lifecycle.sh`).
    Lifecycle(Box<crate::lifecycle::LifecycleArgs>),
    /// Unauthenticated clients trying to exhaust memory and descriptors (see `bench/exhaustion.sh`).
    Exhaustion(Box<crate::exhaustion::ExhaustionArgs>),
    /// Print free loopback TCP ports, one per line (for the script that starts the nodes).
    FreePorts {
        #[arg(default_value_t = 1)]
        count: usize,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Control node management API.
    #[arg(long)]
    pub management_url: String,
    /// Control node VOD API (players).
    #[arg(long)]
    pub vod_url: String,
    /// Edge API (ingest).
    #[arg(long)]
    pub edge_url: String,
    /// PID of the control node, for its memory and CPU.
    #[arg(long)]
    pub control_pid: Option<u32>,
    /// PID of the edge, for its memory and CPU.
    #[arg(long)]
    pub edge_pid: Option<u32>,
    /// Another process whose CPU to report, as NAME=PID (memcached...).
    #[arg(long, value_name = "NAME=PID")]
    pub watch: Vec<String>,
    /// A process and its children whose CPU to report together, as NAME=PID (the PostgreSQL postmaster).
    #[arg(long, value_name = "NAME=PID")]
    pub watch_tree: Vec<String>,
    /// memcached the control node uses (`memcache://host:port` or `host:port`), for its traffic counters.
    #[arg(long, env = "MEMCACHED_URL")]
    pub memcached_url: Option<String>,
    /// An MPEG-TS segment every camera sends as each of its segments.
    #[arg(long)]
    pub segment_file: PathBuf,
    /// Duration of that segment (`#EXTINF`), seconds: the cameras' pace.
    #[arg(long, default_value_t = 1.0)]
    pub segment_duration: f64,
    /// Cameras (sources), K.
    #[arg(long, default_value_t = 50)]
    pub sources: usize,
    /// Length of the live scenario, T seconds (cameras and paced players).
    #[arg(long, default_value_t = 60)]
    pub duration_secs: u64,
    /// Live players, P.
    #[arg(long, default_value_t = 100)]
    pub players: usize,
    /// A live player fetches a playlist and a segment every this many ms (a real player: one segment duration).
    #[arg(long, default_value_t = 1000)]
    pub player_interval_ms: u64,
    /// Seconds of camera pushes before measuring (the edge learns each source from the control node).
    #[arg(long, default_value_t = 5)]
    pub warmup_secs: u64,
    /// Seconds of a capacity phase after the live one: same cameras, players back to back (0: skip).
    #[arg(long, default_value_t = 15)]
    pub saturation_secs: u64,
    /// Segments in the cameras' playlists (ffmpeg's -hls_list_size).
    #[arg(long, default_value_t = 5)]
    pub list_size: usize,
    /// Cameras whose end-to-end delay is sampled.
    #[arg(long, default_value_t = 5)]
    pub delay_sources: usize,
    /// How often the delay probe polls their live playlists, ms (the delay's resolution).
    #[arg(long, default_value_t = 100)]
    pub delay_poll_ms: u64,
    /// The edge's `--cache-bytes`, for the memory target (its RSS within this plus 64 MiB).
    #[arg(long, default_value_t = 512 * 1024 * 1024)]
    pub edge_cache_bytes: u64,
    /// Seconds recorded from one camera for the replay scenario (0: skip it).
    #[arg(long, default_value_t = 10)]
    pub record_secs: u64,
    /// Cameras recorded at once (the first recording is replayed).
    #[arg(long, default_value_t = 1)]
    pub record_sources: usize,
    /// Concurrent players replaying the recording.
    #[arg(long, default_value_t = 30)]
    pub replay_players: usize,
    /// Per-request timeout, ms.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// Where the report goes.
    #[arg(long, default_value = "bench/RESULTS.md")]
    pub out: PathBuf,
    /// Commit under test, for the report.
    #[arg(long, default_value = "unknown")]
    pub commit: String,
    /// The command that ran the bench, for the report.
    #[arg(long, default_value = "")]
    pub command: String,
    /// Extra lines for the report's configuration section (how the nodes were started...).
    #[arg(long)]
    pub note: Vec<String>,
    /// Prefix of the source names registered (a unique one keeps runs apart).
    #[arg(long, default_value = "bench")]
    pub name_prefix: String,
    /// Keep the registered sources instead of deleting them at the end.
    #[arg(long)]
    pub keep_sources: bool,
}

impl RunArgs {
    /// The management API's base URL, without a trailing slash.
    pub fn management(&self) -> &str {
        self.management_url.trim_end_matches('/')
    }

    /// The VOD API's base URL, without a trailing slash.
    pub fn vod(&self) -> &str {
        self.vod_url.trim_end_matches('/')
    }

    /// The edge's base URL, without a trailing slash.
    pub fn edge(&self) -> &str {
        self.edge_url.trim_end_matches('/')
    }

    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_ms)
    }
}
