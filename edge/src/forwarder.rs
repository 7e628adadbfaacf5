//! Forwarding live segments to the control node while streaming is on: in order per source, a bounded queue
//! per source (live video goes stale, so the oldest waiting segment is dropped when it is full), retries with
//! backoff.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::Duration,
};

use parking_lot::Mutex;
use prometheus_client::metrics::{counter::Counter, family::Family};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::{cache::Segment, control_client::ControlClient, sources::Sources};

/// A retry gives up after this long: by then the segment has left every live playlist.
const GIVE_UP_AFTER: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct ForwardMetrics {
    pub forwarded: Counter,
    pub dropped: Family<Vec<(String, String)>, Counter>,
}

struct Queue {
    segments: Mutex<VecDeque<Arc<Segment>>>,
    wake: Notify,
}

pub struct Forwarder {
    client: ControlClient,
    sources: Arc<Sources>,
    capacity: usize,
    queues: Mutex<HashMap<Uuid, Arc<Queue>>>,
    metrics: ForwardMetrics,
}

impl Forwarder {
    pub fn new(client: ControlClient, sources: Arc<Sources>, capacity: usize, metrics: ForwardMetrics) -> Self {
        Self { client, sources, capacity: capacity.max(1), queues: Mutex::default(), metrics }
    }

    fn dropped(&self, reason: &str) {
        self.metrics.dropped.get_or_create(&vec![("reason".to_owned(), reason.to_owned())]).inc();
    }

    /// Queues a segment for the control node, starting the source's worker on first use.
    pub fn enqueue(self: &Arc<Self>, source: Uuid, segment: Arc<Segment>) {
        let queue = {
            let mut queues = self.queues.lock();
            queues
                .entry(source)
                .or_insert_with(|| {
                    let queue = Arc::new(Queue { segments: Mutex::default(), wake: Notify::new() });
                    tokio::spawn(Arc::clone(self).run(source, Arc::clone(&queue)));
                    queue
                })
                .clone()
        };
        {
            let mut segments = queue.segments.lock();
            segments.push_back(segment);
            while segments.len() > self.capacity {
                if let Some(stale) = segments.pop_front() {
                    tracing::warn!(%source, segment = %stale.name, "forward queue full; dropped the oldest segment");
                    self.dropped("queue_full");
                }
            }
        }
        queue.wake.notify_one();
    }

    async fn run(self: Arc<Self>, source: Uuid, queue: Arc<Queue>) {
        loop {
            let next = queue.segments.lock().pop_front();
            match next {
                Some(segment) => self.forward(source, &segment).await,
                None => queue.wake.notified().await,
            }
        }
    }

    #[tracing::instrument(skip(self, segment), fields(segment = %segment.name, seq = segment.seq))]
    async fn forward(&self, source: Uuid, segment: &Segment) {
        let mut delay = Duration::from_millis(200);
        let started = tokio::time::Instant::now();
        loop {
            if !self.sources.streaming(&segment.source_name) {
                tracing::debug!("streaming turned off; not forwarding");
                self.dropped("streaming_off");
                return;
            }
            match self.client.forward_segment(source, segment).await {
                Ok(()) => {
                    self.metrics.forwarded.inc();
                    tracing::debug!("forwarded");
                    return;
                }
                // The control node says streaming is off, or the source is gone: retrying cannot help.
                Err(err) if matches!(err.status(), Some(409 | 404 | 400 | 413)) => {
                    tracing::warn!(%err, "control node refused the segment; dropped");
                    self.dropped("refused");
                    return;
                }
                Err(err) if started.elapsed() > GIVE_UP_AFTER => {
                    tracing::warn!(%err, "giving up forwarding a stale segment");
                    self.dropped("gave_up");
                    return;
                }
                Err(err) => {
                    tracing::warn!(%err, retry_in_ms = delay.as_millis() as u64, "forwarding failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
