//! What the bench watches besides its own requests: the memory and CPU of the processes under test, the nodes'
//! `/metrics` and memcached's counters, read at phase boundaries and (RSS) once a second.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use parking_lot::Mutex;
use tokio::{task::JoinHandle, time::Instant};

use crate::{
    cli::RunArgs,
    http::{metric_series, metrics_text},
    memcached,
    procs::{self, ProcSample},
    stats::Phases,
};

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

/// The nodes (`--control-pid`, `--edge-pid`), the bench itself, then the `--watch` and `--watch-tree` processes.
pub fn processes(args: &RunArgs) -> anyhow::Result<Vec<Proc>> {
    let node = |name: &str, pid| Proc { name: name.into(), pid, tree: false, memory: true };
    let mut procs: Vec<Proc> = [("livemix-control", args.control_pid), ("livemix-edge", args.edge_pid)]
        .into_iter()
        .filter_map(|(name, pid)| Some(node(name, pid?)))
        .collect();
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
    Ok(procs)
}

fn parse_watch(spec: &str, tree: bool) -> anyhow::Result<Proc> {
    let (name, pid) = spec.split_once('=').with_context(|| format!("{spec:?}: expected NAME=PID"))?;
    let pid = pid.trim().parse().with_context(|| format!("{spec:?}: {pid:?} is not a process id"))?;
    Ok(Proc { name: name.to_owned(), pid, tree, memory: false })
}

/// One reading of every process (a default one for a process that is gone).
pub fn sample_all(procs: &[Proc]) -> Vec<ProcSample> {
    procs.iter().map(|p| procs::sample_tree(p.pid, p.tree).unwrap_or_default()).collect()
}

/// The counters a phase is measured between.
pub struct Snapshot {
    pub procs: Vec<ProcSample>,
    pub cpu: (u64, u64),
    pub memcached: Option<memcached::Stats>,
    /// The edge's `/metrics`.
    pub edge: String,
}

impl Snapshot {
    pub async fn take(args: &RunArgs, procs: &[Proc], http: &reqwest::Client) -> Self {
        Self {
            procs: sample_all(procs),
            cpu: procs::machine_cpu(),
            memcached: memcached_stats(args).await,
            edge: metrics_text(http, args.edge()).await,
        }
    }
}

/// The counters of the memcached the control node uses, when `--memcached-url` names one that answers.
pub async fn memcached_stats(args: &RunArgs) -> Option<memcached::Stats> {
    memcached::stats(&memcached::addr_of(args.memcached_url.as_deref()?)?).await
}

/// RSS samples of the processes under test, one per second: (seconds since start, phase, KiB per process).
pub type Timeline = Vec<(f64, usize, Vec<u64>)>;

/// Samples the RSS of the nodes under test once a second, with the phase it falls in, until stopped.
pub struct RssSampler {
    timeline: Arc<Mutex<Timeline>>,
    task: JoinHandle<()>,
}

impl RssSampler {
    /// Starts sampling; times are counted from `t0`.
    pub fn spawn(procs: Vec<Proc>, phases: Arc<Phases>, t0: Instant) -> Self {
        let timeline = Arc::new(Mutex::new(Timeline::new()));
        let samples = Arc::clone(&timeline);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let rss =
                    sample_all(&procs).iter().zip(&procs).filter(|(_, p)| p.memory).map(|(s, _)| s.rss_kib).collect();
                samples.lock().push((t0.elapsed().as_secs_f64(), phases.index(), rss));
            }
        });
        Self { timeline, task }
    }

    /// Stops sampling and returns the samples.
    pub async fn stop(self) -> Timeline {
        self.task.abort();
        // A sample being taken right now still lands before the timeline is read.
        let _ = self.task.await;
        std::mem::take(&mut *self.timeline.lock())
    }
}

/// Non-2xx answers the nodes counted themselves over the whole run: (node, label text, count).
pub async fn server_non_2xx(args: &RunArgs, http: &reqwest::Client) -> Vec<(String, String, f64)> {
    let mut found = Vec::new();
    for (who, base, metric) in [
        ("control", args.management(), "livemix_control_http_requests_total"),
        ("edge", args.edge(), "livemix_edge_http_requests_total"),
    ] {
        for (labels, count) in metric_series(&metrics_text(http, base).await, metric) {
            if !labels.contains("status=\"2") {
                found.push((who.to_owned(), labels, count));
            }
        }
    }
    found
}
