//! Simulated viewers: live players on the control node's VOD API, the end-to-end delay probe, and replay
//! players downloading a whole recording.

use std::{
    sync::{Arc, atomic::Ordering::Relaxed},
    time::Duration,
};

use tokio::time::Instant;

use crate::{
    camera::{SentTimes, segment_number},
    http::{fetch_ok, newest_segment, segment_uris},
    stats::{Errors, Latencies, Phases},
};

/// A xorshift generator: enough to spread players over sources without another dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // splitmix64 of the seed, never 0.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Self((z ^ (z >> 31)) | 1)
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

pub struct Audience {
    pub client: reqwest::Client,
    pub vod: String,
    /// Source ids.
    pub sources: Vec<String>,
}

impl Audience {
    fn live_url(&self, source: &str, file: &str) -> String {
        format!("{}/v1/vod/live/{source}/{file}", self.vod)
    }
}

/// A live player: playlist of a random source, then its newest segment; every `interval` (a real player's
/// pace: one playlist refresh and one segment per segment duration), or back to back when `None`.
pub async fn live_player(
    audience: Arc<Audience>,
    phases: Arc<Phases>,
    seed: u64,
    until: Instant,
    interval: Option<Duration>,
) {
    let mut rng = Rng::new(seed);
    let mut due = Instant::now();
    if let Some(interval) = interval {
        // Players do not start in step.
        due += interval.mul_f64(rng.below(1000) as f64 / 1000.0);
    }
    loop {
        if let Some(interval) = interval {
            tokio::time::sleep_until(due.min(until)).await;
            due = (due + interval).max(Instant::now());
        }
        if Instant::now() >= until {
            return;
        }
        let stats = phases.now();
        let source = &audience.sources[rng.below(audience.sources.len())];
        let newest = match fetch_ok(audience.client.get(audience.live_url(source, "vid.m3u8"))).await {
            Ok((body, elapsed)) => {
                stats.player_playlist.record(elapsed);
                stats.count_served(&body);
                newest_segment(&String::from_utf8_lossy(&body)).map(str::to_owned)
            }
            Err(how) => {
                stats.errors.add("player: live playlist GET", how);
                None
            }
        };
        let Some(segment) = newest else {
            // Do not spin on a failing server in back-to-back mode.
            if interval.is_none() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            continue;
        };
        match fetch_ok(audience.client.get(audience.live_url(source, &segment))).await {
            Ok((body, elapsed)) => {
                stats.player_segment.record(elapsed);
                stats.count_served(&body);
            }
            Err(how) => stats.errors.add("player: live segment GET", how),
        }
    }
}

/// Polls the live playlists of the sampled cameras and records, for each segment the first time it is listed,
/// how long ago its upload to the edge started.
pub async fn delay_probe(
    audience: Arc<Audience>,
    cameras: Vec<(usize, String)>,
    sent: Arc<SentTimes>,
    phases: Arc<Phases>,
    poll: Duration,
    until: Instant,
) {
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < until {
        tick.tick().await;
        let polls = cameras.iter().map(|(index, id)| {
            let audience = Arc::clone(&audience);
            async move {
                let result = fetch_ok(audience.client.get(audience.live_url(id, "vid.m3u8"))).await;
                (*index, result)
            }
        });
        for (index, result) in futures::future::join_all(polls).await {
            let seen = Instant::now();
            let stats = phases.now();
            match result {
                Ok((body, _)) => {
                    let text = String::from_utf8_lossy(&body);
                    let mut sent = sent.lock();
                    for n in segment_uris(&text).filter_map(segment_number) {
                        if let Some(started) = sent.remove(&(index, n)) {
                            stats.end_to_end.record(seen - started);
                        }
                    }
                }
                // Before the first segment arrives the playlist is a 404: expected during warm-up.
                Err(how) => stats.errors.add("delay probe: live playlist GET", how),
            }
        }
    }
}

/// Samples of one replay round.
#[derive(Default)]
pub struct ReplayStats {
    pub playlist: Latencies,
    pub segment: Latencies,
    /// Playlist plus every segment, per player.
    pub whole: Latencies,
    pub bytes: std::sync::atomic::AtomicU64,
    pub segments: std::sync::atomic::AtomicU64,
    pub errors: Errors,
}

/// A player downloading a recording: its playlist, then every segment in order (as a player buffering ahead,
/// or seeking through it, does).
pub async fn replay_player(client: reqwest::Client, vod: String, recording: String, stats: Arc<ReplayStats>) {
    let started = Instant::now();
    let base = format!("{vod}/v1/vod/recording/{recording}");
    let names: Vec<String> = match fetch_ok(client.get(format!("{base}/vid.m3u8"))).await {
        Ok((body, elapsed)) => {
            stats.playlist.record(elapsed);
            segment_uris(&String::from_utf8_lossy(&body)).map(str::to_owned).collect()
        }
        Err(how) => return stats.errors.add("replay: playlist GET", how),
    };
    let mut complete = true;
    for name in names {
        match fetch_ok(client.get(format!("{base}/{name}"))).await {
            Ok((body, elapsed)) => {
                stats.segment.record(elapsed);
                stats.bytes.fetch_add(body.len() as u64, Relaxed);
                stats.segments.fetch_add(1, Relaxed);
            }
            Err(how) => {
                complete = false;
                stats.errors.add("replay: segment GET", how);
            }
        }
    }
    if complete {
        stats.whole.record(started.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_spreads_over_the_range() {
        let mut rng = Rng::new(7);
        let mut hits = [0u32; 10];
        for _ in 0..10_000 {
            hits[rng.below(10)] += 1;
        }
        assert!(hits.iter().all(|&h| (800..1200).contains(&h)), "{hits:?}");
    }
}
