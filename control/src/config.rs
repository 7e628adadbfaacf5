//! Command-line flags, environment variables and config-file settings of `livemix-control`.

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use clap::Parser;
use livemix_common::{
    bus::BusArgs,
    cache::CacheArgs,
    config::{ConfigFileArgs, host_scoped_id},
    store::StoreArgs,
    telemetry::LogArgs,
};

use crate::auth::{EdgeTokens, Secret, parse_signing_key, parse_token};

/// LiveMix control node: management API, VOD API for players and the API edges dial into.
#[derive(Debug, Clone, Parser)]
#[command(name = "livemix-control", version, about, max_term_width = 110)]
pub struct ControlArgs {
    #[command(flatten)]
    pub config: ConfigFileArgs,
    #[command(flatten)]
    pub log: LogArgs,

    /// Address of the management API (admins, the operator). Default: 0.0.0.0:8080 with a management token,
    /// 127.0.0.1:8080 without one (a non-loopback address without a token is refused; see --insecure-no-auth).
    #[arg(long, env = "LIVEMIX_MANAGEMENT_ADDR")]
    pub management_addr: Option<SocketAddr>,
    /// Address of the VOD API (players; public).
    #[arg(long, env = "LIVEMIX_VOD_ADDR", default_value = "0.0.0.0:8081")]
    pub vod_addr: SocketAddr,
    /// Address of the edge-facing API (edges report status and forward segments here). Default: 0.0.0.0:8082
    /// with edge credentials, 127.0.0.1:8082 without.
    #[arg(long, env = "LIVEMIX_EDGE_API_ADDR")]
    pub edge_api_addr: Option<SocketAddr>,

    /// Database URL: PostgreSQL (postgres://livemix:livemix@127.0.0.1:5432/livemix), or SQLite
    /// (sqlite://path/livemix.db?mode=rwc) for a single control process (SQLite admits no replicas).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// Largest number of database connections.
    #[arg(long, env = "LIVEMIX_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,

    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub bus: BusArgs,

    #[command(flatten)]
    pub settings: Settings,
}

impl ControlArgs {
    /// The management API's address: as given, else all interfaces when it is protected (or the operator
    /// insisted), else loopback.
    pub fn management_addr(&self) -> SocketAddr {
        let open = self.settings.management_token.is_some() || self.settings.insecure_no_auth;
        self.management_addr.unwrap_or_else(|| default_addr(open, 8080))
    }

    /// The edge-facing API's address, chosen as [`Self::management_addr`] is.
    pub fn edge_api_addr(&self) -> SocketAddr {
        let open = self.settings.has_edge_credentials() || self.settings.insecure_no_auth;
        self.edge_api_addr.unwrap_or_else(|| default_addr(open, 8082))
    }
}

fn default_addr(all_interfaces: bool, port: u16) -> SocketAddr {
    let ip = if all_interfaces { Ipv4Addr::UNSPECIFIED } else { Ipv4Addr::LOCALHOST };
    SocketAddr::from((ip, port))
}

