//! Command-line flags, environment variables and config-file settings of `livemix-edge`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;

use crate::{
    auth::{EdgeAuth, SourceTokens},
    fetch_allow::FetchAllow,
};
use livemix_common::{
    bus::BusArgs,
    config::{ConfigFileArgs, host_scoped_id},
    credentials::{Secret, parse_path_token},
    store::StoreArgs,
    telemetry::LogArgs,
};

/// LiveMix edge node: takes HLS pushed by ffmpeg on the LAN and, dialling out only, forwards it to the control
/// node and records it to the object store.
#[derive(Debug, Clone, Parser)]
#[command(name = "livemix-edge", version, about, max_term_width = 110)]
pub struct EdgeArgs {
    #[command(flatten)]
    pub config: ConfigFileArgs,
    #[command(flatten)]
    pub log: LogArgs,

    /// Address of the ingest and preview API. Default 0.0.0.0:9080 with an ingest token, 127.0.0.1:9080 without
    /// one (a non-loopback address without a token is refused; see --insecure-no-auth).
    #[arg(long, env = "LIVEMIX_EDGE_ADDR")]
    pub listen_addr: Option<SocketAddr>,

    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub bus: BusArgs,
    #[command(flatten)]
    pub settings: EdgeSettings,
}

/// Behaviour settings, separate from where the backing services are so tests can build them directly.
#[derive(Debug, Clone, clap::Args)]
pub struct EdgeSettings {
    /// This edge's id: reported to control as `rr_target` and the Pub/Sub topic (and subscription) it takes
    /// commands on. Default `livemix-edge-<hostname>`.
    #[arg(long, env = "LIVEMIX_EDGE_ID")]
    pub edge_id: Option<String>,
    /// Base URL of the control node's edge-facing API.
    #[arg(long, env = "LIVEMIX_CONTROL_URL", default_value = "http://127.0.0.1:8082")]
    pub control_url: String,
    /// Bearer token for the control node's edge-facing API.
    #[arg(long, env = "LIVEMIX_EDGE_TOKEN", hide_env_values = true)]
    pub edge_token: Option<String>,
    /// Topic the control node reads recorded-segment reports from.
    #[arg(long, env = "LIVEMIX_CONTROL_TOPIC", default_value = "livemix-control")]
    pub control_topic: String,
    /// Directory `file://` segment prefixes must lie under; without it `file://` prefixes are refused.
    #[arg(long, env = "LIVEMIX_FILE_ROOT")]
    pub file_root: Option<PathBuf>,
    /// Hosts `http(s)://` segment prefixes may reach: CIDRs (`192.168.1.0/24`), addresses and host names
    /// (`cams.lan`, `*.site.example`), comma-separated. Empty (the default): http prefixes are refused. A listed
    /// name resolving to loopback, link-local or other special addresses is still refused unless a CIDR allows it.
    #[arg(long, env = "LIVEMIX_FETCH_ALLOW", value_delimiter = ',')]
    pub fetch_allow: Vec<String>,
    /// Token ffmpeg must send to push into this edge (`Authorization: Bearer`, or `/v1/ingest/{source}/{token}/`);
    /// also opens the preview unless --preview-token is set.
    #[arg(long, env = "LIVEMIX_INGEST_TOKEN", hide_env_values = true, value_parser = parse_path_token)]
    pub ingest_token: Option<Secret>,
    /// Per-source ingest tokens, `source:token` entries separated by commas: each pushes its own source only.
    #[arg(long, env = "LIVEMIX_INGEST_TOKENS", hide_env_values = true, value_parser = SourceTokens::parse)]
    pub ingest_tokens: Option<SourceTokens>,
    /// Token for the local preview (`/v1/vod/live/...`), `/v1/source` and `/debug/tasks`; the ingest token works
    /// there too.
    #[arg(long, env = "LIVEMIX_PREVIEW_TOKEN", hide_env_values = true, value_parser = parse_path_token)]
    pub preview_token: Option<Secret>,
    /// Serve ingest without any token on a non-loopback address (only where nothing untrusted can reach it).
    #[arg(long, env = "LIVEMIX_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// Longest time one playlist's segments are read for, in seconds; segments not read by then are retried with
    /// the next playlist.
    #[arg(long, env = "LIVEMIX_INGEST_DEADLINE_SECS", default_value_t = 10)]
    pub ingest_deadline_secs: u64,
    /// Only this many of a playlist's newest entries are considered (older ones were ingested or are too old).
    #[arg(long, env = "LIVEMIX_MAX_PLAYLIST_ENTRIES", default_value_t = 64)]
    pub max_playlist_entries: usize,
    /// Timeout for fetching a segment from an `http(s)://` prefix, in milliseconds.
    #[arg(long, env = "LIVEMIX_FETCH_TIMEOUT_MS", default_value_t = 5000)]
    pub fetch_timeout_ms: u64,
    /// Largest segment accepted, in bytes.
    #[arg(long, env = "LIVEMIX_MAX_SEGMENT_BYTES", default_value_t = 8_000_000)]
    pub max_segment_bytes: usize,
    /// Largest playlist accepted, in bytes.
    #[arg(long, env = "LIVEMIX_MAX_PLAYLIST_BYTES", default_value_t = 1024 * 1024)]
    pub max_playlist_bytes: usize,
    /// Bytes of request bodies (pushed segments and playlists) the edge receives at once; a body that finds no
    /// room within a second is refused (503, `busy`). A body with a Content-Length takes that much, one without
    /// takes its route's cap. Checked after the token, so only clients with a token draw on it.
    #[arg(long, env = "LIVEMIX_BODY_BUDGET_BYTES", default_value_t = 128 * 1024 * 1024)]
    pub body_budget_bytes: u64,
    /// Web origins (`https://console.example`) allowed to read the preview from a page when it has no token;
    /// with a token any origin may (it must send the token). Comma-separated; default none.
    #[arg(long, env = "LIVEMIX_PREVIEW_CORS_ORIGINS", value_delimiter = ',')]
    pub preview_cors_origins: Vec<String>,
    /// Byte budget of the segment cache and the segments pushed and waiting for their playlist, over all sources.
    #[arg(long, env = "LIVEMIX_EDGE_CACHE_BYTES", default_value_t = 512 * 1024 * 1024)]
    pub cache_bytes: usize,
    /// How long segments stay in the cache, in seconds: the furthest back a recording can start.
    #[arg(long, env = "LIVEMIX_TRACKING_WINDOW_SECS", default_value_t = 600)]
    pub tracking_window_secs: u64,
    /// Seconds between status reports to the control node.
    #[arg(long, env = "LIVEMIX_REPORT_INTERVAL_SECS", default_value_t = 5)]
    pub report_interval_secs: u64,
    /// Segments per source waiting to be forwarded; older ones are dropped past this (live video goes stale).
    #[arg(long, env = "LIVEMIX_FORWARD_QUEUE", default_value_t = 16)]
    pub forward_queue: usize,
    /// Segments in the local preview playlist.
    #[arg(long, env = "LIVEMIX_PREVIEW_SEGMENTS", default_value_t = 3)]
    pub preview_segments: usize,
    /// Directory recorded segments wait in until they are uploaded and reported; they survive a restart there.
    /// Default: `livemix-spool-<edge id>` under the system temp directory (fine for a local run; production
    /// mounts a volume here).
    #[arg(long, env = "LIVEMIX_SPOOL_DIR")]
    pub spool_dir: Option<PathBuf>,
    /// Byte budget of the spool (segments waiting plus those the object store refused for good, in `failed/`).
    /// When full, newly recorded segments are refused and counted; those already spooled are kept.
    #[arg(long, env = "LIVEMIX_SPOOL_BYTES", default_value_t = 1 << 30)]
    pub spool_bytes: u64,
}

