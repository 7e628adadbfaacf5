//! The real binaries on the real services, and real ffmpeg pushing into the edge.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

pub use livemix_testkit::{
    env, eventually, eventually_within, http,
    media::{ffprobe, ffprobe_live},
    service_env, unique,
};
use serde_json::Value;
use tokio::process::{Child, Command};

pub const EDGE_TOKEN: &str = "e2e-edge-token";
/// The edge's ingest token: every push and preview request of these tests sends it (header or path form).
pub const INGEST_TOKEN: &str = "e2e-ingest-token";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `target/debug` (or wherever this test binary was built).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// The path of a workspace binary, building it when `cargo test -p livemix-edge` did not.
pub fn binary(name: &str) -> PathBuf {
    if name == "livemix-edge" {
        // Another build's edge (an older commit's, say, to see a new test fail on it).
        if let Some(other) = std::env::var_os("LIVEMIX_E2E_EDGE_BIN") {
            return PathBuf::from(other);
        }
        return PathBuf::from(env!("CARGO_BIN_EXE_livemix-edge"));
    }
    let path = bin_dir().join(name);
    if !path.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--bin", name])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .status()
            .unwrap();
        assert!(status.success(), "building {name}");
    }
    path
}

/// A child process whose output goes to a log file, killed when dropped.
pub struct Proc {
    pub child: Child,
}

pub fn spawn(program: &Path, args: &[String], envs: &[(&str, String)], log: PathBuf) -> Proc {
    spawn_limited(program, args, envs, log, None)
}