/// Behaviour settings, separate from where the backing services are so tests can start a control node on
/// services they built themselves.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Per-edge credentials, `edge-id:token` entries separated by commas: each edge authenticates as itself and
    /// acts only for the sources bound to it (`edge` when registering a source, or PUT /v1/source/{id}/edge).
    #[arg(long, env = "LIVEMIX_EDGE_TOKENS", hide_env_values = true, value_parser = EdgeTokens::parse)]
    pub edge_tokens: Option<EdgeTokens>,
    /// Files of per-edge credentials, one `edge-id:token` per line (`#` comments), e.g. mounted Secrets; several
    /// are separated by commas (the chart's in-cluster edges and your remote ones).
    #[arg(
        long,
        env = "LIVEMIX_EDGE_TOKENS_FILE",
        value_name = "FILE",
        value_parser = EdgeTokens::read_file,
        value_delimiter = ','
    )]
    pub edge_tokens_file: Vec<EdgeTokens>,
    /// The edge a source registered without `edge` is bound to (a deployment with one edge); unset, such a
    /// source is bound to no edge until an admin binds it.
    #[arg(long, env = "LIVEMIX_DEFAULT_EDGE", value_parser = parse_edge_id)]
    pub default_edge: Option<String>,
    /// Deprecated: one bearer token shared by every edge, which can then act for any source. Still accepted
    /// beside per-edge tokens so existing deployments keep working; move edges to LIVEMIX_EDGE_TOKENS.
    #[arg(long, env = "LIVEMIX_EDGE_TOKEN", hide_env_values = true, value_parser = parse_token)]
    pub edge_token: Option<Secret>,
    /// Bearer token required on the management API (the operator has its own copy). Without it the management
    /// API listens on loopback only.
    #[arg(long, env = "LIVEMIX_MANAGEMENT_TOKEN", hide_env_values = true, value_parser = parse_token)]
    pub management_token: Option<Secret>,
    /// Serve the management or edge-facing API on a non-loopback address without credentials. Only for networks
    /// where nothing untrusted can reach them.
    #[arg(long, env = "LIVEMIX_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// Key of signed, expiring playback URLs: when set, the VOD API serves only URLs carrying `exp` and `sig`
    /// (HMAC-SHA256; see the README), which `GET /v1/playback-url` on the management API mints.
    #[arg(long, env = "LIVEMIX_PLAYBACK_SIGNING_KEY", hide_env_values = true, value_parser = parse_signing_key)]
    pub playback_signing_key: Option<Secret>,
    /// Open connections each API takes at most; more clients wait until one closes.
    #[arg(long, env = "LIVEMIX_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Number of segments in a live playlist. Also sets how long live segments stay cached.
    #[arg(long, env = "LIVEMIX_LIVE_SEGMENTS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub live_segments: u32,
    /// A source is reachable while its edge's last status report is younger than this many seconds (at most a
    /// year: PostgreSQL computes with it, and an interval it cannot represent would fail every source query).
    #[arg(long, env = "LIVEMIX_REACHABLE_WITHIN_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=31_536_000))]
    pub reachable_within_secs: u64,
    /// How long to wait for an edge to confirm a command, in milliseconds.
    #[arg(long, env = "LIVEMIX_COMMAND_TIMEOUT_MS", default_value_t = 5000)]
    pub command_timeout_ms: u64,
    /// Largest segment an edge may forward, in bytes (memcached must accept items this large: `-I 8m`).
    #[arg(long, env = "LIVEMIX_MAX_SEGMENT_BYTES", default_value_t = 8_000_000)]
    pub max_segment_bytes: usize,
    /// Bytes of request bodies (forwarded segments, mostly) the process holds at once; a request finding no room
    /// within a second is refused with 503 and `Retry-After`. Keep it well under the memory limit.
    #[arg(long, env = "LIVEMIX_BODY_BUDGET_BYTES", default_value_t = 128 * 1024 * 1024)]
    pub body_budget_bytes: u64,
    /// Recorded segments to prefetch from the object store into the cache ahead of a player.
    #[arg(long, env = "LIVEMIX_PRIME_SEGMENTS", default_value_t = 3)]
    pub prime_segments: usize,
    /// How long recorded segments stay cached after being read from the object store, in seconds.
    #[arg(long, env = "LIVEMIX_RECORDING_CACHE_TTL_SECS", default_value_t = 300)]
    pub recording_cache_ttl_secs: u64,
    /// Bytes of segments each replica keeps in its own memory (the newest live segments and recordings being
    /// replayed), in front of memcached. 0 keeps none (every read goes to memcached).
    #[arg(long, env = "LIVEMIX_HOT_SEGMENT_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub hot_segment_bytes: u64,
    /// Topic edges publish to (recorded segments); all replicas share its subscription.
    #[arg(long, env = "LIVEMIX_CONTROL_TOPIC", default_value = "livemix-control")]
    pub control_topic: String,
    /// The shared subscription on the control topic.
    #[arg(long, env = "LIVEMIX_CONTROL_SUBSCRIPTION", default_value = "livemix-control")]
    pub control_subscription: String,
    /// Topic edges answer requests on, shared by all replicas (each reads it through its own subscription and
    /// skips the answers meant for others), so a rollout creates no topics.
    #[arg(long, env = "LIVEMIX_REPLY_TOPIC", default_value = "livemix-control-reply")]
    pub reply_topic: String,
    /// This replica's subscription on the reply topic; default `livemix-control-reply-<host>`. Created at start
    /// (even without `--create-topics`) and deleted at a clean shutdown.
    #[arg(long, env = "LIVEMIX_REPLY_SUBSCRIPTION")]
    pub reply_subscription: Option<String>,
    /// Topic for system events (source status, recordings started/stopped); empty to publish none.
    #[arg(long, env = "LIVEMIX_BROADCAST_TOPIC", default_value = "livemix-events")]
    pub broadcast_topic: String,
    /// Where browsers reach the VOD API, for the web console's player (`https://video.example.com`, no path).
    /// Default: the host the console was loaded from, on the VOD API's port; set it behind a proxy or TLS.
    #[arg(long, env = "LIVEMIX_PUBLIC_VOD_URL", value_parser = parse_public_url)]
    pub public_vod_url: Option<String>,
    /// The VOD API's port, for that default; [`crate::serve`] sets it from the VOD listener.
    #[arg(skip)]
    pub vod_port: Option<u16>,
    #[command(flatten)]
    pub lifecycle: LifecycleSettings,
    #[command(flatten)]
    pub archive: ArchiveSettings,
}

