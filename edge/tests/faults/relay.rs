//! The test's own pusher: ffmpeg writes HLS to a directory under the edge's file root and the relay POSTs its
//! playlist to the edge, exactly as ffmpeg's `-method POST` would, but keeps what the edge answered. So the test
//! knows every segment the edge *accepted* (a 200 listing it in `new_segments`) and the bytes ffmpeg wrote for it.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde_json::Value;

use crate::support::{Proc, http, spawn};

/// A segment the edge accepted.
#[derive(Clone, Debug)]
pub struct Accepted {
    pub name: String,
    /// Which ffmpeg process wrote it (0, 1, ...): ffmpeg restarts count from `index0.ts` again.
    pub run: usize,
    pub at: DateTime<Utc>,
    pub bytes: Bytes,
}

pub struct Relay {
    pub dir: PathBuf,
    accepted: Arc<Mutex<Vec<Accepted>>>,
    run: Arc<Mutex<usize>>,
    ffmpeg: Option<Proc>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Starts ffmpeg (run 0) writing into `dir` and the relay pushing its playlist to `edge` as `source`.
    pub fn start(edge: &str, source: &str, dir: &Path, logs: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let run = Arc::new(Mutex::new(0));
        let task = tokio::spawn(push_loop(
            edge.to_owned(),
            source.to_owned(),
            dir.to_owned(),
            Arc::clone(&accepted),
            Arc::clone(&run),
        ));
        let mut relay = Self { dir: dir.to_owned(), accepted, run, ffmpeg: None, task };
        relay.ffmpeg = Some(relay.spawn_ffmpeg(logs));
        relay
    }

    fn spawn_ffmpeg(&self, logs: &Path) -> Proc {
        let run = *self.run.lock();
        let args: Vec<String> = "-nostdin -hide_banner -loglevel warning -re -f lavfi -i testsrc=size=320x180:rate=25 \
             -c:v libx264 -preset veryfast -tune zerolatency -g 25 -sc_threshold 0 -pix_fmt yuv420p -f hls \
             -hls_time 1 -hls_list_size 5"
            .split_whitespace()
            .map(str::to_owned)
            .chain([
                // ffmpeg's test pattern is the same every run: shift the timestamps so each run's bytes differ.
                "-output_ts_offset".into(),
                format!("{}", run * 10_000),
                "-hls_segment_filename".into(),
                self.dir.join("index%d.ts").display().to_string(),
                self.dir.join("index.m3u8").display().to_string(),
            ])
            .collect();
        spawn(Path::new("ffmpeg"), &args, &[], logs.join(format!("ffmpeg-run{run}.log")))
    }

    /// SIGKILLs ffmpeg and starts a new one, which counts from `index0.ts` again over the same files.
    pub async fn restart_ffmpeg(&mut self, logs: &Path) {
        if let Some(mut old) = self.ffmpeg.take() {
            old.child.start_kill().unwrap();
            old.child.wait().await.unwrap();
        }
        // Its playlist would list the old run's segments until the new ffmpeg rewrites it.
        let _ = std::fs::remove_file(self.dir.join("index.m3u8"));
        *self.run.lock() += 1;
        self.ffmpeg = Some(self.spawn_ffmpeg(logs));
    }

    pub fn accepted(&self) -> Vec<Accepted> {
        self.accepted.lock().clone()
    }

    /// Waits until the edge has accepted `n` more segments than now; returns the first of them.
    pub async fn next_accepted(&self, n: usize, within: Duration) -> Accepted {
        let before = self.accepted.lock().len();
        crate::support::eventually_within("the edge to accept new segments", within, || async {
            let all = self.accepted.lock();
            (all.len() >= before + n).then(|| all[before].clone())
        })
        .await
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every 200 ms: if ffmpeg's playlist changed (or the last push failed), POST it and keep the newly accepted.
async fn push_loop(
    edge: String,
    source: String,
    dir: PathBuf,
    accepted: Arc<Mutex<Vec<Accepted>>>,
    run: Arc<Mutex<usize>>,
) {
    let prefix = format!("file://{}/", dir.display());
    let mut pushed = Vec::new();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Ok(playlist) = std::fs::read(dir.join("index.m3u8")) else { continue };
        if playlist == pushed {
            continue;
        }
        let run_now = *run.lock();
        let reply = http()
            .post(format!("{edge}/v1/playlist"))
            .bearer_auth(crate::support::INGEST_TOKEN)
            .header("Video-Source-Name", &source)
            .header("MPEG-TS-URI-Prefix", &prefix)
            .body(playlist.clone())
            .send()
            .await;
        let Ok(reply) = reply else { continue };
        if !reply.status().is_success() {
            continue;
        }
        let Ok(body) = reply.json::<Value>().await else { continue };
        let at = Utc::now();
        for name in body["new_segments"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            // The edge has read the file before answering; ffmpeg overwrites it only after a restart.
            let bytes = Bytes::from(std::fs::read(dir.join(name)).unwrap());
            accepted.lock().push(Accepted { name: name.to_owned(), run: run_now, at, bytes });
        }
        pushed = playlist;
    }
}
