//! The live scenario: the camera fleet pushes through a warm-up and the measured phases (paced players, then
//! players back to back) while a probe samples the end-to-end delay of a few cameras.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use tokio::{task::JoinHandle, time::Instant};

use crate::{
    camera::{Camera, Feed, Fleet, SentTimes},
    cli::RunArgs,
    http::{client, metric_series, metric_sum},
    memcached,
    monitor::{Proc, Snapshot},
    player::{self, Audience},
    procs::ProcSample,
    stats::Phases,
};

/// Sampled segments uploaded longer than this before the end must have been listed by then.
const LISTED_WITHIN: Duration = Duration::from_secs(10);

/// One phase of the live scenario.
#[derive(Debug, Clone)]
pub struct Phase {
    pub name: &'static str,
    pub secs: f64,
    pub players: usize,
    /// How often a paced player plays a round; `None`: back to back.
    pub interval: Option<Duration>,
}

/// The warm-up, the paced *live* phase and, unless `--saturation-secs 0`, the back-to-back *capacity* phase.
pub fn plan(args: &RunArgs) -> Vec<Phase> {
    let mut plan = vec![
        Phase { name: "warm-up", secs: args.warmup_secs as f64, players: 0, interval: None },
        Phase {
            name: "live",
            secs: args.duration_secs as f64,
            players: args.players,
            interval: Some(Duration::from_millis(args.player_interval_ms)),
        },
    ];
    if args.saturation_secs > 0 {
        plan.push(Phase { name: "capacity", secs: args.saturation_secs as f64, players: args.players, interval: None });
    }
    plan
}

/// What one phase measured beyond [`crate::stats::PhaseStats`].
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

impl PhaseExtra {
    /// What moved between the snapshots at the start and at the end of a phase that lasted `secs`.
    fn between(phase: &Phase, secs: f64, start: &Snapshot, end: &Snapshot) -> Self {
        const FORWARDED: &str = "livemix_edge_segments_forwarded_total";
        const NOT_FORWARDED: &str = "livemix_edge_segments_not_forwarded_total";
        let before = metric_series(&start.edge, NOT_FORWARDED);
        let not_forwarded = metric_series(&end.edge, NOT_FORWARDED)
            .into_iter()
            .map(|(reason, v)| {
                let delta = v - before.get(&reason).copied().unwrap_or(0.0);
                (reason, delta)
            })
            .filter(|(_, v)| *v > 0.0)
            .collect();
        Self {
            name: phase.name,
            secs,
            players: phase.players,
            paced: phase.interval.is_some(),
            procs: start.procs.iter().copied().zip(end.procs.iter().copied()).collect(),
            machine_cpu: (start.cpu, end.cpu),
            memcached: (start.memcached.clone(), end.memcached.clone()),
            forwarded: metric_sum(&end.edge, FORWARDED) - metric_sum(&start.edge, FORWARDED),
            not_forwarded,
        }
    }
}

/// What the live scenario leaves for the replay scenario and the report.
pub struct Live {
    /// One per phase of the plan.
    pub extras: Vec<PhaseExtra>,
    /// Sampled segments uploaded more than [`LISTED_WITHIN`] before the end that no live playlist ever listed.
    pub never_listed: usize,
    /// The cameras, to go on streaming.
    pub cameras: Vec<Camera>,
    pub feed: Arc<Feed>,
}

/// The live scenario, ready to run.
pub struct Scenario<'a> {
    pub args: &'a RunArgs,
    pub plan: Vec<Phase>,
    /// Where every camera, player and probe records, moved forward phase by phase.
    pub phases: Arc<Phases>,
    /// Mixed into every player's random seed, so that runs differ.
    pub seed: u64,
}

impl<'a> Scenario<'a> {
    pub fn new(args: &'a RunArgs, seed: u64) -> Self {
        let plan = plan(args);
        let phases = Arc::new(Phases::new(plan.len()));
        Self { args, plan, phases, seed }
    }

