//! Nothing lost (issue 10), proven by counting: with ffmpeg streaming and a recording active, each part of LiveMix
//! fails and comes back while the recording continues; then every segment the edge accepted during the recording
//! must be in it, once, in order, with the bytes ffmpeg wrote.
//!
//! Faults are real: the control node, the edge, memcached and PostgreSQL get SIGKILL and are restarted (the control
//! node with the same topics and subscriptions, as a restarted pod would); the Pub/Sub emulator and the S3 server
//! (in-memory emulators that would lose their state if killed) are frozen with SIGSTOP, then resumed. The scenarios
//! disturb the shared backing services, so they run one at a time, and this suite runs as its own test binary.

mod relay;
// Shared with the e2e suite, which uses other parts of it.
#[allow(dead_code, unused_imports)]
#[path = "../e2e/support.rs"]
mod support;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use livemix_common::hls::parse_media_playlist;
use serde_json::Value;
use tokio::sync::Mutex;

use relay::{Accepted, Relay};
use support::{Deployment, eventually_within, http, unique};

/// The scenarios stop shared services: one at a time.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// How long frozen emulators stay frozen: longer than the edge's upload and publish timeouts.
const FREEZE: Duration = Duration::from_secs(30);
/// How long a healed system may take to record again (the Pub/Sub emulator redelivers slowly to restarted
/// subscribers).
const HEAL_WITHIN: Duration = Duration::from_secs(240);

fn services(args: &[&str]) -> bool {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/services.sh");
    Command::new("bash").arg(script).args(args).status().is_ok_and(|s| s.success())
}