impl EdgeArgs {
    /// `--listen-addr`, or the default for the credentials given.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen_addr.unwrap_or_else(|| {
            let host = if self.settings.auth().protects_ingest() { [0, 0, 0, 0] } else { [127, 0, 0, 1] };
            SocketAddr::from((host, 9080))
        })
    }
}

impl EdgeSettings {
    /// The credentials ingest and preview requests are checked against.
    pub fn auth(&self) -> EdgeAuth {
        EdgeAuth::new(
            self.ingest_token.as_ref(),
            self.ingest_tokens.clone().unwrap_or_default(),
            self.preview_token.as_ref(),
            self.insecure_no_auth,
        )
    }

    /// `--fetch-allow`, parsed.
    pub fn fetch_allow(&self) -> Result<FetchAllow, String> {
        FetchAllow::parse(&self.fetch_allow)
    }

    /// The overall deadline for reading one playlist's segments.
    pub fn ingest_deadline(&self) -> Duration {
        Duration::from_secs(self.ingest_deadline_secs.max(1))
    }

    pub fn edge_id(&self) -> String {
        self.edge_id.clone().unwrap_or_else(|| host_scoped_id("livemix-edge"))
    }

    /// `--spool-dir`, or a directory of this edge's own under the system temp directory.
    pub fn spool_dir(&self) -> PathBuf {
        self.spool_dir.clone().unwrap_or_else(|| {
            let id: String = self
                .edge_id()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
                .collect();
            std::env::temp_dir().join(format!("livemix-spool-{id}"))
        })
    }

    pub fn fetch_timeout(&self) -> Duration {
        Duration::from_millis(self.fetch_timeout_ms.max(1))
    }

    pub fn tracking_window(&self) -> Duration {
        Duration::from_secs(self.tracking_window_secs.max(1))
    }

    pub fn report_interval(&self) -> Duration {
        Duration::from_secs(self.report_interval_secs.max(1))
    }
}
