//! Recording: segments covered by an active recording are uploaded to the object store at
//! [`SegmentId::object_key`] and reported to the control node on the bus (`new_video_recording_segment`).
//!
//! A recording is evidence, so the recorder is durable. [`Recorder::record`] spools the segment to local disk
//! ([`spool`]) and returns; one worker per source ([`worker`]) uploads the spooled jobs in recording order with
//! backoff, reports each, and only then deletes it. An outage of the store or the bus grows the spool on disk,
//! not memory (a spooled job keeps only its metadata in RAM), and a restart resumes the spool.
//!
//! The spool is bounded (`--spool-bytes`). When it is full, newly recorded segments are refused, counted in
//! `recording_dropped_total{reason="spool_full"}` and warned about once per episode (then once a minute): the
//! older evidence already spooled is kept. Jobs the object store refuses for good (access denied, no such bucket,
//! a malformed key) are not retried forever: they move to the spool's `failed/` directory and are logged with
//! their key.

mod spool;
mod worker;

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use livemix_common::{
    bus::SharedBus, digest::sha256_hex, model::SegmentInfo, segment_id::SegmentId, store::SharedStore,
    telemetry::Metrics,
};
use parking_lot::Mutex;
use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};
use tokio::{sync::Notify, task::JoinHandle};
use tokio_util::{
    sync::{CancellationToken, DropGuard},
    task::TaskTracker,
};
use uuid::Uuid;

pub use spool::SpoolError;
use spool::{Sidecar, SpoolDir};

use crate::cache::CachedSegment;

/// How often a spool that stays full is warned about again.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(60);

/// Where the recorder keeps its spool and where it delivers to.
#[derive(Debug, Clone)]
pub struct RecorderConfig {
    pub spool_dir: PathBuf,
    /// Byte budget of the spool, `failed/` included.
    pub spool_bytes: u64,
    /// Object key prefix (see [`SegmentId::object_key`]).
    pub object_prefix: String,
    /// Topic the control node reads recorded-segment reports from.
    pub control_topic: String,
}

#[derive(Debug, thiserror::Error)]
#[error("recording spool {}: {source}", dir.display())]
pub struct RecorderError {
    dir: PathBuf,
    source: SpoolError,
}

type Labels = Vec<(String, String)>;

#[derive(Clone, Default)]
pub struct RecordMetrics {
    /// Segments uploaded and reported.
    pub uploaded: Counter,
    /// Failed attempts by kind: `upload` and `report` (retried), `rejected` (moved to `failed/`), `spool` (disk).
    pub failures: Family<Labels, Counter>,
    /// Recorded segments not recorded, by reason: `spool_full`, `spool_error`.
    pub dropped: Family<Labels, Counter>,
    /// Segments in the spool waiting to be uploaded or reported.
    pub pending: Gauge,
    /// Bytes the spool holds, `failed/` included.
    pub spool_bytes: Gauge,
    /// The spool's byte budget, so alerts compare the two without knowing the edge's settings.
    pub spool_budget_bytes: Gauge,
}

impl RecordMetrics {
    pub fn register(metrics: &Metrics) -> Self {
        Self {
            uploaded: metrics.register("segments_recorded", "Segments uploaded and reported", Counter::default()),
            failures: metrics.register("recording_failures", "Failed recording steps, by kind", Family::default()),
            dropped: metrics.register(
                "recording_dropped",
                "Recorded segments not recorded, by reason",
                Family::default(),
            ),
            pending: metrics.register(
                "recording_pending",
                "Segments spooled, waiting to be recorded",
                Gauge::default(),
            ),
            spool_bytes: metrics.register("recording_spool_bytes", "Bytes in the recording spool", Gauge::default()),
            spool_budget_bytes: metrics.register(
                "recording_spool_budget_bytes",
                "Byte budget of the recording spool (LIVEMIX_SPOOL_BYTES); past it new recorded segments are refused",
                Gauge::default(),
            ),
        }
    }

    fn failure(&self, kind: &str) {
        self.failures.get_or_create(&vec![("kind".to_owned(), kind.to_owned())]).inc();
    }

    fn dropped(&self, reason: &str) {
        self.dropped.get_or_create(&vec![("reason".to_owned(), reason.to_owned())]).inc();
    }
}

/// Hands recorded segments to the spool; clones share one recorder, which stops when the last clone is dropped.
#[derive(Clone)]
pub struct Recorder {
    shared: Arc<Shared>,
    _stop: Arc<DropGuard>,
}

