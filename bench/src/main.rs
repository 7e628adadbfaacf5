//! LiveMix benchmark: a simulated camera fleet pushing into a real edge, players on a real control node, then
//! a recording replayed by many players. Measures latency, delay, throughput, errors and memory, and writes a
//! markdown report. `bench/run.sh` starts everything and runs this; see `bench/README.md`.

mod camera;
mod http;
mod memcached;
mod player;
mod procs;
mod report;
mod stats;

use std::{
    path::PathBuf,
    sync::{Arc, atomic::Ordering::Relaxed},
    time::Duration,
};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::{
    camera::{Camera, Feed},
    http::{client, metric_series, metric_sum, timed},
    player::{Audience, ReplayStats},
    procs::ProcSample,
    stats::{Latencies, Phases, Summary},
};

#[derive(Parser)]
#[command(name = "livemix-bench", version, about, max_term_width = 110)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the benchmark against a running control node and edge.
    #[command(args_override_self = true)]
    Run(Box<RunArgs>),
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::FreePorts { count } => {
            // Hold every listener until all are chosen so the ports differ.
            let listeners: Vec<std::net::TcpListener> =
                (0..count).map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
            for l in &listeners {
                println!("{}", l.local_addr()?.port());
            }
            Ok(())
        }
        Command::Run(args) => run(*args).await,
    }
}

/// A process under test.
#[derive(Debug, Clone)]
pub struct Proc {
    pub name: String,
    pub pid: u32,
    /// Sum over the process and its children.
    pub tree: bool,
    /// Listed in the memory table (the nodes under test), not only the CPU one.
    pub memory: bool,
}

/// RSS samples of the processes under test, one per second: (seconds since start, phase, KiB per process).
pub type Timeline = Vec<(f64, usize, Vec<u64>)>;

/// What one phase measured beyond [`stats::PhaseStats`].
#[derive(Debug, Clone, Default)]
pub struct PhaseExtra {
    pub name: &'static str,
    pub secs: f64,
    pub players: usize,
    pub paced: bool,
    /// Per process: (at start, at end).
    pub procs: Vec<(ProcSample, ProcSample)>,
    /// Busy and total CPU ticks of the machine: (at start, at end).
    pub machine_cpu: ((u64, u64), (u64, u64)),
    pub memcached: (Option<memcached::Stats>, Option<memcached::Stats>),
    pub forwarded: f64,
    pub not_forwarded: Vec<(String, f64)>,
}

pub struct Setup {
    pub register: Summary,
    pub streaming: Summary,
}

pub struct Replay {
    /// The recording replayed (the first one).
    pub recording: String,
    /// Recordings made at once.
    pub recordings: usize,
    /// Segments of the recording replayed.
    pub segments: usize,
    /// Segments of every recording.
    pub all_segments: usize,
    pub start_latency: Summary,
    pub stop_latency: Summary,
    /// Most segments waiting in the edge's recording queue (`livemix_edge_recording_pending`).
    pub pending_max: f64,
    /// Still waiting when the bench stopped waiting.
    pub pending_left: f64,
    pub camera_errors: u64,
    /// From the stop until the control node listed every recorded segment.
    pub listed_after: Duration,
    pub rounds: Vec<ReplayRound>,
}

pub struct ReplayRound {
    pub name: &'static str,
    pub wall: Duration,
    pub stats: Arc<ReplayStats>,
    /// `livemix_control_object_store_reads_total` during the round.
    pub store_reads: f64,
    pub memcached: (Option<memcached::Stats>, Option<memcached::Stats>),
}

pub struct Results {
    pub args: RunArgs,
    pub machine: procs::Machine,
    pub started: chrono::DateTime<chrono::Utc>,
    pub wall: Duration,
    pub segment_bytes: usize,
    pub procs: Vec<Proc>,
    pub setup: Setup,
    pub phases: Arc<Phases>,
    pub extras: Vec<PhaseExtra>,
    pub never_listed: usize,
    pub timeline: Timeline,
    pub final_procs: Vec<ProcSample>,
    pub replay: Option<Replay>,
    pub server_non_2xx: Vec<(String, String, f64)>,
}

