//! LiveMix benchmark: a simulated camera fleet pushing into a real edge, players on a real control node, then
//! a recording replayed by many players. Measures latency, delay, throughput, errors and memory, and writes a
//! markdown report. `bench/run.sh` starts everything and runs this; see `bench/README.md`.

mod camera;
mod cli;
mod exhaustion;
mod http;
mod lifecycle;
mod live;
mod memcached;
mod monitor;
mod player;
mod procs;
mod replay;
mod report;
mod setup;
mod stats;
mod versus;

use std::sync::Arc;

use anyhow::{Context, ensure};
use bytes::Bytes;
use clap::Parser;
use tokio::time::Instant;

use crate::{
    cli::{Cli, Command, RunArgs},
    http::client,
    monitor::RssSampler,
    report::Results,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::FreePorts { count } => free_ports(count),
        Command::Run(args) => run(*args).await,
        Command::VsNginx(args) => versus::run(*args).await,
        Command::Lifecycle(args) => lifecycle::run(*args).await,
        Command::Exhaustion(args) => exhaustion::run(*args).await,
    }
}

/// Prints `count` free loopback TCP ports.
fn free_ports(count: usize) -> anyhow::Result<()> {
    // Hold every listener until all are chosen so the ports differ.
    let listeners: Vec<std::net::TcpListener> =
        (0..count).map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
    for l in &listeners {
        println!("{}", l.local_addr()?.port());
    }
    Ok(())
}

/// Runs the bench until it ends or a signal stops it, then deletes the sources it registered.
async fn run(args: RunArgs) -> anyhow::Result<()> {
    let admin = client(args.timeout());
    let mut registered = Vec::new();
    let outcome = tokio::select! {
        outcome = bench(&args, &admin, &mut registered) => outcome,
        signal = interrupted() => Err(anyhow::anyhow!("stopped by {signal}")),
    };
    // Even after a failure: the database may be shared.
    if !args.keep_sources {
        for id in &registered {
            let _ = admin.delete(format!("{}/v1/source/{id}?recordings=delete", args.management())).send().await;
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

/// Setup, the live scenario, the replay scenario, then the report. Source ids go into `registered` as they are
/// made, for [`run`] to delete.
async fn bench(args: &RunArgs, admin: &reqwest::Client, registered: &mut Vec<String>) -> anyhow::Result<()> {
    ensure!(args.sources > 0 && args.segment_duration > 0.0, "need at least one source and a positive duration");
    let started = chrono::Utc::now();
    let wall = Instant::now();
    let machine = procs::machine();
    let segment = Bytes::from(
        std::fs::read(&args.segment_file).with_context(|| format!("reading {}", args.segment_file.display()))?,
    );
    let procs = monitor::processes(args)?;
    let (setup, cameras) = setup::register_cameras(args, admin, registered).await?;

    let scenario = live::Scenario::new(args, started.timestamp_micros() as u64);
    let t0 = Instant::now();
    let sampler = RssSampler::spawn(procs.clone(), Arc::clone(&scenario.phases), t0);
    let live = scenario.run(cameras, segment.clone(), &procs, t0).await?;

    let replay =
        if args.record_secs > 0 { Some(replay::run(args, admin, &live.feed, live.cameras).await?) } else { None };
    let timeline = sampler.stop().await;
    let final_procs = monitor::sample_all(&procs);
    let server_non_2xx = monitor::server_non_2xx(args, &client(args.timeout())).await;

    let results = Results {
        machine,
        started,
        wall: wall.elapsed(),
        segment_bytes: segment.len(),
        procs,
        setup,
        phases: scenario.phases,
        extras: live.extras,
        never_listed: live.never_listed,
        timeline,
        final_procs,
        replay,
        server_non_2xx,
        args: args.clone(),
    };
    report::write(&results)
}
