//! The replay scenario: a few seconds of one camera (or several) recorded while the whole fleet streams, then
//! many players download the recording twice: with a cold cache (segments come from the object store) and a
//! warm one.

use std::{
    sync::{Arc, atomic::Ordering::Relaxed},
    time::Duration,
};

use anyhow::{Context, ensure};
use serde_json::json;
use tokio::time::Instant;

use crate::{
    camera::{Camera, Feed, Fleet},
    cli::RunArgs,
    http::{client, json_ok, metric_sum, metrics_text},
    memcached,
    monitor::memcached_stats,
    player::{self, ReplayStats},
    stats::{Latencies, Phases, Summary},
};

/// The control node's reads from the object store.
const STORE_READS: &str = "livemix_control_object_store_reads_total";
/// How long the bench waits for the recorded segments to be listed after the stop.
const LISTING_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the edge's queue and the recordings' lists are polled.
const POLL: Duration = Duration::from_millis(250);
/// Polls in a row without change after which the lists are complete.
const STABLE_POLLS: usize = 4;

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

/// Records `--record-secs` of the first `--record-sources` cameras while all of them keep streaming, waits until
/// the control node lists every recorded segment, then replays the first recording with a cold and a warm cache.
pub async fn run(
    args: &RunArgs,
    admin: &reqwest::Client,
    feed: &Arc<Feed>,
    cameras: Vec<Camera>,
) -> anyhow::Result<Replay> {
    let n = args.record_sources.clamp(1, cameras.len());
    eprintln!("[bench] recording {} s of {n} camera(s) while all {} keep streaming", args.record_secs, cameras.len());
    let mut queue = UploadQueue { http: client(args.timeout()), edge: args.edge().to_owned(), max: 0.0 };
    let (recordings, start_latency) = start_recordings(args, admin, &cameras[..n]).await?;
    let camera_errors = stream_while_recording(args, feed, cameras, &mut queue).await?;
    let stop_latency = stop_recordings(args, admin, &recordings).await?;
    let listing = wait_until_listed(args, admin, &recordings, &mut queue).await?;
    let recording = recordings[0].clone();
    eprintln!(
        "[bench] {n} recording(s): {} segments in all, listed {:.1} s after the stop; {} replay players on {recording}",
        listing.counts.iter().sum::<usize>(),
        listing.listed_after.as_secs_f64(),
        args.replay_players
    );

    let http = client(args.timeout());
    let mut rounds = Vec::new();
    for round in ["cold cache", "warm cache"] {
        rounds.push(replay_round(args, &http, round, &recording).await?);
    }
    Ok(Replay {
        recording,
        recordings: n,
        segments: listing.counts[0],
        all_segments: listing.counts.iter().sum(),
        start_latency,
        stop_latency,
        listed_after: listing.listed_after,
        pending_max: queue.max,
        pending_left: listing.pending_left,
        camera_errors,
        rounds,
    })
}

/// The edge's queue of recorded segments to upload (`livemix_edge_recording_pending`), and the most it held.
struct UploadQueue {
    http: reqwest::Client,
    edge: String,
    max: f64,
}

impl UploadQueue {
    async fn poll(&mut self) -> f64 {
        let pending = metric_sum(&metrics_text(&self.http, &self.edge).await, "livemix_edge_recording_pending");
        self.max = self.max.max(pending);
        pending
    }
}

/// Starts a recording of every camera given at once, as an operator's "record them all" would: their ids and
/// how long the starts took.
async fn start_recordings(
    args: &RunArgs,
    admin: &reqwest::Client,
    cameras: &[Camera],
) -> anyhow::Result<(Vec<String>, Summary)> {
    let mgmt = args.management();
    let starts = cameras.iter().map(|cam| {
        json_ok(
            admin.post(format!("{mgmt}/v1/source/{}/recording", cam.id)).json(
                &json!({"alias": format!("{}-recording", cam.name), "description": "livemix-bench replay scenario"}),
            ),
            "starting a recording",
        )
    });
    let (latency, mut recordings) = (Latencies::default(), Vec::with_capacity(cameras.len()));
    for result in futures::future::join_all(starts).await {
        let (reply, elapsed) = result?;
        latency.record(elapsed);
        recordings.push(reply["recording"]["id"].as_str().context("recording id in reply")?.to_owned());
    }
    Ok((recordings, latency.summary()))
}

