//! The markdown report: written to `--out` and printed.

use std::{fmt::Write as _, sync::Arc, sync::atomic::Ordering::Relaxed, time::Duration};

use anyhow::Context;

use crate::{
    cli::RunArgs,
    live::PhaseExtra,
    memcached,
    monitor::{Proc, Timeline},
    procs::{Machine, ProcSample},
    replay::Replay,
    setup::Setup,
    stats::{PhaseStats, Phases, Summary},
};

/// Everything the report is made of.
pub struct Results {
    pub args: RunArgs,
    pub machine: Machine,
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

/// Writes the report to `--out` (making its folder) and prints it.
pub fn write(results: &Results) -> anyhow::Result<()> {
    let out = &results.args.out;
    let text = markdown(results);
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, &text).with_context(|| format!("writing {}", out.display()))?;
    println!("{text}");
    eprintln!("[bench] report written to {}", out.display());
    Ok(())
}

/// Picks one latency of a phase.
type SummaryOf = fn(&PhaseStats) -> Summary;
/// One cell of the throughput table: (phase index, its stats).
type Cell<'a> = Box<dyn Fn(usize, &PhaseStats) -> String + 'a>;

fn row(out: &mut String, cells: &[String]) {
    let _ = writeln!(out, "| {} |", cells.join(" | "));
}

