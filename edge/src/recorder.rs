//! Recording: segments covered by an active recording are uploaded to the object store at
//! `{prefix}/{source_id}/{segment_name}` and reported to the control node over the bus.
//!
//! A failed upload or report is retried with capped backoff until it succeeds: a recorded segment is never
//! silently dropped. Jobs run one at a time, so a recording's segments reach the store in order.

use std::{collections::HashSet, sync::Arc, time::Duration};

use livemix_common::{
    bus::SharedBus,
    messages::{Envelope, Message},
    model::SegmentInfo,
    store::{SharedStore, segment_key},
};
use parking_lot::Mutex;
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::cache::Segment;

#[derive(Clone, Default)]
pub struct RecordMetrics {
    pub uploaded: Counter,
    pub failures: Counter,
    pub pending: Gauge,
}

struct Job {
    source: Uuid,
    segment: Arc<Segment>,
    recording_ids: Vec<String>,
}

#[derive(Clone)]
pub struct Recorder {
    jobs: mpsc::UnboundedSender<Job>,
    metrics: RecordMetrics,
}

struct Worker {
    store: SharedStore,
    bus: SharedBus,
    control_topic: String,
    prefix: String,
    /// Object keys already in the store, so a segment covered by several recordings is uploaded once.
    uploaded: Mutex<HashSet<String>>,
    metrics: RecordMetrics,
}

impl Recorder {
    pub fn start(
        store: SharedStore,
        bus: SharedBus,
        control_topic: String,
        prefix: String,
        metrics: RecordMetrics,
    ) -> Self {
        let (jobs, rx) = mpsc::unbounded_channel();
        let worker = Worker { store, bus, control_topic, prefix, uploaded: Mutex::default(), metrics: metrics.clone() };
        tokio::spawn(worker.run(rx));
        Self { jobs, metrics }
    }

    /// Records `segment` for these recordings (no-op for none).
    pub fn record(&self, source: Uuid, segment: Arc<Segment>, recording_ids: Vec<String>) {
        if recording_ids.is_empty() {
            return;
        }
        self.metrics.pending.inc();
        if self.jobs.send(Job { source, segment, recording_ids }).is_err() {
            tracing::error!("recording worker stopped; segment not recorded");
        }
    }
}

impl Worker {
    async fn run(self, mut jobs: mpsc::UnboundedReceiver<Job>) {
        while let Some(job) = jobs.recv().await {
            self.handle(job).await;
            self.metrics.pending.dec();
        }
    }

    #[tracing::instrument(skip_all, fields(source = %job.source, segment = %job.segment.name, recordings = ?job.recording_ids))]
    async fn handle(&self, job: Job) {
        let key = segment_key(&self.prefix, job.source, &job.segment.name);
        let already = self.uploaded.lock().contains(&key);
        if !already {
            retry("upload", &self.metrics, || self.store.put(&key, job.segment.data.clone())).await;
            self.uploaded.lock().insert(key.clone());
            self.metrics.uploaded.inc();
        }
        let segment = &job.segment;
        let info = SegmentInfo {
            name: segment.name.clone(),
            source: job.source,
            run: None,
            seq: segment.id.seq as i64,
            discontinuity: segment.discontinuity,
            start_ts: segment.start_ts,
            end_ts: segment.end_ts(),
            length_ms: segment.length_ms(),
            size: segment.data.len() as i64,
            uri: key,
        };
        let message = Envelope::new(Message::NewVideoRecordingSegment {
            recording_ids: job.recording_ids.clone(),
            segment: info,
        });
        retry("report", &self.metrics, || self.bus.publish(&self.control_topic, &message)).await;
        tracing::info!("recorded segment uploaded and reported");
    }
}

/// Runs `op` until it succeeds, backing off up to 30 s between attempts.
async fn retry<F, Fut, E>(what: &str, metrics: &RecordMetrics, mut op: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut delay = Duration::from_millis(250);
    let mut attempt = 1u32;
    loop {
        match op().await {
            Ok(()) => return,
            Err(err) => {
                metrics.failures.inc();
                tracing::warn!(%err, attempt, retry_in_ms = delay.as_millis() as u64, "recording {what} failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
                attempt += 1;
            }
        }
    }
}