/// Streams every camera for `--record-secs`, watching the edge's upload queue meanwhile: the cameras' failed
/// requests.
async fn stream_while_recording(
    args: &RunArgs,
    feed: &Arc<Feed>,
    cameras: Vec<Camera>,
    queue: &mut UploadQueue,
) -> anyhow::Result<u64> {
    let scratch = Arc::new(Phases::new(1));
    let started = Instant::now();
    let until = started + Duration::from_secs(args.record_secs);
    let fleet = Fleet::spawn(cameras, feed, &scratch, started, until);
    while Instant::now() < until {
        tokio::time::sleep(POLL).await;
        queue.poll().await;
    }
    fleet.join().await?;
    Ok(scratch.now().errors.total())
}

/// Stops every recording at once: how long the stops took.
async fn stop_recordings(args: &RunArgs, admin: &reqwest::Client, recordings: &[String]) -> anyhow::Result<Summary> {
    let mgmt = args.management();
    let stops = recordings
        .iter()
        .map(|id| json_ok(admin.post(format!("{mgmt}/v1/recording/{id}/stop")), "stopping a recording"));
    let latency = Latencies::default();
    for result in futures::future::join_all(stops).await {
        latency.record(result?.1);
    }
    Ok(latency.summary())
}

/// The recordings' segment lists once complete.
struct Listing {
    /// Segments per recording.
    counts: Vec<usize>,
    /// From the stop until the lists stopped growing.
    listed_after: Duration,
    /// Segments still in the edge's upload queue at the last poll.
    pending_left: f64,
}

/// The edge uploads each segment to S3 and reports it over Pub/Sub: waits until its queue is empty and the control
/// node's lists stop growing (or [`LISTING_TIMEOUT`] passes). Fails when the first recording has no segment.
async fn wait_until_listed(
    args: &RunArgs,
    admin: &reqwest::Client,
    recordings: &[String],
    queue: &mut UploadQueue,
) -> anyhow::Result<Listing> {
    let stopped = Instant::now();
    let mgmt = args.management();
    let count = |id: String| async move {
        json_ok(admin.get(format!("{mgmt}/v1/recording/{id}/segment")), "listing recorded segments")
            .await
            .map(|(reply, _)| reply["segments"].as_array().map_or(0, Vec::len))
    };
    let mut listing = Listing { counts: vec![0; recordings.len()], listed_after: Duration::ZERO, pending_left: 0.0 };
    let mut stable = 0;
    while stopped.elapsed() < LISTING_TIMEOUT && stable < STABLE_POLLS {
        tokio::time::sleep(POLL).await;
        listing.pending_left = queue.poll().await;
        let now: Vec<usize> = futures::future::join_all(recordings.iter().cloned().map(count))
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?;
        if now != listing.counts || now.contains(&0) || listing.pending_left > 0.0 {
            if now != listing.counts {
                listing.listed_after = stopped.elapsed();
            }
            listing.counts = now;
            stable = 0;
        } else {
            stable += 1;
        }
    }
    ensure!(
        listing.counts[0] > 0,
        "recording {} has no segments {} s after it stopped",
        recordings[0],
        stopped.elapsed().as_secs()
    );
    Ok(listing)
}

/// `--replay-players` players at once each download the whole recording once.
async fn replay_round(
    args: &RunArgs,
    http: &reqwest::Client,
    name: &'static str,
    recording: &str,
) -> anyhow::Result<ReplayRound> {
    let store_reads = || async { metric_sum(&metrics_text(http, args.management()).await, STORE_READS) };
    let reads_before = store_reads().await;
    let mc_before = memcached_stats(args).await;
    let stats = Arc::new(ReplayStats::default());
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.replay_players)
        .map(|_| {
            tokio::spawn(player::replay_player(
                http.clone(),
                args.vod().to_owned(),
                recording.to_owned(),
                Arc::clone(&stats),
            ))
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    let wall = started.elapsed();
    // Prefetches run in the background: let them finish before reading the counter.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reads = store_reads().await - reads_before;
    let mc_after = memcached_stats(args).await;
    eprintln!(
        "[bench] replay ({name}): {} segments served in {:.2} s, {reads} object-store reads",
        stats.segments.load(Relaxed),
        wall.as_secs_f64()
    );
    Ok(ReplayRound { name, wall, stats, store_reads: reads, memcached: (mc_before, mc_after) })
}