/// Playback of any time range and exports of recordings (see `docs/any-moment.md`).
#[derive(Debug, Clone, clap::Args)]
pub struct ArchiveSettings {
    /// Longest time range one playlist, coverage or export covers (`24h`, `90m`, seconds).
    #[arg(long = "max-range", env = "LIVEMIX_MAX_RANGE", default_value = "24h", value_parser = livemix_common::units::parse_duration_secs)]
    pub max_range_secs: i64,
    /// Most segments one time-range playlist or export lists; a longer one is refused (narrow the range).
    #[arg(long, env = "LIVEMIX_MAX_RANGE_SEGMENTS", default_value_t = 100_000,
          value_parser = clap::value_parser!(i64).range(1..=1_000_000))]
    pub max_range_segments: i64,
    /// MP4 exports running at once on this replica; more are refused with 503 and `Retry-After`.
    #[arg(long, env = "LIVEMIX_EXPORT_CONCURRENCY", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub export_concurrency: u32,
    /// The ffmpeg binary MP4 exports remux with (`-c copy`: no transcoding).
    #[arg(long, env = "LIVEMIX_FFMPEG", default_value = "ffmpeg")]
    pub ffmpeg: std::path::PathBuf,
    /// Longest an MP4 export may run (`30m`, seconds); ffmpeg is killed past it and the download ends short.
    #[arg(long = "export-timeout", env = "LIVEMIX_EXPORT_TIMEOUT", default_value = "1h", value_parser = livemix_common::units::parse_duration_secs)]
    pub export_timeout_secs: i64,
    /// Address space each export's ffmpeg may take (`1Gi`; 0: no limit).
    #[arg(long = "export-memory", env = "LIVEMIX_EXPORT_MEMORY", default_value = "1Gi", value_parser = livemix_common::units::parse_bytes)]
    pub export_memory_bytes: i64,
}

/// How long recordings are kept and how their objects are deleted (see `docs/lifecycle.md`).
#[derive(Debug, Clone, clap::Args)]
pub struct LifecycleSettings {
    /// Default retention age of recorded segments (`30d`, `720h`, seconds), for sources without their own; unset:
    /// kept until deleted.
    #[arg(long, env = "LIVEMIX_RETENTION_MAX_AGE", value_parser = livemix_common::units::parse_duration_secs)]
    pub retention_max_age: Option<i64>,
    /// Default storage cap per source (`500Gi`, `2T`, bytes), for sources without their own: the oldest segments
    /// of recordings not on hold go first. Unset: no cap.
    #[arg(long, env = "LIVEMIX_RETENTION_MAX_BYTES", value_parser = livemix_common::units::parse_bytes)]
    pub retention_max_bytes: Option<i64>,
    /// Seconds between retention passes.
    #[arg(long, env = "LIVEMIX_RETENTION_INTERVAL_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub retention_interval_secs: u64,
    /// Seconds between looks at the object deletion queue (a delete also wakes the worker at once).
    #[arg(long, env = "LIVEMIX_DELETION_INTERVAL_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub deletion_interval_secs: u64,
    /// Objects per delete request (S3's `DeleteObjects` takes up to 1,000; some S3-compatible stores take fewer).
    #[arg(long, env = "LIVEMIX_DELETION_BATCH_SIZE", default_value_t = 1000,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub deletion_batch_size: u16,
    /// Seconds between garbage-collection scans of the bucket for objects no segment refers to (0: never).
    #[arg(long, env = "LIVEMIX_GC_INTERVAL_SECS", default_value_t = 6 * 3600)]
    pub gc_interval_secs: u64,
    /// Objects younger than this are never orphans: their index report may still be on its way (seconds).
    #[arg(long, env = "LIVEMIX_GC_GRACE_SECS", default_value_t = 24 * 3600,
          value_parser = clap::value_parser!(u64).range(60..))]
    pub gc_grace_secs: u64,
    /// Let the periodic scan delete the orphans it finds; without it the scan only reports (log, metrics) and
    /// `POST /v1/storage/gc?dry_run=false` deletes.
    #[arg(long, env = "LIVEMIX_GC_DELETE")]
    pub gc_delete: bool,
    /// The key prefix recorded segments are stored under (`--object-prefix`; [`crate::run`] sets it): garbage
    /// collection looks under it only.
    #[arg(skip = String::from("recordings"))]
    pub object_prefix: String,
}