    /// Streams `cameras` with `segment` from `t0` through every phase of the plan, and measures each phase.
    pub async fn run(&self, cameras: Vec<Camera>, segment: Bytes, procs: &[Proc], t0: Instant) -> anyhow::Result<Live> {
        let args = self.args;
        let sent = Arc::new(SentTimes::default());
        let feed = Arc::new(Feed {
            client: client(args.timeout()),
            edge: args.edge().to_owned(),
            segment,
            duration_secs: args.segment_duration,
            list_size: args.list_size.max(1),
            sent: Arc::clone(&sent),
            sampled: args.delay_sources,
        });
        let audience = Arc::new(Audience {
            client: client(args.timeout()),
            vod: args.vod().to_owned(),
            sources: cameras.iter().map(|c| c.id.clone()).collect(),
        });
        let total_secs: f64 = self.plan.iter().map(|p| p.secs).sum();
        let until = t0 + Duration::from_secs_f64(total_secs);
        eprintln!("[bench] {} cameras pushing for {total_secs:.0} s", args.sources);
        let fleet = Fleet::spawn(cameras, &feed, &self.phases, t0, until);
        let probe = tokio::spawn(player::delay_probe(
            Arc::clone(&audience),
            audience.sources.iter().take(args.delay_sources).cloned().enumerate().collect(),
            Arc::clone(&sent),
            Arc::clone(&self.phases),
            Duration::from_millis(args.delay_poll_ms.max(10)),
            until,
        ));
        let (extras, players) = self.run_phases(&audience, procs, t0).await;
        for task in players {
            task.await?;
        }
        let cameras = fleet.join().await?;
        probe.await?;
        let never_listed = sent.lock().values().filter(|&&at| at + LISTED_WITHIN < until).count();
        Ok(Live { extras, never_listed, cameras, feed })
    }

    /// Runs the phases one after the other from `t0`: each one's players until its end, then what it measured.
    /// Returns the players' tasks, still finishing their last round.
    async fn run_phases(
        &self,
        audience: &Arc<Audience>,
        procs: &[Proc],
        t0: Instant,
    ) -> (Vec<PhaseExtra>, Vec<JoinHandle<()>>) {
        let metrics = client(self.args.timeout());
        let (mut extras, mut players) = (Vec::new(), Vec::new());
        let mut phase_start = t0;
        let mut last = Snapshot::take(self.args, procs, &metrics).await;
        for (index, phase) in self.plan.iter().enumerate() {
            self.phases.advance_to(index);
            let until = phase_start + Duration::from_secs_f64(phase.secs);
            eprintln!(
                "[bench] phase {}: {:.0} s, {} players{}",
                phase.name,
                phase.secs,
                phase.players,
                if phase.interval.is_some() { " (paced)" } else { "" }
            );
            players.extend(self.spawn_players(index, phase, audience, until));
            tokio::time::sleep_until(until).await;
            // Requests from now on count for the next phase.
            if index + 1 < self.plan.len() {
                self.phases.advance_to(index + 1);
            }
            let now = Snapshot::take(self.args, procs, &metrics).await;
            extras.push(PhaseExtra::between(phase, (until - phase_start).as_secs_f64(), &last, &now));
            last = now;
            phase_start = until;
        }
        (extras, players)
    }

    fn spawn_players<'s>(
        &'s self,
        index: usize,
        phase: &'s Phase,
        audience: &'s Arc<Audience>,
        until: Instant,
    ) -> impl Iterator<Item = JoinHandle<()>> + 's {
        (0..phase.players).map(move |p| {
            let seed = (index * 1_000_003 + p) as u64 ^ self.seed;
            tokio::spawn(player::live_player(
                Arc::clone(audience),
                Arc::clone(&self.phases),
                seed,
                until,
                phase.interval,
            ))
        })
    }
}