/// Restarts killed services; PostgreSQL may refuse for a moment while its orphaned backends exit.
async fn services_up() {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !services(&["up"]) {
        assert!(Instant::now() < deadline, "scripts/services.sh up kept failing after the fault");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Resumes a frozen service even when the test fails while it is frozen.
struct Frozen(&'static str);

impl Frozen {
    fn new(service: &'static str) -> Self {
        assert!(services(&["signal", service, "STOP"]), "freezing {service}");
        Self(service)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        services(&["signal", self.0, "CONT"]);
    }
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Control,
    Edge,
    Memcached,
    Postgres,
    PubSub,
    S3,
}

impl Fault {
    async fn inject(self, d: &mut Deployment) {
        match self {
            Fault::Control => {
                d.kill_control().await;
                d.start_control().await;
            }
            Fault::Edge => {
                d.kill_edge().await;
                d.start_edge().await;
            }
            Fault::Memcached => {
                assert!(services(&["signal", "memcached", "KILL"]));
                services_up().await;
            }
            Fault::Postgres => {
                assert!(services(&["signal", "postgres", "KILL"]));
                // Down for a while, as a failover would be: the inbox and the handlers see it gone.
                tokio::time::sleep(Duration::from_secs(5)).await;
                services_up().await;
            }
            Fault::PubSub => {
                let _frozen = Frozen::new("pubsub");
                tokio::time::sleep(FREEZE).await;
            }
            Fault::S3 => {
                let _frozen = Frozen::new("s3");
                tokio::time::sleep(FREEZE).await;
            }
        }
    }
}

async fn json(resp: reqwest::Response) -> Value {
    let status = resp.status();
    let body = resp.text().await.unwrap();
    assert!(status.is_success(), "HTTP {status}: {body}");
    serde_json::from_str(&body).unwrap()
}

async fn start_recording(d: &Deployment, source: &str) -> String {
    let body = json(
        http()
            .post(d.mgmt(&format!("/v1/source/{source}/recording")))
            .json(&serde_json::json!({"alias": unique("evidence")}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    body["recording"]["id"].as_str().unwrap().to_owned()
}

/// Stops the recording; returns its start and end.
async fn stop_recording(d: &Deployment, id: &str) -> (DateTime<Utc>, DateTime<Utc>) {
    let body = json(http().post(d.mgmt(&format!("/v1/recording/{id}/stop"))).send().await.unwrap()).await;
    let ts = |field: &str| body["recording"][field].as_str().unwrap().parse().unwrap();
    (ts("start_ts"), ts("end_ts"))
}

/// The names of the recording's segments as the control node lists them (None while it cannot answer).
async fn listed(d: &Deployment, recording: &str) -> Option<Vec<String>> {
    let resp = http().get(d.mgmt(&format!("/v1/recording/{recording}/segment"))).send().await.ok()?;
    let body: Value = resp.error_for_status().ok()?.json().await.ok()?;
    Some(body["segments"].as_array()?.iter().filter_map(|s| s["name"].as_str().map(str::to_owned)).collect())
}

/// What a player gets: the recording's VOD playlist and every segment's bytes, with the discontinuity flags.
async fn played(d: &Deployment, recording: &str) -> Vec<(bool, Bytes)> {
    let base = d.vod(&format!("/v1/vod/recording/{recording}/"));
    let playlist = http().get(format!("{base}vid.m3u8")).send().await.unwrap();
    let playlist = parse_media_playlist(&playlist.bytes().await.unwrap()).unwrap();
    let mut out = Vec::new();
    for segment in playlist.segments {
        let resp = http().get(format!("{base}{}", segment.uri)).send().await.unwrap();
        assert!(resp.status().is_success(), "{} of recording {recording}: HTTP {}", segment.uri, resp.status());
        out.push((segment.discontinuity, resp.bytes().await.unwrap()));
    }
    out
}

/// Accepted segments certainly inside [start, end]: those received more than two segment lengths inside it (a
/// segment at the very edge may fall either way).
fn surely_inside(accepted: &[Accepted], start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<Accepted> {
    let margin = chrono::TimeDelta::seconds(3);
    accepted.iter().filter(|a| a.at > start + margin && a.at < end - margin).cloned().collect()
}

/// The recording as played holds every segment of `expected`, each once, in acceptance order, with its bytes, and
/// nothing the edge did not accept. Returns the index into `accepted` of each played segment.
fn check_complete(played: &[(bool, Bytes)], accepted: &[Accepted], expected: &[Accepted]) -> Vec<usize> {
    let twice: Vec<_> = accepted
        .iter()
        .enumerate()
        .filter(|(i, a)| accepted[..*i].iter().any(|b| b.bytes == a.bytes))
        .map(|(_, a)| (a.run, &a.name))
        .collect();
    assert!(twice.is_empty(), "the edge accepted these segments a second time: {twice:?}");
    let mut positions = Vec::new();
    for (n, (_, bytes)) in played.iter().enumerate() {
        let at = accepted.iter().position(|a| a.bytes == *bytes);
        let at =
            at.unwrap_or_else(|| panic!("played segment #{n} ({} bytes) is no segment the edge accepted", bytes.len()));
        positions.push(at);
    }
    for pair in positions.windows(2) {
        assert!(pair[0] < pair[1], "segments out of order or repeated: accepted #{} then #{}", pair[0], pair[1]);
    }
    let missing: Vec<_> =
        expected.iter().filter(|e| !played.iter().any(|(_, b)| *b == e.bytes)).map(|e| (e.run, &e.name)).collect();
    assert!(missing.is_empty(), "{} accepted segments missing from the recording: {missing:?}", missing.len());
    positions
}

#[tokio::test(flavor = "multi_thread")]
async fn every_recorded_segment_survives_crashes_and_outages() {
    let _serial = SERIAL.lock().await;
    let mut d = Deployment::start().await;
    let name = unique("cam");
    let id = d.register(&name).await;
    let relay = Relay::start(&d.edge, &name, &d.file_root.join(&name), &d.dir);
    d.set_streaming(&id, true).await;
    relay.next_accepted(2, Duration::from_secs(60)).await;
    let recording = start_recording(&d, &id).await;

    let mut recovery = Vec::new();
    for fault in [Fault::Control, Fault::Edge, Fault::Memcached, Fault::Postgres, Fault::PubSub, Fault::S3] {
        let started = Instant::now();
        fault.inject(&mut d).await;
        let healed = Instant::now();
        // Healed: a segment the edge accepts from now on reaches the recording by itself.
        let next = relay.next_accepted(1, HEAL_WITHIN).await;
        eventually_within(&format!("a new segment in the recording after {fault:?}"), HEAL_WITHIN, || async {
            listed(&d, &recording).await.filter(|names| names.contains(&next.name)).map(|_| ())
        })
        .await;
        recovery.push((fault, healed - started, healed.elapsed()));
    }

    let (start, end) = stop_recording(&d, &recording).await;
    let accepted = relay.accepted();
    let expected = surely_inside(&accepted, start, end);
    eventually_within("every accepted segment in the recording", HEAL_WITHIN, || async {
        let names = listed(&d, &recording).await?;
        expected.iter().all(|e| names.contains(&e.name)).then_some(())
    })
    .await;
    let played = played(&d, &recording).await;
    check_complete(&played, &accepted, &expected);
    eprintln!("recording {recording}: {} segments played, {} expected", played.len(), expected.len());
    eprintln!("{:<10} {:>10} {:>14}", "fault", "outage", "recorded again");
    for (fault, outage, recovered) in recovery {
        eprintln!("{:<10} {:>9.1}s {:>13.1}s", format!("{fault:?}"), outage.as_secs_f64(), recovered.as_secs_f64());
    }
}

/// ffmpeg restarted three times during one recording, counting from `index0.ts` each time: the recording holds all
/// segments of all four runs with a discontinuity where each new run starts, and a recording made during the first
/// run keeps its own bytes.
#[tokio::test(flavor = "multi_thread")]
async fn encoder_restarts_keep_every_run_and_older_recordings_intact() {
    let _serial = SERIAL.lock().await;
    let d = Deployment::start().await;
    let name = unique("cam");
    let id = d.register(&name).await;
    let mut relay = Relay::start(&d.edge, &name, &d.file_root.join(&name), &d.dir);
    d.set_streaming(&id, true).await;
    relay.next_accepted(1, Duration::from_secs(60)).await;

    // An older recording, during the first run only.
    let older = start_recording(&d, &id).await;
    relay.next_accepted(5, Duration::from_secs(60)).await;
    let (older_start, older_end) = stop_recording(&d, &older).await;

    let recording = start_recording(&d, &id).await;
    relay.next_accepted(3, Duration::from_secs(60)).await;
    for _ in 0..3 {
        relay.restart_ffmpeg(&d.dir).await;
        relay.next_accepted(4, Duration::from_secs(60)).await;
    }
    let (start, end) = stop_recording(&d, &recording).await;

    let accepted = relay.accepted();
    let runs: std::collections::BTreeSet<_> = accepted.iter().map(|a| a.run).collect();
    assert_eq!(runs.len(), 4, "four ffmpeg runs pushed");
    let expected = surely_inside(&accepted, start, end);
    eventually_within("every run's segments in the recording", HEAL_WITHIN, || async {
        let n = listed(&d, &recording).await?.len();
        (n >= expected.len()).then_some(())
    })
    .await;
    let played_now = played(&d, &recording).await;
    let positions = check_complete(&played_now, &accepted, &expected);
    for (n, pair) in positions.windows(2).enumerate() {
        let (before, after) = (&accepted[pair[0]], &accepted[pair[1]]);
        if after.run != before.run {
            assert!(played_now[n + 1].0, "no discontinuity where run {} starts ({})", after.run, after.name);
        }
    }
    let covered: std::collections::BTreeSet<_> = positions.iter().map(|&p| accepted[p].run).collect();
    assert!(covered.len() >= 4, "the recording holds segments of every run: {covered:?}");

    // The later runs wrote index0.ts... again: the older recording still plays the first run's bytes.
    let older_expected = surely_inside(&accepted, older_start, older_end);
    assert!(older_expected.iter().all(|a| a.run == 0));
    let older_played = played(&d, &older).await;
    check_complete(&older_played, &accepted, &older_expected);
    assert!(older_played.iter().all(|(_, b)| accepted.iter().any(|a| a.run == 0 && a.bytes == *b)));
}

/// The edge's resident memory, from `/proc`.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next());
    kib.and_then(|k| k.parse::<u64>().ok()).expect("VmRSS in /proc/<pid>/status") * 1024
}

/// An S3 outage longer than the spool's byte budget: the spool keeps the oldest segments and refuses the newest,
/// counted in `recording_dropped_total{reason="spool_full"}`; the edge's memory stays flat while it refuses; once
/// S3 is back the spooled segments reach the recording.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_spool_refuses_the_newest_and_memory_stays_flat() {
    let _serial = SERIAL.lock().await;
    const SPOOL: u64 = 1_500_000;
    let spool = format!("--spool-bytes={SPOOL}");
    let d = Deployment::start_with(&[], &[&spool, "--cache-bytes=4000000"]).await;
    let name = unique("cam");
    let id = d.register(&name).await;
    let relay = Relay::start(&d.edge, &name, &d.file_root.join(&name), &d.dir);
    d.set_streaming(&id, true).await;
    relay.next_accepted(1, Duration::from_secs(60)).await;
    let recording = start_recording(&d, &id).await;
    relay.next_accepted(2, Duration::from_secs(60)).await;
    let pid = d.edge_proc.as_ref().and_then(|p| p.child.id()).expect("edge pid");
    let dropped = "livemix_edge_recording_dropped_total{reason=\"spool_full\"}";

    let frozen = Frozen::new("s3");
    let outage_began = relay.accepted().len();
    eventually_within("the spool to fill and refuse a segment", Duration::from_secs(180), || async {
        (d.edge_metric(dropped).await > 0).then_some(())
    })
    .await;
    // Refusing: sample the edge's memory while segments keep coming and being refused.
    let mut samples = Vec::new();
    for _ in 0..20 {
        samples.push(rss_bytes(pid));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let refused = d.edge_metric(dropped).await;
    let spooled = d.edge_metric("livemix_edge_recording_spool_bytes").await;
    drop(frozen);

    let (first, peak) = (samples[0], samples.iter().copied().max().unwrap_or(0));
    eprintln!(
        "spool full: {refused} segments refused, {spooled} bytes spooled (budget {SPOOL}); edge RSS {:.1} MiB -> peak \
         {:.1} MiB over 20 s",
        first as f64 / 1048576.0,
        peak as f64 / 1048576.0
    );
    assert!(refused >= 10, "segments kept arriving and were refused while full: {refused}");
    assert!(spooled <= SPOOL, "the spool stays within its budget: {spooled}");
    assert!(peak < first + 16 * 1024 * 1024, "memory flat while refusing: {samples:?}");

    // S3 back: what was spooled (the oldest of the outage) is recorded; the refused are not.
    let oldest_of_outage = relay.accepted()[outage_began].name.clone();
    eventually_within("the spooled segments to reach the recording", HEAL_WITHIN, || async {
        listed(&d, &recording).await.filter(|names| names.contains(&oldest_of_outage)).map(|_| ())
    })
    .await;
    stop_recording(&d, &recording).await;
}
