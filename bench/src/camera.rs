//! A simulated camera: what `ffmpeg -f hls -method PUT http://edge/v1/ingest/<source>/index.m3u8` sends, once per
//! segment duration: the new segment, then the playlist listing the newest few.

use std::{
    collections::{HashMap, VecDeque},
    fmt::Write as _,
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::{
    task::{JoinError, JoinHandle},
    time::Instant,
};

use crate::{
    http::{chunked, chunked_signalled, fetch_ok},
    stats::{PhaseStats, Phases},
};

/// ffmpeg's AVIO buffer writes bodies in pieces of this size.
const CHUNK: usize = 32 * 1024;

/// What every camera shares.
pub struct Feed {
    pub client: reqwest::Client,
    pub edge: String,
    /// One real MPEG-TS segment, sent by every camera for every segment.
    pub segment: Bytes,
    pub duration_secs: f64,
    pub list_size: usize,
    /// When a sampled camera started uploading each segment: (camera, segment number) -> instant.
    pub sent: Arc<SentTimes>,
    /// Cameras with an index below this are sampled for end-to-end delay.
    pub sampled: usize,
}

pub type SentTimes = Mutex<HashMap<(usize, u64), Instant>>;

pub struct Camera {
    pub index: usize,
    pub name: String,
    pub id: String,
    next: u64,
    listed: VecDeque<u64>,
}

/// The segment number in a name this bench gave (`index<n>.ts`, as ffmpeg names them).
pub fn segment_number(name: &str) -> Option<u64> {
    name.strip_prefix("index")?.strip_suffix(".ts")?.parse().ok()
}

impl Camera {
    pub fn new(index: usize, name: String, id: String) -> Self {
        Self { index, name, id, next: 0, listed: VecDeque::new() }
    }

    /// Pushes one segment per segment duration from `start` until `until`; returns itself to go on later.
    pub async fn run(mut self, feed: Arc<Feed>, phases: Arc<Phases>, start: Instant, until: Instant) -> Self {
        let period = Duration::from_secs_f64(feed.duration_secs);
        let mut due = start;
        while due < until {
            tokio::time::sleep_until(due).await;
            let stats = phases.now();
            if Instant::now() > due + period / 2 {
                stats.late_ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            self.push_one(&feed, stats).await;
            // Like ffmpeg reading `-re` input: segments are produced on schedule; a slow upload is caught up on.
            due += period;
        }
        self
    }

    pub async fn push_one(&mut self, feed: &Feed, stats: &PhaseStats) {
        use std::sync::atomic::Ordering::Relaxed;
        let n = self.next;
        self.next += 1;
        let started = Instant::now();
        if self.index < feed.sampled {
            feed.sent.lock().insert((self.index, n), started);
        }
        let url = format!("{}/v1/ingest/{}/index{n}.ts", feed.edge, self.name);
        // ffmpeg does not wait for the reply to a segment's PUT: once the body is written it closes the request and
        // sends the playlist, so the two requests race on the edge. Do the same.
        let (body, written) = chunked_signalled(&feed.segment, CHUNK);
        let upload = tokio::spawn(fetch_ok(feed.client.put(url).body(body)));
        let _ = written.await;
        // ffmpeg lists the segment whether or not its upload worked.
        self.listed.push_back(n);
        while self.listed.len() > feed.list_size {
            self.listed.pop_front();
        }
        let url = format!("{}/v1/ingest/{}/index.m3u8", feed.edge, self.name);
        let body = Bytes::from(self.playlist(feed.duration_secs));
        match fetch_ok(feed.client.put(url).body(chunked(&body, CHUNK))).await {
            Ok((reply, elapsed)) => {
                stats.playlist_put.record(elapsed);
                let new = serde_json::from_slice::<serde_json::Value>(&reply)
                    .ok()
                    .and_then(|v| v["new_segments"].as_array().map(Vec::len))
                    .unwrap_or(0);
                stats.segments_ingested.fetch_add(new as u64, Relaxed);
            }
            Err(how) => stats.errors.add("camera: playlist PUT", how),
        }
        match upload.await {
            Ok(Ok((_, elapsed))) => {
                stats.segment_put.record(elapsed);
                stats.segments_pushed.fetch_add(1, Relaxed);
            }
            Ok(Err(how)) => stats.errors.add("camera: segment PUT", how),
            Err(_) => stats.errors.add("camera: segment PUT", "task failed"),
        }
    }

    /// The playlist ffmpeg's HLS muxer writes (`-hls_list_size`, no `-hls_playlist_type`).
    fn playlist(&self, duration_secs: f64) -> String {
        let mut text = format!(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{}\n#EXT-X-MEDIA-SEQUENCE:{}\n",
            duration_secs.ceil() as u64,
            self.listed.front().copied().unwrap_or(0)
        );
        for n in &self.listed {
            let _ = write!(text, "#EXTINF:{duration_secs:.6},\nindex{n}.ts\n");
        }
        text
    }
}

/// The cameras while they push; each task hands its camera back when it stops, to go on later.
pub struct Fleet(Vec<JoinHandle<Camera>>);

impl Fleet {
    /// Starts every camera pushing from `start` until `until`. Cameras of a fleet are not in step: their segment
    /// boundaries are spread evenly over one segment duration.
    pub fn spawn(cameras: Vec<Camera>, feed: &Arc<Feed>, phases: &Arc<Phases>, start: Instant, until: Instant) -> Self {
        let period = Duration::from_secs_f64(feed.duration_secs);
        let count = cameras.len();
        Self(
            cameras
                .into_iter()
                .map(|cam| {
                    let at = start + period.mul_f64(cam.index as f64 / count as f64);
                    tokio::spawn(cam.run(Arc::clone(feed), Arc::clone(phases), at, until))
                })
                .collect(),
        )
    }

    /// Waits until every camera has stopped, and takes them back.
    pub async fn join(self) -> Result<Vec<Camera>, JoinError> {
        let mut cameras = Vec::with_capacity(self.0.len());
        for task in self.0 {
            cameras.push(task.await?);
        }
        Ok(cameras)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playlists_list_the_newest_segments_like_ffmpeg() {
        let mut cam = Camera::new(0, "cam".into(), "id".into());
        cam.listed.extend([3, 4, 5]);
        assert_eq!(
            cam.playlist(1.0),
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:3\n\
             #EXTINF:1.000000,\nindex3.ts\n#EXTINF:1.000000,\nindex4.ts\n#EXTINF:1.000000,\nindex5.ts\n"
        );
        assert_eq!(segment_number("index17.ts"), Some(17));
        assert_eq!(segment_number("seg17.ts"), None);
    }
}
