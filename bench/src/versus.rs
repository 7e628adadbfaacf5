//! LiveMix next to nginx: the same bytes (a live segment and the live playlist) served by the control node and by
//! nginx as static files, measured in one run with the same load generator (`wrk`, closed loop at several
//! connection counts), then a paced scenario of many viewers polling the playlist. `bench/vs-nginx.sh` starts
//! both servers and runs this.

use std::{path::PathBuf, process::Stdio, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::{process::Command, time::Instant};

use crate::{
    http::fetch_ok,
    procs,
    stats::{Errors, Latencies, Summary},
};

#[derive(Debug, Clone, clap::Args)]
pub struct VersusArgs {
    /// Base URL of the live source on the control node (`.../v1/vod/live/<source>`).
    #[arg(long)]
    pub livemix: String,
    /// The same path on nginx.
    #[arg(long)]
    pub nginx: String,
    /// File name of the segment under both bases.
    #[arg(long)]
    pub segment: String,
    /// File name of the playlist under both bases.
    #[arg(long, default_value = "vid.m3u8")]
    pub playlist: String,
    /// Connection counts of the closed-loop runs.
    #[arg(long, value_delimiter = ',', default_value = "16,64,256")]
    pub connections: Vec<usize>,
    /// Seconds of each closed-loop run.
    #[arg(long, default_value_t = 20)]
    pub duration_secs: u64,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    pub wrk_threads: usize,
    /// Paced viewers of the polling scenario (0: skip it).
    #[arg(long, default_value_t = 1000)]
    pub viewers: usize,
    /// Seconds of the polling scenario, per server.
    #[arg(long, default_value_t = 30)]
    pub viewer_secs: u64,
    /// A viewer polls the playlist (and fetches the newest segment it lists) every this many ms.
    #[arg(long, default_value_t = 1000)]
    pub viewer_interval_ms: u64,
    /// The wrk Lua script that prints a JSON summary (written by `bench/vs-nginx.sh`).
    #[arg(long)]
    pub wrk_script: PathBuf,
    /// Where the JSON results go.
    #[arg(long)]
    pub out_json: PathBuf,
    /// Where the markdown table goes.
    #[arg(long)]
    pub out_md: PathBuf,
    /// Commit under test, for the report.
    #[arg(long, default_value = "unknown")]
    pub commit: String,
    /// Extra lines for the report (how the servers were started).
    #[arg(long)]
    pub note: Vec<String>,
}

/// One closed-loop run as wrk reports it.
#[derive(Debug, Clone, Copy, Default)]
struct Run {
    rps: f64,
    mb_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

pub async fn run(args: VersusArgs) -> anyhow::Result<()> {
    let started = chrono::Utc::now();
    let machine = procs::machine();
    let mut rows = Vec::new();
    for (what, file) in [("segment", &args.segment), ("playlist", &args.playlist)] {
        for &connections in &args.connections {
            let nginx = wrk(&args, &format!("{}/{file}", args.nginx), connections).await?;
            let livemix = wrk(&args, &format!("{}/{file}", args.livemix), connections).await?;
            eprintln!("[vs-nginx] {what} at {connections} connections: nginx {nginx:?}, livemix {livemix:?}");
            rows.push((what, connections, nginx, livemix));
        }
    }
    let mut viewers = Vec::new();
    if args.viewers > 0 {
        for (server, base) in [("nginx", &args.nginx), ("livemix", &args.livemix)] {
            let result = poll(&args, base).await;
            eprintln!("[vs-nginx] {} viewers on {server}: {result:?}", args.viewers);
            viewers.push((server, result));
        }
    }

    let json = json!({
        "date": started.to_rfc3339(),
        "commit": args.commit,
        "machine": {"nproc": machine.nproc, "cpu": machine.cpu_model, "mem_total_mib": machine.mem_total_mib,
                    "load_avg": machine.load_avg},
        "duration_secs": args.duration_secs,
        "notes": args.note,
        "closed_loop": rows.iter().map(|(what, c, n, l)| json!({
            "what": what, "connections": c, "nginx": run_json(n), "livemix": run_json(l),
            "ratio_rps": ratio(l.rps, n.rps), "ratio_p99": ratio(l.p99_ms, n.p99_ms),
        })).collect::<Vec<Value>>(),
        "viewers": viewers.iter().map(|(server, v)| json!({
            "server": server, "viewers": args.viewers, "interval_ms": args.viewer_interval_ms,
            "seconds": args.viewer_secs, "playlist": summary_json(&v.playlist), "segment": summary_json(&v.segment),
            "errors": v.errors,
        })).collect::<Vec<Value>>(),
    });
    write(&args.out_json, &serde_json::to_string_pretty(&json)?)?;
    write(&args.out_md, &markdown(&args, &started, &machine, &rows, &viewers))?;
    Ok(())
}

fn write(path: &PathBuf, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { (a / b * 100.0).round() / 100.0 } else { 0.0 }
}

fn run_json(r: &Run) -> Value {
    json!({"rps": r.rps, "mb_per_sec": r.mb_per_sec, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "errors": r.errors})
}

fn summary_json(s: &Summary) -> Value {
    json!({"count": s.count, "p50_ms": s.p50, "p95_ms": s.p95, "p99_ms": s.p99, "max_ms": s.max})
}

/// One wrk run against `url`.
async fn wrk(args: &VersusArgs, url: &str, connections: usize) -> anyhow::Result<Run> {
    let output = Command::new("wrk")
        .arg(format!("-t{}", args.wrk_threads.min(connections).max(1)))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", args.duration_secs))
        .arg("-s")
        .arg(&args.wrk_script)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .await
        .context("running wrk (apt-get install wrk)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("wrk {url} failed: {}{}", stdout, String::from_utf8_lossy(&output.stderr));
    }
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).context("wrk printed no JSON summary")?;
    let v: Value = serde_json::from_str(line).with_context(|| format!("wrk summary {line:?}"))?;
    let num = |k: &str| v[k].as_f64().unwrap_or(0.0);
    let secs = (num("duration_us") / 1e6).max(1e-9);
    Ok(Run {
        rps: (num("requests") / secs).round(),
        mb_per_sec: (num("bytes") / secs / 1e6 * 10.0).round() / 10.0,
        p50_ms: num("p50_us") / 1000.0,
        p99_ms: num("p99_us") / 1000.0,
        errors: (num("errors") + num("non2xx")) as u64,
    })
}

#[derive(Debug)]
struct Polled {
    playlist: Summary,
    segment: Summary,
    errors: u64,
}

/// Paced viewers: each polls the playlist every interval (start times spread over one interval) and fetches the
/// newest segment it lists, over a keep-alive connection of its own.
async fn poll(args: &VersusArgs, base: &str) -> Polled {
    let interval = Duration::from_millis(args.viewer_interval_ms.max(1));
    let until = Instant::now() + Duration::from_secs(args.viewer_secs);
    let (playlists, segments, errors) =
        (Arc::new(Latencies::default()), Arc::new(Latencies::default()), Arc::new(Errors::default()));
    let mut viewers = tokio::task::JoinSet::new();
    for i in 0..args.viewers {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(1)
            .build()
            .expect("HTTP client");
        let (playlists, segments, errors) = (Arc::clone(&playlists), Arc::clone(&segments), Arc::clone(&errors));
        let playlist_url = format!("{base}/{}", args.playlist);
        let base = base.to_owned();
        let offset = interval.mul_f64(i as f64 / args.viewers as f64);
        viewers.spawn(async move {
            let mut tick = tokio::time::interval_at(Instant::now() + offset, interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if Instant::now() >= until {
                    return;
                }
                let text = match fetch_ok(client.get(&playlist_url)).await {
                    Ok((body, elapsed)) => {
                        playlists.record(elapsed);
                        body
                    }
                    Err(how) => {
                        errors.add("playlist", how);
                        continue;
                    }
                };
                let newest =
                    String::from_utf8_lossy(&text).lines().rev().find(|l| l.ends_with(".ts")).map(str::to_owned);
                let Some(newest) = newest else {
                    errors.add("playlist", "no segment listed");
                    continue;
                };
                match fetch_ok(client.get(format!("{base}/{newest}"))).await {
                    Ok((_, elapsed)) => segments.record(elapsed),
                    Err(how) => errors.add("segment", how),
                }
            }
        });
    }
    while viewers.join_next().await.is_some() {}
    let errors = errors.snapshot().values().sum();
    Polled { playlist: playlists.summary(), segment: segments.summary(), errors }
}

fn markdown(
    args: &VersusArgs,
    started: &chrono::DateTime<chrono::Utc>,
    machine: &procs::Machine,
    rows: &[(&str, usize, Run, Run)],
    viewers: &[(&str, Polled)],
) -> String {
    let mut md = String::from("# LiveMix next to nginx\n\n");
    md += &format!(
        "Written by `livemix-bench vs-nginx` (`bench/vs-nginx.sh`). Date {}; commit `{}`; {} cores ({}), {} MiB; \
         load average at start {}. wrk -t{} for {} s per run, on loopback; server, wrk and backing services share \
         the machine.\n\n",
        started.format("%Y-%m-%d %H:%M:%S UTC"),
        args.commit,
        machine.nproc,
        machine.cpu_model,
        machine.mem_total_mib,
        machine.load_avg,
        args.wrk_threads,
        args.duration_secs
    );
    for note in &args.note {
        md += &format!("- {note}\n");
    }
    md += "\n| what | connections | nginx req/s | nginx MB/s | nginx p99 ms | LiveMix req/s | LiveMix MB/s | LiveMix p99 ms | req/s ratio | p99 ratio | errors (nginx/LiveMix) |\n";
    md += "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n";
    for (what, c, n, l) in rows {
        md += &format!(
            "| {what} | {c} | {:.0} | {:.1} | {:.2} | {:.0} | {:.1} | {:.2} | **{:.2}x** | {:.2}x | {}/{} |\n",
            n.rps,
            n.mb_per_sec,
            n.p99_ms,
            l.rps,
            l.mb_per_sec,
            l.p99_ms,
            ratio(l.rps, n.rps),
            ratio(l.p99_ms, n.p99_ms),
            n.errors,
            l.errors
        );
    }
    if !viewers.is_empty() {
        md += &format!(
            "\n{} paced viewers, each polling the playlist every {} ms and fetching the newest segment it lists, {} s \
             per server:\n\n| server | playlists | playlist p50 ms | playlist p99 ms | segments | segment p50 ms | \
             segment p99 ms | errors |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n",
            args.viewers, args.viewer_interval_ms, args.viewer_secs
        );
        for (server, v) in viewers {
            md += &format!(
                "| {server} | {} | {:.2} | {:.2} | {} | {:.2} | {:.2} | {} |\n",
                v.playlist.count,
                v.playlist.p50,
                v.playlist.p99,
                v.segment.count,
                v.segment.p50,
                v.segment.p99,
                v.errors
            );
        }
    }
    md
}