struct Shared {
    spool: SpoolDir,
    budget: u64,
    prefix: String,
    control_topic: String,
    store: SharedStore,
    bus: SharedBus,
    metrics: RecordMetrics,
    state: Mutex<State>,
    /// Held while a job's files change (sidecar rewritten, job removed or moved to `failed/`), so a late sidecar
    /// rewrite can never bring back a job already delivered. Taken before `state`.
    files: Mutex<()>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

#[derive(Default)]
struct State {
    /// Bytes on disk: spooled segments and those in `failed/`.
    bytes: u64,
    queues: HashMap<Uuid, Queue>,
    full: Option<FullEpisode>,
}

/// One source's jobs, in recording order, and its worker's doorbell. It exists while its worker runs: the worker
/// removes it (and stops) once it is empty.
struct Queue {
    jobs: BTreeMap<SegmentId, Job>,
    wake: Arc<Notify>,
}

struct Job {
    sidecar: Sidecar,
    /// Segment bytes on disk.
    size: u64,
    /// Bytes and sidecar are on disk: the worker may take it.
    spooled: bool,
    /// Recording ids changed since the sidecar was last written.
    dirty: bool,
}

struct FullEpisode {
    refused: u64,
    warned_at: Instant,
}

impl State {
    fn job_mut(&mut self, id: &SegmentId) -> Option<&mut Job> {
        self.queues.get_mut(&id.source)?.jobs.get_mut(id)
    }

    fn remove(&mut self, id: &SegmentId) -> Option<Job> {
        self.queues.get_mut(&id.source)?.jobs.remove(id)
    }

    fn pending(&self) -> usize {
        self.queues.values().map(|q| q.jobs.len()).sum()
    }
}

impl Recorder {
    /// Opens the spool, cleans up after a crash and resumes delivering what it holds, in order.
    pub async fn start(
        config: RecorderConfig,
        store: SharedStore,
        bus: SharedBus,
        metrics: RecordMetrics,
    ) -> Result<Self, RecorderError> {
        let dir = config.spool_dir.clone();
        let opened = tokio::task::spawn_blocking(move || {
            let spool = SpoolDir::open(dir)?;
            let scan = spool.scan()?;
            Ok((spool, scan))
        })
        .await
        .unwrap_or_else(|panic| {
            Err(SpoolError::Io {
                action: "scanning",
                path: config.spool_dir.clone(),
                source: std::io::Error::other(panic),
            })
        });
        let (spool, scan) = opened.map_err(|source| RecorderError { dir: config.spool_dir.clone(), source })?;
        let cancel = CancellationToken::new();
        metrics.spool_budget_bytes.set(i64::try_from(config.spool_bytes).unwrap_or(i64::MAX));
        let shared = Arc::new(Shared {
            spool,
            budget: config.spool_bytes,
            prefix: config.object_prefix,
            control_topic: config.control_topic,
            store,
            bus,
            metrics,
            state: Mutex::default(),
            files: Mutex::default(),
            cancel: cancel.clone(),
            tasks: TaskTracker::new(),
        });
        let resumed = scan.jobs.len();
        {
            let mut state = shared.state.lock();
            state.bytes = scan.failed_bytes;
            for job in scan.jobs {
                state.bytes += job.size;
                let id = job.sidecar.id;
                let job = Job { sidecar: job.sidecar, size: job.size, spooled: true, dirty: false };
                shared.queue(&mut state, id.source).jobs.insert(id, job);
            }
            shared.update_gauges(&state);
            tracing::info!(
                dir = %shared.spool.root().display(),
                resumed,
                cleaned = scan.cleaned,
                bytes = state.bytes,
                budget = shared.budget,
                "recording spool opened"
            );
        }
        Ok(Self { shared, _stop: Arc::new(cancel.drop_guard()) })
    }

    /// Records `segment` for these recordings (no-op for none): spools it. The same segment recorded again while
    /// still spooled is one job whose recording ids are merged. The returned handle completes once the job is on
    /// disk, so an ingest can wait for it before it tells the encoder the segment was accepted.
    pub fn record(&self, segment: Arc<CachedSegment>, recording_ids: Vec<String>) -> Option<JoinHandle<()>> {
        if recording_ids.is_empty() {
            return None;
        }
        let id = segment.record.id;
        let shared = &self.shared;
        let mut state = shared.state.lock();
        if let Some(job) = state.job_mut(&id) {
            let before = job.sidecar.recording_ids.len();
            for recording in recording_ids {
                if !job.sidecar.recording_ids.contains(&recording) {
                    job.sidecar.recording_ids.push(recording);
                }
            }
            if job.sidecar.recording_ids.len() > before {
                job.dirty = true;
                // A job still being written picks the new ids up itself.
                if job.spooled {
                    let persisting = Arc::clone(shared);
                    return Some(shared.tasks.spawn_blocking(move || {
                        if let Err(err) = persisting.persist(id) {
                            tracing::warn!(segment = %id, %err, "could not add recordings to a spooled segment's sidecar");
                        }
                    }));
                }
            }
            return None;
        }
        let size = segment.data.len() as u64;
        if state.bytes.saturating_add(size) > shared.budget {
            shared.refuse(&mut state, id, &recording_ids);
            return None;
        }
        if let Some(episode) = state.full.take() {
            tracing::info!(refused = episode.refused, "recording spool has room again");
        }
        state.bytes += size;
        let sidecar = Sidecar { id, segment: shared.info(&segment), recording_ids };
        shared.queue(&mut state, id.source).jobs.insert(id, Job { sidecar, size, spooled: false, dirty: false });
        shared.update_gauges(&state);
        drop(state);
        let spooling = Arc::clone(shared);
        Some(shared.tasks.spawn_blocking(move || spooling.spool_job(id, segment)))
    }