/// [`spawn`] with the child's descriptor limit (`RLIMIT_NOFILE` soft, hard) set before it starts.
pub fn spawn_limited(
    program: &Path,
    args: &[String],
    envs: &[(&str, String)],
    log: PathBuf,
    fd_limit: Option<(u64, u64)>,
) -> Proc {
    let out = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(program);
    if let Some((soft, hard)) = fd_limit {
        // SAFETY: only setrlimit, which is async-signal-safe, runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let limit = libc::rlimit { rlim_cur: soft, rlim_max: hard };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
    Proc { child }
}

/// Runs a program that should stop by itself (a refused start, say) and returns its exit code and output
/// (stdout and stderr together), killing it after `within`.
pub async fn run_to_exit(program: &Path, args: &[String], envs: &[(&str, String)], within: Duration) -> (i32, String) {
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null()).kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(within, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{} did not stop within {within:?}", program.display()))
        .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

async fn kill(mut proc: Proc) {
    proc.child.start_kill().unwrap();
    proc.child.wait().await.unwrap();
}

/// One control node and one edge, as separate processes, with their own topics.
pub struct Deployment {
    pub dir: PathBuf,
    pub file_root: PathBuf,
    pub management: String,
    pub vod: String,
    pub edge: String,
    edge_args: Vec<String>,
    /// The environment of both processes: the backing services, the token, the control topic.
    envs: Vec<(&'static str, String)>,
    control_args: Vec<String>,
    control_proc: Option<Proc>,
    pub edge_proc: Option<Proc>,
    /// The descriptor limit the edge starts with (soft, hard); `None`: this process's.
    pub edge_fd_limit: Option<(u64, u64)>,
    /// The edge's environment beside the control node's: a value replaces one, `None` leaves one out.
    edge_env: Vec<(&'static str, Option<String>)>,
}

impl Deployment {
    pub async fn start() -> Self {
        Self::start_with(&[], &[]).await
    }

    /// A deployment whose control node and edge get these extra flags.
    pub async fn start_with(control_flags: &[&str], edge_flags: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(unique("livemix-e2e"));
        let file_root = dir.join("ingest");
        std::fs::create_dir_all(&file_root).unwrap();
        let control_topic = unique("ctl");
        let (mgmt, vod, edge_api, edge) = (free_port(), free_port(), free_port(), free_port());
        let mut envs = service_env();
        envs.push(("LIVEMIX_EDGE_TOKEN", EDGE_TOKEN.into()));
        envs.push(("LIVEMIX_CONTROL_TOPIC", control_topic.clone()));
        envs.push(("LIVEMIX_CREATE_TOPICS", "true".into()));
        envs.push(("LIVEMIX_LOG", "info,livemix_edge=debug,livemix_control=debug,livemix_common=debug".into()));
        let control_args = vec![
            format!("--management-addr=127.0.0.1:{mgmt}"),
            format!("--vod-addr=127.0.0.1:{vod}"),
            format!("--edge-api-addr=127.0.0.1:{edge_api}"),
            format!("--control-subscription={control_topic}"),
            format!("--reply-topic={}", unique("reply")),
            format!("--reply-subscription={}", unique("reply")),
            "--reachable-within-secs=10".into(),
            "--live-segments=3".into(),
        ];
        let control_args = with_overrides(control_args, control_flags);
        let edge_args = vec![
            format!("--listen-addr=127.0.0.1:{edge}"),
            format!("--edge-id={}", unique("edge")),
            format!("--control-url=http://127.0.0.1:{edge_api}"),
            format!("--file-root={}", file_root.display()),
            format!("--ingest-token={INGEST_TOKEN}"),
            "--report-interval-secs=1".into(),
            "--max-playlist-bytes=65536".into(),
            "--max-segment-bytes=4000000".into(),
        ];
        let edge_args = with_overrides(edge_args, edge_flags);
        let mut d = Self {
            dir,
            file_root,
            management: format!("http://127.0.0.1:{mgmt}"),
            vod: format!("http://127.0.0.1:{vod}"),
            edge: format!("http://127.0.0.1:{edge}"),
            edge_args,
            envs,
            control_args,
            control_proc: None,
            edge_proc: None,
            edge_fd_limit: None,
            edge_env: Vec::new(),
        };
        d.start_control().await;
        d.start_edge().await;
        d
    }

    /// A log file name not used yet in the deployment's directory.
    fn next_log(&self, what: &str) -> PathBuf {
        let n = std::fs::read_dir(&self.dir).unwrap().count();
        self.dir.join(format!("{what}-{n}.log"))
    }

    /// Starts the control node with the same addresses, topics and subscriptions every time, as a restarted pod
    /// would.
    pub async fn start_control(&mut self) {
        let log = self.next_log("control");
        self.control_proc = Some(spawn(&binary("livemix-control"), &self.control_args, &self.envs, log));
        self.wait_ready(&self.management.clone(), "control").await;
    }

    pub async fn start_edge(&mut self) {
        let log = self.next_log("edge");
        let envs = self.edge_envs();
        self.edge_proc = Some(spawn_limited(&binary("livemix-edge"), &self.edge_args, &envs, log, self.edge_fd_limit));
        self.wait_ready(&self.edge.clone(), "edge").await;
    }

    /// From the next edge start on, the edge's `name` is `value` (`None`: not set), unlike the control node's.
    pub fn set_edge_env(&mut self, name: &'static str, value: Option<String>) {
        self.edge_env.retain(|(other, _)| *other != name);
        self.edge_env.push((name, value));
    }

    /// The edge's environment: the deployment's, with [`Self::set_edge_env`]'s changes.
    pub fn edge_envs(&self) -> Vec<(&'static str, String)> {
        let changed = |name: &str| self.edge_env.iter().any(|(other, _)| *other == name);
        let kept = self.envs.iter().filter(|(name, _)| !changed(name)).cloned();
        kept.chain(self.edge_env.iter().filter_map(|(name, value)| Some((*name, value.clone()?)))).collect()
    }

    /// The edge's command line as [`Self::start_edge`] would run it, with these flags changed.
    pub fn edge_args_with(&self, flags: &[&str]) -> Vec<String> {
        with_overrides(self.edge_args.clone(), flags)
    }

    /// Stops the edge and starts it again with these flags changed (`!--flag` drops a default flag).
    pub async fn restart_edge_with(&mut self, flags: &[&str]) {
        if self.edge_proc.is_some() {
            self.kill_edge().await;
        }
        self.edge_args = with_overrides(std::mem::take(&mut self.edge_args), flags);
        self.start_edge().await;
    }

    /// The running edge's process id.
    pub fn edge_pid(&self) -> u32 {
        self.edge_proc.as_ref().and_then(|p| p.child.id()).expect("edge running")
    }

    /// SIGKILL, as a crash or an OOM kill would.
    pub async fn kill_edge(&mut self) {
        kill(self.edge_proc.take().expect("edge running")).await;
    }

    /// SIGKILL the control node.
    pub async fn kill_control(&mut self) {
        kill(self.control_proc.take().expect("control running")).await;
    }

    pub fn vod(&self, path: &str) -> String {
        format!("{}{path}", self.vod)
    }

    async fn wait_ready(&self, base: &str, what: &str) {
        for _ in 0..300 {
            let alive = http().get(format!("{base}/liveness/alive")).send().await;
            if alive.is_ok_and(|resp| resp.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{what} never answered; see the logs in {}", self.dir.display());
    }

    pub fn mgmt(&self, path: &str) -> String {
        format!("{}{path}", self.management)
    }

    pub async fn register(&self, name: &str) -> String {
        let resp = http()
            .post(self.mgmt("/v1/source"))
            .json(&serde_json::json!({"name": name, "segment_len": 1, "description": "e2e"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        body["source"]["id"].as_str().unwrap().to_owned()
    }

    pub async fn set_streaming(&self, id: &str, on: bool) {
        let resp = http().put(self.mgmt(&format!("/v1/source/{id}/streaming?new_state={on}"))).send().await.unwrap();
        let status = resp.status();
        assert_eq!(status, 200, "streaming={on}: {}", resp.text().await.unwrap());
    }

    pub fn live_url(&self, id: &str) -> String {
        format!("{}/v1/vod/live/{id}/vid.m3u8", self.vod)
    }

    /// The live playlist's media sequence and segment names, once it exists.
    pub async fn live_playlist(&self, id: &str) -> Option<(u64, Vec<String>)> {
        let resp = http().get(self.live_url(id)).send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let playlist = livemix_common::hls::parse_media_playlist(&resp.bytes().await.ok()?).ok()?;
        Some((playlist.media_sequence, playlist.segments.into_iter().map(|s| s.uri).collect()))
    }

    /// A counter from the edge's `/metrics`.
    pub async fn edge_metric(&self, name: &str) -> u64 {
        let text = http().get(format!("{}/metrics", self.edge)).send().await.unwrap().text().await.unwrap();
        text.lines().find_map(|l| l.strip_prefix(name).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0)
    }

    /// A JSON reply of the edge's token-protected `path` (`/v1/source`, `/debug/tasks`).
    pub async fn edge_json(&self, path: &str) -> Value {
        let resp = http().get(format!("{}{path}", self.edge)).bearer_auth(INGEST_TOKEN).send().await.unwrap();
        resp.json().await.unwrap()
    }

    /// How many segments of `source` the edge has ingested.
    pub async fn edge_ingested(&self, source: &str) -> u64 {
        let body = self.edge_json("/v1/source").await;
        body["sources"]
            .as_array()
            .and_then(|all| all.iter().find(|s| s["name"] == source))
            .and_then(|s| s["segments_ingested"].as_u64())
            .unwrap_or(0)
    }

    /// ffmpeg writing segments under the file root and POSTing its playlist with the seed's headers.
    pub fn ffmpeg_file_push(&self, source: &str) -> Proc {
        let seg_dir = self.file_root.join(source);
        std::fs::create_dir_all(&seg_dir).unwrap();
        let headers = format!(
            "Video-Source-Name: {source}\r\nMPEG-TS-URI-Prefix: file://{}/\r\nAuthorization: Bearer {INGEST_TOKEN}\r\n",
            seg_dir.display()
        );
        let mut args = ffmpeg_input();
        args.extend([
            "-hls_segment_filename".into(),
            seg_dir.join(format!("{source}-%d.ts")).display().to_string(),
            "-headers".into(),
            headers,
            "-method".into(),
            "POST".into(),
            format!("{}/v1/playlist", self.edge),
        ]);
        spawn(Path::new("ffmpeg"), &args, &[], self.dir.join(format!("ffmpeg-{source}.log")))
    }

    /// A new streaming source fed by ffmpeg over HTTP, once control has its live playlist: its name, id, the
    /// ffmpeg process and the playlist's first media sequence.
    pub async fn http_stream(&self) -> (String, String, Proc, u64) {
        let name = unique("cam");
        let id = self.register(&name).await;
        self.set_streaming(&id, true).await;
        let ffmpeg = self.ffmpeg_http_push(&name);
        let (first_seq, _) =
            eventually_within("a live playlist at control", Duration::from_secs(40), || self.live_playlist(&id)).await;
        (name, id, ffmpeg, first_seq)
    }

    /// ffmpeg uploading segments and playlist over HTTP (no shared disk), the ingest token in the URL (ffmpeg
    /// uploads the segments next to the playlist, so they carry it too).
    pub fn ffmpeg_http_push(&self, source: &str) -> Proc {
        let mut args = ffmpeg_input();
        args.extend([
            "-method".into(),
            "PUT".into(),
            format!("{}/v1/ingest/{source}/{INGEST_TOKEN}/index.m3u8", self.edge),
        ]);
        spawn(Path::new("ffmpeg"), &args, &[], self.dir.join(format!("ffmpeg-{source}.log")))
    }
}

/// The default flags, less those `extra` gives again (clap refuses a flag given twice) or drops (`!--flag`),
/// then the rest of `extra`.
fn with_overrides(defaults: Vec<String>, extra: &[&str]) -> Vec<String> {
    let flag = |arg: &str| arg.trim_start_matches('!').split('=').next().unwrap_or(arg).to_owned();
    let overridden: Vec<String> = extra.iter().map(|e| flag(e)).collect();
    let kept = defaults.into_iter().filter(|d| !overridden.contains(&flag(d)));
    kept.chain(extra.iter().filter(|e| !e.starts_with('!')).map(|e| e.to_string())).collect()
}

/// A live 1-second-segment HLS encode of ffmpeg's test pattern.
fn ffmpeg_input() -> Vec<String> {
    "-nostdin -hide_banner -loglevel warning -re -f lavfi -i testsrc=size=320x180:rate=25 -c:v libx264 -preset veryfast \
     -tune zerolatency -g 25 -sc_threshold 0 -pix_fmt yuv420p -f hls -hls_time 1 -hls_list_size 5 \
     -hls_flags delete_segments"
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}