async fn json_ok(req: reqwest::RequestBuilder, what: &str) -> anyhow::Result<(Value, Duration)> {
    let (status, body, elapsed) = timed(req).await.with_context(|| what.to_owned())?;
    if !status.is_success() {
        bail!("{what}: HTTP {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok((serde_json::from_slice(&body).with_context(|| format!("{what}: reply is not JSON"))?, elapsed))
}

async fn metrics_text(client: &reqwest::Client, base: &str) -> String {
    match client.get(format!("{base}/metrics")).send().await {
        Ok(resp) => resp.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

fn sample_all(procs: &[Proc]) -> Vec<ProcSample> {
    procs.iter().map(|p| procs::sample_tree(p.pid, p.tree).unwrap_or_default()).collect()
}

/// The counters a phase is measured between.
struct Snapshot {
    procs: Vec<ProcSample>,
    cpu: (u64, u64),
    memcached: Option<memcached::Stats>,
    /// The edge's `/metrics`.
    edge: String,
}

async fn snapshot(args: &RunArgs, procs: &[Proc], http: &reqwest::Client, edge: &str) -> Snapshot {
    Snapshot {
        procs: sample_all(procs),
        cpu: procs::machine_cpu(),
        memcached: memcached_stats(args).await,
        edge: metrics_text(http, edge).await,
    }
}

async fn memcached_stats(args: &RunArgs) -> Option<memcached::Stats> {
    memcached::stats(&memcached::addr_of(args.memcached_url.as_deref()?)?).await
}

fn parse_watch(spec: &str, tree: bool) -> anyhow::Result<Proc> {
    let (name, pid) = spec.split_once('=').with_context(|| format!("{spec:?}: expected NAME=PID"))?;
    let pid = pid.trim().parse().with_context(|| format!("{spec:?}: {pid:?} is not a process id"))?;
    Ok(Proc { name: name.to_owned(), pid, tree, memory: false })
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let admin = client(Duration::from_millis(args.timeout_ms));
    let mgmt = args.management_url.trim_end_matches('/').to_owned();
    let mut registered = Vec::new();
    let outcome = tokio::select! {
        outcome = bench(&args, &admin, &mgmt, &mut registered) => outcome,
        signal = interrupted() => Err(anyhow::anyhow!("stopped by {signal}")),
    };
    // Even after a failure: the database may be shared.
    if !args.keep_sources {
        for id in &registered {
            let _ = admin.delete(format!("{mgmt}/v1/source/{id}")).send().await;
        }
    }
    outcome
}

/// SIGINT or SIGTERM.
async fn interrupted() -> &'static str {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

async fn bench(
    args: &RunArgs,
    admin: &reqwest::Client,
    mgmt: &str,
    registered: &mut Vec<String>,
) -> anyhow::Result<()> {
    ensure!(args.sources > 0 && args.segment_duration > 0.0, "need at least one source and a positive duration");
    let started_at = chrono::Utc::now();
    let wall = Instant::now();
    let machine = procs::machine();
    let segment = Bytes::from(
        std::fs::read(&args.segment_file).with_context(|| format!("reading {}", args.segment_file.display()))?,
    );
    let mut procs = Vec::new();
    if let Some(pid) = args.control_pid {
        procs.push(Proc { name: "livemix-control".into(), pid, tree: false, memory: true });
    }
    if let Some(pid) = args.edge_pid {
        procs.push(Proc { name: "livemix-edge".into(), pid, tree: false, memory: true });
    }
    procs.push(Proc {
        name: "livemix-bench (load generator)".into(),
        pid: std::process::id(),
        tree: false,
        memory: false,
    });
    for spec in &args.watch {
        procs.push(parse_watch(spec, false)?);
    }
    for spec in &args.watch_tree {
        procs.push(parse_watch(spec, true)?);
    }
    let timeout = Duration::from_millis(args.timeout_ms);

    // ---- setup: K sources, streaming on ----
    eprintln!("[bench] registering {} sources", args.sources);
    let (register, streaming) = (Latencies::default(), Latencies::default());
    let mut cameras = Vec::with_capacity(args.sources);
    for i in 0..args.sources {
        let name = format!("{}-cam-{i}", args.name_prefix);
        let (reply, elapsed) = json_ok(
            admin
                .post(format!("{mgmt}/v1/source"))
                .json(&json!({"name": name, "segment_len": args.segment_duration.ceil() as u64, "description": "livemix-bench camera"})),
            "registering a source",
        )
        .await?;
        register.record(elapsed);
        let id = reply["source"]["id"].as_str().context("source id in reply")?.to_owned();
        registered.push(id.clone());
        cameras.push(Camera::new(i, name, id));
    }
    for cam in &cameras {
        let (_, elapsed) =
            json_ok(admin.put(format!("{mgmt}/v1/source/{}/streaming?new_state=true", cam.id)), "turning streaming on")
                .await?;
        streaming.record(elapsed);
    }
    let setup = Setup { register: register.summary(), streaming: streaming.summary() };
    let ids: Vec<String> = cameras.iter().map(|c| c.id.clone()).collect();

    // ---- live scenario: warm-up, paced players, back-to-back players ----
    let live_secs = args.duration_secs as f64;
    let sat_secs = args.saturation_secs as f64;
    let mut phase_plan: Vec<(&'static str, f64, usize, Option<Duration>)> =
        vec![("warm-up", args.warmup_secs as f64, 0, None)];
    phase_plan.push(("live", live_secs, args.players, Some(Duration::from_millis(args.player_interval_ms))));
    if args.saturation_secs > 0 {
        phase_plan.push(("capacity", sat_secs, args.players, None));
    }
    let phases = Arc::new(Phases::new(phase_plan.len()));
    let sent = Arc::new(camera::SentTimes::default());
    let feed = Arc::new(Feed {
        client: client(timeout),
        edge: args.edge_url.trim_end_matches('/').to_owned(),
        segment: segment.clone(),
        duration_secs: args.segment_duration,
        list_size: args.list_size.max(1),
        sent: Arc::clone(&sent),
        sampled: args.delay_sources,
    });
    let audience = Arc::new(Audience {
        client: client(timeout),
        vod: args.vod_url.trim_end_matches('/').to_owned(),
        sources: ids.clone(),
    });
    let total_secs: f64 = phase_plan.iter().map(|p| p.1).sum();
    let t0 = Instant::now();
    let live_until = t0 + Duration::from_secs_f64(total_secs);
    eprintln!("[bench] {} cameras pushing for {total_secs:.0} s", args.sources);
    let period = Duration::from_secs_f64(args.segment_duration);
    let camera_tasks: Vec<_> = cameras
        .into_iter()
        .map(|cam| {
            // Cameras of a fleet are not in step: spread their segment boundaries over one segment duration.
            let start = t0 + period.mul_f64(cam.index as f64 / args.sources as f64);
            tokio::spawn(cam.run(Arc::clone(&feed), Arc::clone(&phases), start, live_until))
        })
        .collect();
    let probe = tokio::spawn(player::delay_probe(
        Arc::clone(&audience),
        ids.iter().take(args.delay_sources).cloned().enumerate().collect(),
        Arc::clone(&sent),
        Arc::clone(&phases),
        Duration::from_millis(args.delay_poll_ms.max(10)),
        live_until,
    ));
    let timeline = Arc::new(parking_lot::Mutex::new(Timeline::new()));
    let sampler = {
        let (procs, phases, timeline) = (procs.clone(), Arc::clone(&phases), Arc::clone(&timeline));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let rss =
                    sample_all(&procs).iter().zip(&procs).filter(|(_, p)| p.memory).map(|(s, _)| s.rss_kib).collect();
                timeline.lock().push((t0.elapsed().as_secs_f64(), phases.index(), rss));
            }
        })
    };

    let metrics_client = client(timeout);
    let mut extras = Vec::new();
    let mut phase_start = t0;
    let mut last = snapshot(args, &procs, &metrics_client, &feed.edge).await;
    let mut all_players = Vec::new();
    for (index, &(name, secs, players, interval)) in phase_plan.iter().enumerate() {
        phases.advance_to(index);
        let until = phase_start + Duration::from_secs_f64(secs);
        eprintln!(
            "[bench] phase {name}: {secs:.0} s, {players} players{}",
            if interval.is_some() { " (paced)" } else { "" }
        );
        all_players.extend((0..players).map(|p| {
            let seed = (index * 1_000_003 + p) as u64 ^ started_at.timestamp_micros() as u64;
            tokio::spawn(player::live_player(Arc::clone(&audience), Arc::clone(&phases), seed, until, interval))
        }));
        tokio::time::sleep_until(until).await;
        // Requests from now on count for the next phase.
        if index + 1 < phase_plan.len() {
            phases.advance_to(index + 1);
        }
        let now = snapshot(args, &procs, &metrics_client, &feed.edge).await;
        let counter = "livemix_edge_segments_not_forwarded_total";
        let (b, a) = (metric_series(&last.edge, counter), metric_series(&now.edge, counter));
        let not_forwarded = a
            .into_iter()
            .map(|(k, v)| (k.clone(), v - b.get(&k).copied().unwrap_or(0.0)))
            .filter(|(_, v)| *v > 0.0)
            .collect();
        let forwarded = "livemix_edge_segments_forwarded_total";
        extras.push(PhaseExtra {
            name,
            secs: (until - phase_start).as_secs_f64(),
            players,
            paced: interval.is_some(),
            procs: last.procs.iter().copied().zip(now.procs.iter().copied()).collect(),
            machine_cpu: (last.cpu, now.cpu),
            memcached: (last.memcached.clone(), now.memcached.clone()),
            forwarded: metric_sum(&now.edge, forwarded) - metric_sum(&last.edge, forwarded),
            not_forwarded,
        });
        last = now;
        phase_start = until;
    }
    for task in all_players {
        task.await?;
    }
    let mut cameras = Vec::with_capacity(args.sources);
    for task in camera_tasks {
        cameras.push(task.await?);
    }
    probe.await?;
    // Sampled segments uploaded more than 10 s before the end that no live playlist ever listed.
    let never_listed = sent.lock().values().filter(|&&at| at + Duration::from_secs(10) < live_until).count();

    // ---- replay scenario ----
    let replay = if args.record_secs > 0 { Some(replay(args, admin, mgmt, &feed, &mut cameras).await?) } else { None };
    sampler.abort();
    let final_procs = sample_all(&procs);

    let mut server_non_2xx = Vec::new();
    for (who, base, metric) in [
        ("control", mgmt, "livemix_control_http_requests_total"),
        ("edge", feed.edge.as_str(), "livemix_edge_http_requests_total"),
    ] {
        for (labels, count) in metric_series(&metrics_text(&metrics_client, base).await, metric) {
            if !labels.contains("status=\"2") {
                server_non_2xx.push((who.to_owned(), labels, count));
            }
        }
    }

    let results = Results {
        machine,
        started: started_at,
        wall: wall.elapsed(),
        segment_bytes: segment.len(),
        procs,
        setup,
        phases,
        extras,
        never_listed,
        timeline: std::mem::take(&mut *timeline.lock()),
        final_procs,
        replay,
        server_non_2xx,
        args: args.clone(),
    };
    let text = report::markdown(&results);
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, &text).with_context(|| format!("writing {}", args.out.display()))?;
    println!("{text}");
    eprintln!("[bench] report written to {}", args.out.display());
    Ok(())
}

/// Records a few seconds of one camera, then has many players download the recording twice: with a cold cache
/// (segments come from the object store) and a warm one.
async fn replay(
    args: &RunArgs,
    admin: &reqwest::Client,
    mgmt: &str,
    feed: &Arc<Feed>,
    cameras: &mut Vec<Camera>,
) -> anyhow::Result<Replay> {
    let n = args.record_sources.clamp(1, cameras.len());
    eprintln!("[bench] recording {} s of {n} camera(s) while all {} keep streaming", args.record_secs, cameras.len());
    let scratch = Arc::new(Phases::new(1));
    let metrics_http = client(Duration::from_millis(args.timeout_ms));
    let pending =
        || async { metric_sum(&metrics_text(&metrics_http, &feed.edge).await, "livemix_edge_recording_pending") };
    // Every recording starts at once, as an operator's "record them all" would.
    let starts = cameras[..n].iter().map(|cam| {
        json_ok(
            admin.post(format!("{mgmt}/v1/source/{}/recording", cam.id)).json(
                &json!({"alias": format!("{}-recording", cam.name), "description": "livemix-bench replay scenario"}),
            ),
            "starting a recording",
        )
    });
    let (start_latency, mut recordings) = (Latencies::default(), Vec::with_capacity(n));
    for result in futures::future::join_all(starts).await {
        let (reply, elapsed) = result?;
        start_latency.record(elapsed);
        recordings.push(reply["recording"]["id"].as_str().context("recording id in reply")?.to_owned());
    }
    let period = Duration::from_secs_f64(args.segment_duration);
    let (started, total) = (Instant::now(), cameras.len());
    let until = started + Duration::from_secs(args.record_secs);
    let tasks: Vec<_> = std::mem::take(cameras)
        .into_iter()
        .map(|cam| {
            let start = started + period.mul_f64(cam.index as f64 / total as f64);
            tokio::spawn(cam.run(Arc::clone(feed), Arc::clone(&scratch), start, until))
        })
        .collect();
    let mut pending_max: f64 = 0.0;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(250)).await;
        pending_max = pending_max.max(pending().await);
    }
    for task in tasks {
        cameras.push(task.await?);
    }
    let stops = recordings
        .iter()
        .map(|id| json_ok(admin.post(format!("{mgmt}/v1/recording/{id}/stop")), "stopping a recording"));
    let stop_latency = Latencies::default();
    for result in futures::future::join_all(stops).await {
        stop_latency.record(result?.1);
    }
    let stopped = Instant::now();
    // The edge uploads each segment to S3 and reports it over Pub/Sub: wait until its queue is empty and the
    // control node's lists stop growing.
    let count = |id: String| async move {
        json_ok(admin.get(format!("{mgmt}/v1/recording/{id}/segment")), "listing recorded segments")
            .await
            .map(|(reply, _)| reply["segments"].as_array().map_or(0, Vec::len))
    };
    let (mut counts, mut stable, mut listed_after, mut pending_left) = (vec![0; n], 0, Duration::ZERO, 0.0);
    while stopped.elapsed() < Duration::from_secs(60) && stable < 4 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        pending_left = pending().await;
        pending_max = pending_max.max(pending_left);
        let now: Vec<usize> = futures::future::join_all(recordings.iter().cloned().map(count))
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?;
        if now != counts || now.contains(&0) || pending_left > 0.0 {
            if now != counts {
                listed_after = stopped.elapsed();
            }
            counts = now;
            stable = 0;
        } else {
            stable += 1;
        }
    }
    let recording = recordings[0].clone();
    ensure!(counts[0] > 0, "recording {recording} has no segments {} s after it stopped", stopped.elapsed().as_secs());
    eprintln!(
        "[bench] {n} recording(s): {} segments in all, listed {:.1} s after the stop; {} replay players on {recording}",
        counts.iter().sum::<usize>(),
        listed_after.as_secs_f64(),
        args.replay_players
    );

    let http = client(Duration::from_millis(args.timeout_ms));
    let mut rounds = Vec::new();
    for round in ["cold cache", "warm cache"] {
        let reads_before = metric_sum(&metrics_text(&http, mgmt).await, "livemix_control_object_store_reads_total");
        let mc_before = memcached_stats(args).await;
        let stats = Arc::new(ReplayStats::default());
        let started = Instant::now();
        let tasks: Vec<_> = (0..args.replay_players)
            .map(|_| {
                tokio::spawn(player::replay_player(
                    http.clone(),
                    args.vod_url.trim_end_matches('/').to_owned(),
                    recording.clone(),
                    Arc::clone(&stats),
                ))
            })
            .collect();
        for task in tasks {
            task.await?;
        }
        let elapsed = started.elapsed();
        // Prefetches run in the background: let them finish before reading the counter.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let reads =
            metric_sum(&metrics_text(&http, mgmt).await, "livemix_control_object_store_reads_total") - reads_before;
        let mc_after = memcached_stats(args).await;
        eprintln!(
            "[bench] replay ({round}): {} segments served in {:.2} s, {reads} object-store reads",
            stats.segments.load(Relaxed),
            elapsed.as_secs_f64()
        );
        rounds.push(ReplayRound {
            name: round,
            wall: elapsed,
            stats,
            store_reads: reads,
            memcached: (mc_before, mc_after),
        });
    }
    Ok(Replay {
        recording,
        recordings: n,
        segments: counts[0],
        all_segments: counts.iter().sum(),
        start_latency: start_latency.summary(),
        stop_latency: stop_latency.summary(),
        listed_after,
        pending_max,
        pending_left,
        camera_errors: scratch.now().errors.total(),
        rounds,
    })
}
