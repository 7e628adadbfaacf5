//! Resource exhaustion by unauthenticated clients, against a running control node and edge
//! (`bench/exhaustion.sh` starts them with a 1,024 soft descriptor limit, as many hosts give):
//! - many clients announce 8 MB bodies without a token and trickle them a byte at a time: the edge's RSS must stay
//!   within its body budget, and an authenticated push must go on working meanwhile;
//! - thousands of idle sockets on the control node's public VOD port: its management API and the edge's ingest
//!   must keep answering.

use std::{
    fmt::Write as _,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

use crate::procs;

#[derive(Debug, Clone, clap::Args)]
pub struct ExhaustionArgs {
    /// The edge's ingest API.
    #[arg(long)]
    pub edge: String,
    #[arg(long)]
    pub edge_pid: u32,
    /// The control node's management API.
    #[arg(long)]
    pub management: String,
    /// The control node's VOD API (the public port the idle sockets go to).
    #[arg(long)]
    pub vod: String,
    #[arg(long)]
    pub control_pid: u32,
    #[arg(long, env = "BENCH_INGEST_TOKEN")]
    pub ingest_token: String,
    #[arg(long, env = "BENCH_MANAGEMENT_TOKEN")]
    pub management_token: String,
    /// The edge id the bench's source is bound to.
    #[arg(long)]
    pub edge_id: String,
    /// The edge's body budget, bytes (what its RSS may grow by at most, plus its working set).
    #[arg(long, default_value_t = 128 * 1024 * 1024)]
    pub body_budget: u64,
    /// Clients trickling unauthenticated bodies at once.
    #[arg(long, default_value_t = 200)]
    pub trickled: usize,
    /// The size each of them announces.
    #[arg(long, default_value_t = 8_000_000)]
    pub body_bytes: u64,
    /// How long they trickle.
    #[arg(long, default_value_t = 20)]
    pub trickle_secs: u64,
    /// Idle sockets opened on the VOD port (from 127.0.0.2, one address, as one attacker would).
    #[arg(long, default_value_t = 2000)]
    pub idle: usize,
    #[arg(long, default_value = "bench/results/security.md")]
    pub out: PathBuf,
}

fn host_port(url: &str) -> anyhow::Result<std::net::SocketAddr> {
    let rest = url.strip_prefix("http://").context("an http:// URL")?;
    rest.trim_end_matches('/').parse().with_context(|| format!("{url}: not http://ip:port"))
}

fn rss_mib(pid: u32) -> f64 {
    procs::sample(pid).map_or(0.0, |s| s.rss_kib as f64 / 1024.0)
}

/// What one authenticated push got, and how long it took.
async fn push(http: &reqwest::Client, args: &ExhaustionArgs, source: &str, n: usize) -> (u16, Duration) {
    let url = format!("{}/v1/ingest/{source}/{}/probe{n}.ts", args.edge, args.ingest_token);
    let started = Instant::now();
    let status = http.put(url).body(vec![0x47u8; 188 * 10]).send().await.map_or(0, |r| r.status().as_u16());
    (status, started.elapsed())
}

async fn management(http: &reqwest::Client, args: &ExhaustionArgs) -> (u16, Duration) {
    let started = Instant::now();
    let status = http
        .get(format!("{}/v1/source", args.management))
        .bearer_auth(&args.management_token)
        .send()
        .await
        .map_or(0, |r| r.status().as_u16());
    (status, started.elapsed())
}

/// One unauthenticated client: announces a large body and sends a byte every half second; returns the status
/// line's code when the edge answers before the body is complete (0 if it never did).
async fn trickle(edge: std::net::SocketAddr, bytes: u64, until: Instant) -> u16 {
    let Ok(mut conn) = TcpStream::connect(edge).await else { return 0 };
    let head = format!("PUT /v1/ingest/cam-trickle/seg.ts HTTP/1.1\r\nHost: {edge}\r\nContent-Length: {bytes}\r\n\r\n");
    if conn.write_all(head.as_bytes()).await.is_err() {
        return 0;
    }
    let mut reply = [0u8; 64];
    while Instant::now() < until {
        tokio::select! {
            read = conn.read(&mut reply) => {
                return match read {
                    Ok(n) if n >= 12 => std::str::from_utf8(&reply[9..12]).ok().and_then(|s| s.parse().ok()).unwrap_or(0),
                    _ => 0,
                };
            }
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                if conn.write_all(&[0x47]).await.is_err() {
                    return 0;
                }
            }
        }
    }
    0
}

