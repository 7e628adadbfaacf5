//! Command-line flags, environment variables and config-file settings of `livemix-edge`.

use std::{
    ffi::OsStr,
    io::Read,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::{Arg, Command, Parser, builder::TypedValueParser, error::ErrorKind};

use crate::{
    auth::{EdgeAuth, SourceTokens},
    fetch_allow::{FetchAllow, SourceFetchAllow},
};
use livemix_common::{
    bus::BusArgs,
    config::{ConfigFileArgs, host_scoped_id},
    credentials::{Secret, parse_path_token, parse_token},
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
    /// Bearer token for the control node's edge-facing API (or --edge-token-file; not both).
    #[arg(long, env = "LIVEMIX_EDGE_TOKEN", hide_env_values = true, value_parser = SecretParser(parse_token))]
    pub edge_token: Option<Secret>,
    /// File holding the bearer token for the control node's edge-facing API (surrounding white space dropped),
    /// e.g. this pod's key of a mounted Secret (`/etc/livemix/edge-token/$(POD_NAME)`). Read once at start; an
    /// unreadable or empty file stops the start.
    #[arg(long, env = "LIVEMIX_EDGE_TOKEN_FILE", value_name = "FILE")]
    pub edge_token_file: Option<PathBuf>,
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
    /// Hosts each source's own token (--ingest-tokens) may name in an `http(s)://` segment prefix: `source=host`
    /// entries (a CIDR, an address or a host name), comma-separated, e.g.
    /// `cam-a=10.0.0.5,cam-a=cam-a.lan,cam-b=10.0.0.6/32`. A host must be on --fetch-allow too. On its own token a
    /// source without entries may use no http prefix, and `file://` prefixes only under `<file root>/<source>/`;
    /// the edge's ingest token is not confined so.
    #[arg(long, env = "LIVEMIX_SOURCE_FETCH_ALLOW", value_delimiter = ',')]
    pub source_fetch_allow: Vec<String>,
    /// Token ffmpeg must send to push into this edge (`Authorization: Bearer`, or `/v1/ingest/{source}/{token}/`);
    /// also opens the preview unless --preview-token is set.
    #[arg(long, env = "LIVEMIX_INGEST_TOKEN", hide_env_values = true, value_parser = SecretParser(parse_path_token))]
    pub ingest_token: Option<Secret>,
    /// Per-source ingest tokens, `source:token` entries separated by commas: each pushes its own source only,
    /// from its own prefixes only (see --source-fetch-allow).
    #[arg(long, env = "LIVEMIX_INGEST_TOKENS", hide_env_values = true, value_parser = SecretParser(SourceTokens::parse))]
    pub ingest_tokens: Option<SourceTokens>,
    /// Token for the local preview (`/v1/vod/live/...`), `/v1/source` and `/debug/tasks`; the ingest token works
    /// there too.
    #[arg(long, env = "LIVEMIX_PREVIEW_TOKEN", hide_env_values = true, value_parser = SecretParser(parse_path_token))]
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

    /// `--source-fetch-allow`, parsed.
    pub fn source_fetch_allow(&self) -> Result<SourceFetchAllow, String> {
        SourceFetchAllow::parse(&self.source_fetch_allow)
    }

    /// The control node's token for this edge: `--edge-token`, or what `--edge-token-file` holds. Both at once is
    /// an error (which one would win is a guess an operator should not have to make).
    pub fn control_token(&self) -> Result<Option<Secret>, EdgeTokenError> {
        match (&self.edge_token, &self.edge_token_file) {
            (Some(_), Some(path)) => Err(EdgeTokenError::Both { path: path.clone() }),
            (Some(token), None) => Ok(Some(token.clone())),
            (None, Some(path)) => read_token_file(path).map(Some),
            (None, None) => Ok(None),
        }
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

/// Why the control node's token for this edge cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum EdgeTokenError {
    #[error(
        "both --edge-token (LIVEMIX_EDGE_TOKEN) and --edge-token-file (LIVEMIX_EDGE_TOKEN_FILE, {path}) are set; \
         give the control node's token one way only"
    )]
    Both { path: PathBuf },
    #[error("cannot read the edge token file {path} (--edge-token-file, LIVEMIX_EDGE_TOKEN_FILE): {source}")]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("the edge token file {path} (--edge-token-file, LIVEMIX_EDGE_TOKEN_FILE) is empty")]
    Empty { path: PathBuf },
    #[error("the edge token file {path} (--edge-token-file, LIVEMIX_EDGE_TOKEN_FILE) holds no usable token: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// Largest token file read: a token is at most a few hundred bytes; anything much larger is the wrong file.
const MAX_TOKEN_FILE_BYTES: u64 = 4096;

/// Reads a token file (a mounted Secret's key): trimmed, checked like a token flag, never echoed.
fn read_token_file(path: &Path) -> Result<Secret, EdgeTokenError> {
    let unreadable = |source| EdgeTokenError::Unreadable { path: path.to_owned(), source };
    let invalid = |reason: String| EdgeTokenError::Invalid { path: path.to_owned(), reason };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_TOKEN_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_TOKEN_FILE_BYTES {
        return Err(invalid(format!("it is larger than {MAX_TOKEN_FILE_BYTES} bytes; it should hold the token alone")));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| invalid("it is not UTF-8 text".into()))?;
    if text.trim().is_empty() {
        return Err(EdgeTokenError::Empty { path: path.to_owned() });
    }
    parse_token(text).map_err(invalid)
}

/// clap value parser for secrets: runs the parser and, when it refuses, names the flag and the reason but never
/// the value. clap's own error for a value parser's refusal reads `invalid value '<value>' for '--flag'`, which
/// would print a token (for `LIVEMIX_INGEST_TOKENS`, every source's) into the logs.
#[derive(Clone, Copy)]
pub struct SecretParser<T>(pub fn(&str) -> Result<T, String>);

impl<T: Clone + Send + Sync + 'static> TypedValueParser for SecretParser<T> {
    type Value = T;

    fn parse_ref(&self, cmd: &Command, arg: Option<&Arg>, value: &OsStr) -> Result<T, clap::Error> {
        let flag = arg.map_or_else(
            || "a secret setting".to_owned(),
            |arg| match arg.get_env() {
                Some(env) => format!("'{arg}' ({})", env.to_string_lossy()),
                None => format!("'{arg}'"),
            },
        );
        let refuse = |why: &str| {
            let message = format!("invalid value for {flag}, not shown as it is secret: {why}\n");
            clap::Error::raw(ErrorKind::ValueValidation, message).with_cmd(cmd)
        };
        let text = value.to_str().ok_or_else(|| refuse("it is not UTF-8"))?;
        (self.0)(text).map_err(|why| refuse(&why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRETS: [&str; 4] = ["ctl-s3cret", "ingest-s3cret", "cam-s3cret", "preview-s3cret"];

    /// Every config struct's Debug, as a `tracing::debug!(?settings)` would print it, names no token.
    #[test]
    fn no_settings_debug_shows_a_token() {
        let args = EdgeArgs::try_parse_from([
            "livemix-edge",
            "--edge-token=ctl-s3cret",
            "--ingest-token=ingest-s3cret",
            "--ingest-tokens=cam-a:cam-s3cret",
            "--preview-token=preview-s3cret",
        ])
        .unwrap();
        assert_eq!(
            args.settings.control_token().unwrap().map(|t| t.expose().to_owned()).as_deref(),
            Some("ctl-s3cret")
        );
        let shown = format!("{args:?}\n{args:#?}\n{:?}\n{:?}", args.settings, args.settings.auth());
        assert!(shown.contains("cam-a"), "source names are shown: {shown}");
        for secret in SECRETS {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    /// A refused token value is never echoed: clap's usual error would quote it.
    #[test]
    fn refused_token_values_are_not_echoed() {
        for (flag, value) in [
            ("--edge-token", "leaky value"),
            ("--ingest-token", "leaky/value"),
            ("--preview-token", "leaky%value"),
            ("--ingest-tokens", "cam-a:leaky value,cam-b:leaky-2"),
            ("--ingest-tokens", "cam-a:leaky-1,cam-b:leaky-1"),
            ("--ingest-tokens", "leaky-1"),
        ] {
            let err = EdgeArgs::try_parse_from(["livemix-edge", &format!("{flag}={value}")]).unwrap_err();
            let text = err.render().to_string();
            assert_eq!(err.kind(), ErrorKind::ValueValidation, "{text}");
            assert!(!text.contains("leaky"), "{flag}: {text}");
            assert!(text.contains(flag) && text.contains("secret"), "{flag}: {text}");
        }
        let err = EdgeArgs::try_parse_from(["livemix-edge", "--ingest-token="]).unwrap_err();
        assert!(err.render().to_string().contains("empty"), "the reason is still given");
    }

    fn settings(args: &[&str]) -> EdgeSettings {
        let mut argv = vec!["livemix-edge"];
        argv.extend_from_slice(args);
        EdgeArgs::try_parse_from(argv).unwrap().settings
    }

    #[test]
    fn the_control_token_comes_from_the_flag_or_the_file_never_both() {
        let dir = std::env::temp_dir().join(format!("livemix-token-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str, contents: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, contents).unwrap();
            format!("--edge-token-file={}", path.display())
        };
        let good = file("edge-0", b"  file-s3cret\n");
        let token = settings(&[&good]).control_token().unwrap().unwrap();
        assert_eq!(token.expose(), "file-s3cret", "trimmed");
        assert!(settings(&[]).control_token().unwrap().is_none());

        let both = settings(&["--edge-token=ctl-s3cret", &good]).control_token().unwrap_err();
        assert!(matches!(both, EdgeTokenError::Both { .. }), "{both}");
        assert!(both.to_string().contains("--edge-token-file") && !both.to_string().contains("s3cret"), "{both}");

        let missing = format!("--edge-token-file={}", dir.join("edge-9").display());
        for (arg, kind) in [
            (missing, "Unreadable"),
            (file("blank", b" \n\t\n"), "Empty"),
            (file("spaced", b"two words-s3cret\n"), "Invalid"),
            (file("binary", b"\xff\xfe-s3cret"), "Invalid"),
            (file("huge", &[b'x'; 5000]), "Invalid"),
            (format!("--edge-token-file={}", dir.display()), "Unreadable"),
        ] {
            let err = settings(&[&arg]).control_token().unwrap_err();
            let text = err.to_string();
            assert!(format!("{err:?}").starts_with(kind), "{arg}: {err:?}");
            assert!(text.contains(arg.trim_start_matches("--edge-token-file=")), "names the path: {text}");
            assert!(!text.contains("s3cret"), "{text}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