    /// Stops the workers and waits for them and for spool writes in flight. What is spooled stays for the next
    /// start.
    pub async fn shutdown(&self) {
        self.shared.cancel.cancel();
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }
}

impl Shared {
    /// The source's queue, starting its worker on first use.
    fn queue<'a>(self: &Arc<Self>, state: &'a mut State, source: Uuid) -> &'a mut Queue {
        state.queues.entry(source).or_insert_with(|| {
            let wake = Arc::new(Notify::new());
            self.tasks.spawn(worker::run(Arc::clone(self), source, Arc::clone(&wake)));
            Queue { jobs: BTreeMap::new(), wake }
        })
    }

    /// What the control node is told about a recorded segment: its record, uploaded at its own object key.
    fn info(&self, segment: &CachedSegment) -> SegmentInfo {
        let record = &segment.record;
        record.to_info(segment.data.len() as u64, record.id.object_key(&self.prefix))
    }

    fn update_gauges(&self, state: &State) {
        self.metrics.pending.set(i64::try_from(state.pending()).unwrap_or(i64::MAX));
        self.metrics.spool_bytes.set(i64::try_from(state.bytes).unwrap_or(i64::MAX));
    }

    /// Refuses a segment because the spool is full: counted every time, warned once per episode (and then once
    /// a minute while it lasts).
    fn refuse(&self, state: &mut State, id: SegmentId, recording_ids: &[String]) {
        self.metrics.dropped("spool_full");
        tracing::debug!(segment = %id, recordings = ?recording_ids, "recording spool full; segment refused");
        let now = Instant::now();
        match &mut state.full {
            None => {
                tracing::warn!(
                    spool_bytes = state.bytes,
                    budget = self.budget,
                    segment = %id,
                    "recording spool full: newly recorded segments are refused until uploads catch up; \
                     the spooled ones are kept"
                );
                state.full = Some(FullEpisode { refused: 1, warned_at: now });
            }
            Some(episode) => {
                episode.refused += 1;
                if now.duration_since(episode.warned_at) >= FULL_WARNING_EVERY {
                    tracing::warn!(refused = episode.refused, spool_bytes = state.bytes, "recording spool still full");
                    episode.warned_at = now;
                }
            }
        }
    }

    /// Writes a new job to disk (blocking), with the segment's SHA-256 in its sidecar: taken here, once, from the
    /// bytes as they are spooled, so the control node's index can prove later what was recorded. The segment's
    /// bytes are released once written.
    fn spool_job(&self, id: SegmentId, segment: Arc<CachedSegment>) {
        let hash = sha256_hex(&segment.data);
        if let Some(job) = self.state.lock().job_mut(&id) {
            job.sidecar.segment.sha256 = Some(hash);
        }
        let written = self.spool.write_segment(&id, &segment.data);
        drop(segment);
        if let Err(err) = written.and_then(|()| self.persist(id)) {
            tracing::error!(segment = %id, %err, "could not spool a recorded segment; it is not recorded");
            self.metrics.failure("spool");
            self.metrics.dropped("spool_error");
            self.forget(id, None);
        }
        self.wake(id.source);
    }

    /// Writes a job's sidecar with its current recording ids (blocking), rewriting it if they changed meanwhile;
    /// then the job is spooled. Nothing happens for a job already delivered.
    fn persist(&self, id: SegmentId) -> Result<(), SpoolError> {
        let _files = self.files.lock();
        loop {
            let sidecar = {
                let mut state = self.state.lock();
                let Some(job) = state.job_mut(&id) else { return Ok(()) };
                job.dirty = false;
                job.sidecar.clone()
            };
            self.spool.write_sidecar(&sidecar)?;
            let mut state = self.state.lock();
            match state.job_mut(&id) {
                Some(job) if job.dirty => continue,
                Some(job) => job.spooled = true,
                None => {}
            }
            return Ok(());
        }
    }

    /// Drops a job (blocking): deletes its files and frees its bytes. With `reported`, only once every recording
    /// of the job is in it; otherwise returns those still to report.
    fn forget(&self, id: SegmentId, reported: Option<&[String]>) -> Vec<String> {
        let _files = self.files.lock();
        {
            let mut state = self.state.lock();
            let Some(job) = state.job_mut(&id) else { return Vec::new() };
            if let Some(reported) = reported {
                let missing: Vec<String> =
                    job.sidecar.recording_ids.iter().filter(|r| !reported.contains(r)).cloned().collect();
                if !missing.is_empty() {
                    return missing;
                }
            }
            let size = job.size;
            state.remove(&id);
            state.bytes = state.bytes.saturating_sub(size);
            self.update_gauges(&state);
        }
        if let Err(err) = self.spool.remove(&id) {
            tracing::warn!(segment = %id, %err, "could not delete a spooled segment; it may be delivered again");
        }
        Vec::new()
    }

    fn wake(&self, source: Uuid) {
        if let Some(queue) = self.state.lock().queues.get(&source) {
            queue.wake.notify_one();
        }
    }
}

#[cfg(test)]
mod tests;