impl Default for LifecycleSettings {
    /// The flags' defaults (and the environment's values), as the binary would start.
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            lifecycle: LifecycleSettings,
        }
        <Only as clap::Parser>::parse_from(["livemix-control"]).lifecycle
    }
}

impl LifecycleSettings {
    /// The retention of sources that set no limit of their own.
    pub fn default_retention(&self) -> livemix_common::model::Retention {
        livemix_common::model::Retention { max_age_secs: self.retention_max_age, max_bytes: self.retention_max_bytes }
    }
}

/// Checks `--public-vod-url`: an http(s) origin, optionally with a path prefix, no query; the trailing slash is
/// dropped so the page can append `/v1/vod/...`.
pub fn parse_public_url(value: &str) -> Result<String, String> {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .ok_or_else(|| format!("{value:?} must start with http:// or https://"))?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err(format!("{value:?} names no host"));
    }
    if let Some(bad) = value.chars().find(|c| c.is_whitespace() || c.is_control() || "\"'<>?#;\\`".contains(*c)) {
        return Err(format!("{value:?} may not contain {bad:?}"));
    }
    Ok(value.trim_end_matches('/').to_owned())
}

fn parse_edge_id(raw: &str) -> Result<String, String> {
    livemix_common::model::validate_edge_id(raw)?;
    Ok(raw.to_owned())
}

impl Settings {
    /// Every per-edge credential, from the list and the file together.
    pub fn edge_credentials(&self) -> Result<EdgeTokens, String> {
        let list = self.edge_tokens.clone().unwrap_or_default();
        self.edge_tokens_file.iter().cloned().try_fold(list, EdgeTokens::merged)
    }

    /// Whether the edge-facing API checks tokens (per-edge ones or the shared one).
    pub fn has_edge_credentials(&self) -> bool {
        self.edge_token.is_some()
            || self.edge_tokens.as_ref().is_some_and(|t| !t.is_empty())
            || self.edge_tokens_file.iter().any(|t| !t.is_empty())
    }

    pub fn reachable_within(&self) -> Duration {
        Duration::from_secs(self.reachable_within_secs.max(1))
    }

    pub fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms.max(1))
    }

    pub fn reply_subscription(&self) -> String {
        self.reply_subscription.clone().unwrap_or_else(|| host_scoped_id("livemix-control-reply"))
    }

    /// Seconds a live segment stays listed in the live playlist after it arrived: the playlist's span plus two
    /// segments of slack for slow edges.
    pub fn live_window(&self, segment_secs: f64) -> Duration {
        // Saturating: a segment length from the database must not be able to panic a handler.
        let secs = segment_secs.max(1.0).ceil() * f64::from(self.live_segments.saturating_add(2));
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
    }

    /// Cache TTL of live segments: twice the listing window, so a player that fetched the playlist just before a
    /// segment left it can still download every segment it saw.
    pub fn live_ttl(&self, segment_secs: f64) -> Duration {
        self.live_window(segment_secs).saturating_mul(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls_are_origins_without_tricks() {
        assert_eq!(parse_public_url("https://video.example.com/").unwrap(), "https://video.example.com");
        assert_eq!(parse_public_url("http://10.0.0.1:8081/hls").unwrap(), "http://10.0.0.1:8081/hls");
        assert!(parse_public_url("ftp://x").is_err());
        assert!(parse_public_url("https://").is_err());
        assert!(parse_public_url("https://x/?a=b").is_err());
        assert!(parse_public_url("https://x\"onload=").is_err());
        assert!(parse_public_url("https://x; script-src *").is_err());
    }
}