fn header(out: &mut String, cells: &[impl AsRef<str>]) {
    row(out, &cells.iter().map(|c| c.as_ref().to_owned()).collect::<Vec<_>>());
    row(out, &cells.iter().map(|_| "---".to_owned()).collect::<Vec<_>>());
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn latency_cells(s: &Summary) -> Vec<String> {
    if s.count == 0 {
        return vec!["0".into(), "–".into(), "–".into(), "–".into(), "–".into()];
    }
    vec![s.count.to_string(), ms(s.p50), ms(s.p95), ms(s.p99), ms(s.max)]
}

/// A row of leading cells, then the count and percentiles of `s`.
fn latency_row(out: &mut String, leading: &[&str], s: &Summary) {
    let mut cells: Vec<String> = leading.iter().map(|c| (*c).to_owned()).collect();
    cells.extend(latency_cells(s));
    row(out, &cells);
}

/// The share of the machine's CPU time that was busy during a phase, 0 to 1.
fn machine_busy(e: &PhaseExtra) -> f64 {
    let ((busy0, total0), (busy1, total1)) = e.machine_cpu;
    (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// The report, section by section.
pub fn markdown(r: &Results) -> String {
    let mut out = String::new();
    // The measured phases (the warm-up is not reported).
    let phases: Vec<(usize, &PhaseStats)> = r.phases.stats.iter().enumerate().skip(1).collect();
    run_facts(&mut out, r);
    setup(&mut out, r);
    targets(&mut out, r, &phases);
    live_latency(&mut out, r, &phases);
    throughput(&mut out, r, &phases);
    errors(&mut out, r);
    resources(&mut out, r, &phases);
    management_latency(&mut out, r);
    replay(&mut out, r);
    out
}

/// The run's identity: date, commit, command and the machine it ran on.
fn run_facts(out: &mut String, r: &Results) {
    let a = &r.args;
    let m = &r.machine;
    let _ = writeln!(out, "# LiveMix benchmark results\n");
    let _ = writeln!(
        out,
        "Written by `livemix-bench` (run through `bench/run.sh`; see `bench/README.md`). One run on one machine: \
         compare numbers across runs on the same machine only, and mind the load average — the machine may be \
         shared.\n"
    );
    header(out, &["", ""]);
    row(out, &["date".into(), r.started.format("%Y-%m-%d %H:%M:%S UTC").to_string()]);
    row(out, &["commit".into(), format!("`{}`", a.commit)]);
    row(
        out,
        &["command".into(), format!("`{}`", if a.command.is_empty() { "livemix-bench run ..." } else { &a.command })],
    );
    row(out, &["nproc".into(), m.nproc.to_string()]);
    row(
        out,
        &[
            "memory".into(),
            format!(
                "{:.1} GiB total, {:.1} GiB available at start",
                m.mem_total_mib as f64 / 1024.0,
                m.mem_available_mib as f64 / 1024.0
            ),
        ],
    );
    row(out, &["CPU".into(), m.cpu_model.clone()]);
    row(out, &["kernel".into(), format!("Linux {}", m.kernel)]);
    row(out, &["load average at start".into(), m.load_avg.clone()]);
    row(out, &["wall time of the bench".into(), format!("{:.0} s", r.wall.as_secs_f64())]);
}

/// What the bench does, so the figures can be read.
fn setup(out: &mut String, r: &Results) {
    let a = &r.args;
    let _ = writeln!(out, "\n## Setup\n");
    let _ = writeln!(
        out,
        "- **Cameras**: K = {} sources registered through the management API, streaming on. Each pushes one \
         {}-byte MPEG-TS segment every {:.1} s the way `ffmpeg -f hls -method PUT` does: a chunked \
         `PUT /v1/ingest/<source>/index<n>.ts`, then, without waiting for its reply (ffmpeg does not), a chunked \
         `PUT .../index.m3u8` listing the newest {}; \
         the cameras' segment boundaries are spread evenly over one segment duration. The segment is real \
         (1280x720 test pattern, libx264 2 Mbit/s CBR, made once by ffmpeg); fleet ingest = {:.1} MB/s.",
        a.sources,
        r.segment_bytes,
        a.segment_duration,
        a.list_size,
        a.sources as f64 * r.segment_bytes as f64 / a.segment_duration / 1e6
    );
    let _ = writeln!(
        out,
        "- **Live players**: P = {} concurrent players on the control node's VOD API; each round picks a random \
         source, GETs its live playlist, then the newest segment it lists. Phase *live*: one round per {} ms \
         per player (a real HLS player's pace). Phase *capacity*: rounds back to back (closed loop).",
        a.players, a.player_interval_ms
    );
    let _ = writeln!(
        out,
        "- **End-to-end delay**: for {} cameras, the time from the start of a segment's PUT to the edge until \
         the control node's live playlist first lists it, polled every {} ms (so up to {} ms late).",
        a.delay_sources.min(a.sources),
        a.delay_poll_ms,
        a.delay_poll_ms
    );
    let _ = writeln!(
        out,
        "- **Phases**: {} s warm-up (not reported: the edge learns every source from the control node), {} s \
         live, {} s capacity, then the replay scenario.",
        a.warmup_secs, a.duration_secs, a.saturation_secs
    );
    let _ = writeln!(
        out,
        "- **Memory**: `VmRSS` and `VmHWM` (peak RSS) from `/proc/<pid>/status`; CPU from `/proc/<pid>/stat` \
         (cores = CPU seconds / wall seconds)."
    );
    for note in &a.note {
        let _ = writeln!(out, "- {note}");
    }
}

/// Latency of each request of the live scenario, per phase.
fn live_latency(out: &mut String, r: &Results, phases: &[(usize, &PhaseStats)]) {
    let a = &r.args;
    let _ = writeln!(out, "\n## Live scenario: {} cameras, {} players\n", a.sources, a.players);
    let _ = writeln!(out, "### Latency (ms)\n");
    header(out, &["request", "phase", "count", "p50", "p95", "p99", "max"]);
    let kinds: [(&str, SummaryOf); 5] = [
        ("camera → edge: segment PUT", |s| s.segment_put.summary()),
        ("camera → edge: playlist PUT (edge ingests)", |s| s.playlist_put.summary()),
        ("**end-to-end delay** (segment PUT → listed by control)", |s| s.end_to_end.summary()),
        ("player → control: live playlist GET", |s| s.player_playlist.summary()),
        ("player → control: live segment GET", |s| s.player_segment.summary()),
    ];
    for (label, get) in kinds {
        for &(i, stats) in phases {
            latency_row(out, &[label, r.extras[i].name], &get(stats));
        }
    }
    if r.never_listed > 0 {
        let _ = writeln!(
            out,
            "\n{} sampled segments were never listed in the control node's live playlist.",
            r.never_listed
        );
    } else {
        let _ = writeln!(out, "\nEvery sampled segment (older than 10 s at the end) appeared in the live playlist.");
    }
}

/// Requests and bytes per second, per phase.
fn throughput(out: &mut String, r: &Results, phases: &[(usize, &PhaseStats)]) {
    let a = &r.args;
    let _ = writeln!(out, "\n### Throughput\n");
    let mut cols = vec!["".to_owned()];
    cols.extend(phases.iter().map(|&(i, _)| r.extras[i].name.to_owned()));
    header(out, &cols);
    let per_sec = |v: f64, i: usize| v / r.extras[i].secs.max(1e-9);
    let lines: Vec<(&str, Cell)> = vec![
        ("seconds", Box::new(|i, _| format!("{:.0}", r.extras[i].secs))),
        (
            "players",
            Box::new(|i, _| {
                format!("{} ({})", r.extras[i].players, if r.extras[i].paced { "paced" } else { "back to back" })
            }),
        ),
        (
            "segments pushed by cameras /s (target)",
            Box::new(|i, s| {
                format!(
                    "{:.1} ({:.1})",
                    per_sec(s.segments_pushed.load(Relaxed) as f64, i),
                    a.sources as f64 / a.segment_duration
                )
            }),
        ),
        (
            "segments ingested by the edge /s",
            Box::new(|i, s| format!("{:.1}", per_sec(s.segments_ingested.load(Relaxed) as f64, i))),
        ),
        ("segments forwarded to control /s", Box::new(|i, _| format!("{:.1}", per_sec(r.extras[i].forwarded, i)))),
        (
            "segments not forwarded (edge, by reason)",
            Box::new(|i, _| {
                let n = &r.extras[i].not_forwarded;
                if n.is_empty() {
                    "0".into()
                } else {
                    n.iter().map(|(k, v)| format!("{v:.0} `{k}`")).collect::<Vec<_>>().join(", ")
                }
            }),
        ),
        ("camera ticks over half a segment late", Box::new(|_, s| s.late_ticks.load(Relaxed).to_string())),
        ("player requests /s", Box::new(|i, s| format!("{:.0}", per_sec(s.player_requests.load(Relaxed) as f64, i)))),
        (
            "player MB/s served",
            Box::new(|i, s| format!("{:.1}", per_sec(s.player_bytes.load(Relaxed) as f64, i) / 1e6)),
        ),
        ("failed requests", Box::new(|_, s| s.errors.total().to_string())),
        (
            "memcached GETs /s",
            Box::new(|i, _| {
                let (b, a) = &r.extras[i].memcached;
                memcached::delta(b, a, "cmd_get").map_or("–".into(), |d| format!("{:.0}", per_sec(d as f64, i)))
            }),
        ),
        (
            "memcached MB/s sent to clients",
            Box::new(|i, _| {
                let (b, a) = &r.extras[i].memcached;
                memcached::delta(b, a, "bytes_written")
                    .map_or("–".into(), |d| format!("{:.1}", per_sec(d as f64, i) / 1e6))
            }),
        ),
        (
            "memcached evictions",
            Box::new(|i, _| {
                let (b, a) = &r.extras[i].memcached;
                memcached::delta(b, a, "evictions").map_or("–".into(), |d| d.to_string())
            }),
        ),
    ];
    for (label, f) in &lines {
        let mut cells = vec![(*label).to_owned()];
        cells.extend(phases.iter().map(|&(i, s)| f(i, s)));
        row(out, &cells);
    }
}

/// Non-2xx replies seen by clients and counted by the servers.
fn errors(out: &mut String, r: &Results) {
    let _ = writeln!(out, "\n### Errors by request and status\n");
    let mut any = false;
    for (i, stats) in r.phases.stats.iter().enumerate() {
        for ((what, how), count) in stats.errors.snapshot() {
            if !any {
                header(out, &["phase", "request", "failure", "count"]);
                any = true;
            }
            row(out, &[r.extras[i].name.to_owned(), what, how, count.to_string()]);
        }
    }
    if !any {
        let _ = writeln!(out, "None.");
    }
    if !r.server_non_2xx.is_empty() {
        let _ = writeln!(out, "\nNon-2xx answers counted by the servers themselves (`/metrics`, whole run):\n");
        header(out, &["server", "labels", "count"]);
        for (who, labels, count) in &r.server_non_2xx {
            row(out, &[who.clone(), format!("`{labels}`"), format!("{count:.0}")]);
        }
    }
}

/// Memory and CPU of the processes under test.
fn resources(out: &mut String, r: &Results, phases: &[(usize, &PhaseStats)]) {
    let m = &r.machine;
    if !r.procs.is_empty() {
        let _ = writeln!(out, "\n### Memory\n");
        let mut cols = vec!["process".to_owned(), "RSS after setup (MiB)".to_owned()];
        for &(i, _) in phases {
            cols.push(format!("RSS end of {} (MiB)", r.extras[i].name));
        }
        cols.extend(["peak RSS, VmHWM (MiB)".to_owned(), "final RSS, after replay (MiB)".to_owned()]);
        header(out, &cols);
        for (p, proc_) in r.procs.iter().enumerate().filter(|(_, p)| p.memory) {
            let mut cells = vec![format!("{} (pid {})", proc_.name, proc_.pid)];
            cells.push(r.extras.first().map_or("–".into(), |e| mib(e.procs[p].0.rss_kib)));
            for &(i, _) in phases {
                cells.push(mib(r.extras[i].procs[p].1.rss_kib));
            }
            cells.push(mib(r.final_procs[p].hwm_kib));
            cells.push(mib(r.final_procs[p].rss_kib));
            row(out, &cells);
        }
        let _ = writeln!(out, "\nRSS over time (MiB, every 10 s; the final row is after the replay scenario):\n");
        let mut cols = vec!["t (s)".to_owned(), "phase".to_owned()];
        cols.extend(r.procs.iter().filter(|p| p.memory).map(|p| p.name.clone()));
        header(out, &cols);
        let last = r.timeline.len().saturating_sub(1);
        for (k, (t, phase, rss)) in r.timeline.iter().enumerate() {
            if k % 10 != 0 && k != last {
                continue;
            }
            let name = r.extras.get(*phase).map_or("replay", |e| e.name);
            let mut cells = vec![format!("{t:.0}"), name.to_owned()];
            cells.extend(rss.iter().map(|&kib| mib(kib)));
            row(out, &cells);
        }
    }

    if !r.procs.is_empty() {
        let _ = writeln!(out, "\n### CPU (cores busy: CPU seconds / wall seconds)\n");
        let mut cols = vec!["process".to_owned()];
        cols.extend(phases.iter().map(|&(i, _)| r.extras[i].name.to_owned()));
        header(out, &cols);
        for (p, proc_) in r.procs.iter().enumerate() {
            let what = if proc_.tree { " and its children" } else { "" };
            let mut cells = vec![format!("{} (pid {}{what})", proc_.name, proc_.pid)];
            for &(i, _) in phases {
                let (before, after) = r.extras[i].procs[p];
                cells.push(format!("{:.2}", (after.cpu_secs - before.cpu_secs) / r.extras[i].secs.max(1e-9)));
            }
            row(out, &cells);
        }
        let mut cells = vec![format!("whole machine, every tenant ({} cores)", m.nproc)];
        for &(i, _) in phases {
            cells.push(format!("{:.2}", machine_busy(&r.extras[i]) * m.nproc as f64));
        }
        row(out, &cells);
        for &(i, _) in phases {
            let busy = machine_busy(&r.extras[i]);
            if busy >= 0.9 {
                let _ = writeln!(
                    out,
                    "\nThe machine's CPU was saturated during the *{}* phase ({:.0}% busy): its numbers are a limit of \
                     this machine, shared by the load generator, the backing services{}, not of LiveMix alone.",
                    r.extras[i].name,
                    busy * 100.0,
                    if m.load_avg.split_whitespace().next().and_then(|l| l.parse::<f64>().ok()).unwrap_or(0.0)
                        > m.nproc as f64
                    {
                        " and other work already running when the bench started"
                    } else {
                        ""
                    }
                );
            }
        }
    }
}

/// The management API while the bench registered its sources.
fn management_latency(out: &mut String, r: &Results) {
    let _ = writeln!(out, "\n## Management API during setup (ms)\n");
    header(out, &["request", "count", "p50", "p95", "p99", "max"]);
    for (label, s) in [
        ("`POST /v1/source` (register)", &r.setup.register),
        ("`PUT /v1/source/{id}/streaming?new_state=true` (edge not yet known: deferred)", &r.setup.streaming),
    ] {
        latency_row(out, &[label], s);
    }
}

/// The replay scenario: one recording, many players.
fn replay(out: &mut String, r: &Results) {
    let a = &r.args;
    if let Some(replay) = &r.replay {
        let _ = writeln!(out, "\n## Replay scenario: a recording, {} concurrent players\n", a.replay_players);
        let what = if replay.recordings == 1 {
            "One camera was recorded".to_owned()
        } else {
            format!("{} cameras were recorded at once", replay.recordings)
        };
        let _ = writeln!(
            out,
            "{what} for {} s while all {} cameras kept streaming; the first recording (`{}`) has {} segments{}. \
             Then {} players at once each GET its VOD playlist and every segment in order, twice: first with \
             the recorded segments not yet in memcached (*cold*: read from S3, one read per segment however \
             many players ask), then again (*warm*).\n",
            a.record_secs,
            a.sources,
            replay.recording,
            replay.segments,
            if replay.recordings > 1 {
                format!(" ({} segments in all recordings)", replay.all_segments)
            } else {
                String::new()
            },
            a.replay_players,
        );
        header(out, &["recording", "count", "p50 (ms)", "p95 (ms)", "p99 (ms)", "max (ms)"]);
        for (label, s) in [
            ("`POST /v1/source/{id}/recording` (Pub/Sub round trip to the edge)", &replay.start_latency),
            ("`POST /v1/recording/{id}/stop` (Pub/Sub round trip to the edge)", &replay.stop_latency),
        ] {
            latency_row(out, &[label], s);
        }
        let _ = writeln!(
            out,
            "\nThe edge's upload queue (`livemix_edge_recording_pending`) peaked at {:.0} segments; the control node \
             listed every recorded segment {:.1} s after the stop (S3 upload + Pub/Sub report){}. Camera requests \
             failed meanwhile: {}.\n",
            replay.pending_max,
            replay.listed_after.as_secs_f64(),
            if replay.pending_left > 0.0 {
                format!(", but {:.0} segments were still queued when the bench stopped waiting", replay.pending_left)
            } else {
                String::new()
            },
            replay.camera_errors,
        );
        header(out, &["round", "request", "count", "p50 (ms)", "p95 (ms)", "p99 (ms)", "max (ms)"]);
        for round in &replay.rounds {
            let stats = &round.stats;
            for (label, s) in [
                ("playlist GET", stats.playlist.summary()),
                ("segment GET", stats.segment.summary()),
                ("whole recording, per player", stats.whole.summary()),
            ] {
                latency_row(out, &[round.name, label], &s);
            }
        }
        let _ = writeln!(out);
        header(
            out,
            &[
                "round",
                "wall (s)",
                "segments served",
                "MB/s served",
                "S3 reads (`livemix_control_object_store_reads_total`)",
                "S3 reads without any cache",
                "memcached GETs",
                "memcached MB sent / MB served to players",
                "failed requests",
            ],
        );
        for round in &replay.rounds {
            let (stats, secs) = (&round.stats, round.wall.as_secs_f64());
            let served = stats.bytes.load(Relaxed) as f64;
            let (b, a_) = &round.memcached;
            row(
                out,
                &[
                    round.name.to_owned(),
                    format!("{secs:.2}"),
                    stats.segments.load(Relaxed).to_string(),
                    format!("{:.1}", served / secs.max(1e-9) / 1e6),
                    format!("{:.0}", round.store_reads),
                    (a.replay_players * replay.segments).to_string(),
                    memcached::delta(b, a_, "cmd_get").map_or("–".into(), |d| d.to_string()),
                    memcached::delta(b, a_, "bytes_written").map_or("–".into(), |d| {
                        format!("{:.1} / {:.1} (x{:.1})", d as f64 / 1e6, served / 1e6, d as f64 / served.max(1.0))
                    }),
                    stats.errors.total().to_string(),
                ],
            );
        }
        let errors: Vec<_> = replay
            .rounds
            .iter()
            .flat_map(|round| round.stats.errors.snapshot().into_iter().map(move |e| (round.name, e)))
            .collect();
        if !errors.is_empty() {
            let _ = writeln!(out);
            header(out, &["round", "request", "failure", "count"]);
            for (round, ((what, how), count)) in errors {
                row(out, &[round.to_owned(), what, how, count.to_string()]);
            }
        }
    }
}

/// How long the control node's RSS must stay flat at the end of the live phase (issue 12: the last 5 minutes of a
/// 10-minute run); a shorter live phase uses its second half.
const FLAT_WINDOW_SECS: f64 = 300.0;
/// The edge may use this much on top of its cache budget.
const EDGE_OVERHEAD_MIB: f64 = 64.0;
/// Ingest-to-listed p99 target, ms.
const DELAY_P99_TARGET_MS: f64 = 250.0;

/// The serving targets this run can judge, each with its figure and whether it is met. A report line, not an
/// assertion: the numbers depend on the machine and its load.
fn targets(out: &mut String, r: &Results, phases: &[(usize, &PhaseStats)]) {
    let _ = writeln!(out, "\n## Targets\n");
    header(out, &["target", "figure", "met"]);
    let verdict = |ok: bool| if ok { "yes" } else { "**no**" }.to_owned();
    for &(i, stats) in phases {
        let delay = stats.end_to_end.summary();
        if delay.count > 0 {
            row(
                out,
                &[
                    format!("ingest-to-listed p99 < {DELAY_P99_TARGET_MS:.0} ms ({})", r.extras[i].name),
                    format!("{} ms over {} segments", ms(delay.p99), delay.count),
                    verdict(delay.p99 < DELAY_P99_TARGET_MS),
                ],
            );
        }
    }
    let memory: Vec<&Proc> = r.procs.iter().filter(|p| p.memory).collect();
    let column = |name: &str| memory.iter().position(|p| p.name == name);
    let live = r.extras.iter().position(|e| e.name == "live");
    if let (Some(col), Some(live)) = (column("livemix-control"), live) {
        let in_live: Vec<(f64, u64)> =
            r.timeline.iter().filter(|(_, phase, _)| *phase == live).map(|(t, _, rss)| (*t, rss[col])).collect();
        if let (Some(first), Some(last)) = (in_live.first(), in_live.last()) {
            let window = FLAT_WINDOW_SECS.min((last.0 - first.0) / 2.0);
            let tail: Vec<u64> = in_live.iter().filter(|(t, _)| *t >= last.0 - window).map(|(_, k)| *k).collect();
            let (lo, hi) = (tail.iter().copied().min().unwrap_or(0), tail.iter().copied().max().unwrap_or(0));
            let spread = (hi - lo) as f64 / lo.max(1) as f64;
            row(
                out,
                &[
                    format!("control RSS flat within 10% over the last {window:.0} s of the live phase"),
                    format!("{} to {} MiB ({:.1}%, {} samples)", mib(lo), mib(hi), spread * 100.0, tail.len()),
                    verdict(spread <= 0.10),
                ],
            );
        }
    }
    if let Some(col) = column("livemix-edge") {
        let hwm = r.procs.iter().position(|p| p.name == "livemix-edge").map_or(0, |p| r.final_procs[p].hwm_kib);
        let peak = hwm.max(r.timeline.iter().map(|(_, _, rss)| rss[col]).max().unwrap_or(0));
        let budget = r.args.edge_cache_bytes as f64 / (1024.0 * 1024.0) + EDGE_OVERHEAD_MIB;
        row(
            out,
            &[
                format!("edge peak RSS within its cache budget + {EDGE_OVERHEAD_MIB:.0} MiB"),
                format!("{} MiB of {budget:.0} MiB", mib(peak)),
                verdict(peak as f64 / 1024.0 <= budget),
            ],
        );
    }
}