pub async fn run(args: ExhaustionArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let source = format!("bench-exhaustion-{}", std::process::id());
    let created = http
        .post(format!("{}/v1/source", args.management))
        .bearer_auth(&args.management_token)
        .json(&serde_json::json!({"name": source, "segment_len": 2, "edge": args.edge_id}))
        .send()
        .await?;
    ensure!(created.status().is_success(), "registering the bench source: {}", created.text().await?);
    let (first, _) = push(&http, &args, &source, 0).await;
    ensure!(first == 201, "an authenticated push before the attack got {first}");

    // 1. Trickled bodies.
    let edge = host_port(&args.edge)?;
    let baseline = rss_mib(args.edge_pid);
    let until = Instant::now() + Duration::from_secs(args.trickle_secs);
    let statuses: Arc<parking_lot::Mutex<Vec<u16>>> = Arc::default();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..args.trickled {
        let statuses = Arc::clone(&statuses);
        let bytes = args.body_bytes;
        clients.spawn(async move {
            let status = trickle(edge, bytes, until).await;
            statuses.lock().push(status);
        });
    }
    let mut peak = baseline;
    let mut pushes = Vec::new();
    let mut n = 1;
    while Instant::now() < until {
        peak = peak.max(rss_mib(args.edge_pid));
        pushes.push(push(&http, &args, &source, n).await);
        n += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    while clients.join_next().await.is_some() {}
    let statuses = statuses.lock().clone();
    let refused = statuses.iter().filter(|s| **s == 401).count();
    let pushed_ok = pushes.iter().filter(|(s, _)| *s == 201).count();
    let worst_push = pushes.iter().map(|(_, t)| *t).max().unwrap_or_default();

    // 2. Idle sockets on the VOD port.
    let vod = host_port(&args.vod)?;
    let mut idle = Vec::with_capacity(args.idle);
    for _ in 0..args.idle {
        let socket = TcpSocket::new_v4()?;
        socket.bind("127.0.0.2:0".parse()?)?;
        if let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_secs(1), socket.connect(vod)).await {
            idle.push(conn);
        }
    }
    // Give the server time to accept (or close) what it will.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut still_open = 0;
    for conn in &idle {
        let mut buf = [0u8; 1];
        // An open, idle connection has nothing to read yet; a closed one reads 0 bytes at once.
        if let Err(_) | Ok(Ok(1..)) = tokio::time::timeout(Duration::from_millis(2), conn.peek(&mut buf)).await {
            still_open += 1;
        }
    }
    let mut management_calls = Vec::new();
    let mut ingest_calls = Vec::new();
    for i in 0..10 {
        management_calls.push(management(&http, &args).await);
        ingest_calls.push(push(&http, &args, &source, 1000 + i).await);
    }
    let control_rss = rss_mib(args.control_pid);
    let idle_opened = idle.len();
    drop(idle);
    let management_ok = management_calls.iter().filter(|(s, _)| *s == 200).count();
    let ingest_ok = ingest_calls.iter().filter(|(s, _)| *s == 201).count();
    let worst = |calls: &[(u16, Duration)]| calls.iter().map(|(_, t)| *t).max().unwrap_or_default();

    let mut md = String::new();
    writeln!(md, "# Resource exhaustion by unauthenticated clients\n")?;
    let machine = procs::machine();
    writeln!(
        md,
        "`bash bench/exhaustion.sh` (release builds; both processes started with a soft descriptor limit of 1,024, \
         which each raises to its hard limit). {} cores ({}), {} MiB memory, load {}.\n",
        machine.nproc, machine.cpu_model, machine.mem_total_mib, machine.load_avg
    )?;
    writeln!(
        md,
        "## {} clients trickling {} MB bodies without a token for {} s\n",
        args.trickled,
        args.body_bytes / 1_000_000,
        args.trickle_secs
    )?;
    writeln!(md, "| figure | value |\n|---|---|")?;
    writeln!(md, "| edge RSS before | {baseline:.1} MiB |")?;
    writeln!(md, "| edge RSS peak during the attack | {peak:.1} MiB (+{:.1} MiB) |", peak - baseline)?;
    writeln!(md, "| the edge's body budget | {} MiB |", args.body_budget / (1024 * 1024))?;
    writeln!(md, "| clients refused (401) before sending their body | {refused} of {} |", statuses.len())?;
    writeln!(
        md,
        "| authenticated pushes during the attack | {pushed_ok} of {} got 201, slowest {} ms |",
        pushes.len(),
        worst_push.as_millis()
    )?;
    writeln!(md, "\n## {} idle sockets on the control node's VOD port, from one address\n", args.idle)?;
    writeln!(md, "| figure | value |\n|---|---|")?;
    writeln!(md, "| connections opened by the client | {} |", idle_opened)?;
    writeln!(md, "| still open after 2 s (the rest closed by the per-peer cap) | {still_open} |")?;
    writeln!(
        md,
        "| management API calls answered 200 meanwhile | {management_ok} of {}, slowest {} ms |",
        management_calls.len(),
        worst(&management_calls).as_millis()
    )?;
    writeln!(
        md,
        "| edge pushes answered 201 meanwhile | {ingest_ok} of {}, slowest {} ms |",
        ingest_calls.len(),
        worst(&ingest_calls).as_millis()
    )?;
    writeln!(md, "| control RSS with the sockets open | {control_rss:.1} MiB |")?;
    std::fs::write(&args.out, &md).with_context(|| format!("writing {}", args.out.display()))?;
    print!("{md}");
    ensure!(peak - baseline < args.body_budget as f64 / (1024.0 * 1024.0), "the edge grew past its body budget");
    ensure!(pushed_ok == pushes.len(), "authenticated pushes failed during the trickle attack");
    ensure!(management_ok == management_calls.len() && ingest_ok == ingest_calls.len(), "APIs stopped answering");
    Ok(())
}
