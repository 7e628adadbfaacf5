//! The recorder on the in-process backends: common's local store (behind a switch that simulates an outage) and
//! the memory bus.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant as StdInstant},
};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use livemix_common::{
    bus::{Delivery, MessageBus, memory::MemoryBus},
    messages::Message,
    model::SegmentInfo,
    segment::SegmentRecord,
    store::{ObjectInfo, ObjectStore, StoreError, local::LocalStore},
};
use tokio::sync::mpsc;
use ulid::Ulid;

use super::*;

const TOPIC: &str = "control";

/// The local store, failing every put while `down` (as an unreachable S3 would) and counting attempts.
struct FlakyStore {
    inner: LocalStore,
    down: AtomicBool,
    puts: AtomicUsize,
}

#[async_trait]
impl ObjectStore for FlakyStore {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Op { op: "put", key: key.into(), source: "connection refused".into() });
        }
        self.inner.put(key, data).await
    }
    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        self.inner.get(key).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str, after: Option<&str>, max: usize) -> Result<Vec<ObjectInfo>, StoreError> {
        self.inner.list(prefix, after, max).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

struct Fixture {
    dir: PathBuf,
    store: Arc<FlakyStore>,
    bus: MemoryBus,
    reports: mpsc::Receiver<Delivery>,
    metrics: RecordMetrics,
    source: Uuid,
    run: Ulid,
}

impl Fixture {
    async fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("livemix-recorder-test-{}", Uuid::new_v4()));
        let store = Arc::new(FlakyStore {
            inner: LocalStore::new(dir.join("objects")),
            down: AtomicBool::new(false),
            puts: AtomicUsize::new(0),
        });
        let bus = MemoryBus::default();
        bus.ensure_topic(TOPIC).await.unwrap();
        bus.ensure_subscription("reports", TOPIC).await.unwrap();
        let reports = bus.subscribe("reports").await.unwrap();
        Self { dir, store, bus, reports, metrics: RecordMetrics::default(), source: Uuid::new_v4(), run: Ulid::new() }
    }

    fn spool_dir(&self) -> PathBuf {
        self.dir.join("spool")
    }

    async fn recorder(&self, budget: u64, prefix: &str) -> Recorder {
        let config = RecorderConfig {
            spool_dir: self.spool_dir(),
            spool_bytes: budget,
            object_prefix: prefix.into(),
            control_topic: TOPIC.into(),
        };
        Recorder::start(config, self.store.clone(), Arc::new(self.bus.clone()), self.metrics.clone()).await.unwrap()
    }

    fn id(&self, seq: u64) -> SegmentId {
        SegmentId { source: self.source, run: self.run, seq }
    }

    /// The next report on the control topic (acknowledged), or `None` if none comes within `wait`.
    async fn report(&mut self, wait: Duration) -> Option<(Vec<String>, SegmentInfo)> {
        let delivery = tokio::time::timeout(wait, self.reports.recv()).await.ok()??;
        let Message::NewVideoRecordingSegment { recording_ids, segment } = delivery.envelope.body.clone() else {
            panic!("unexpected message {:?}", delivery.envelope);
        };
        delivery.ack();
        Some((recording_ids, segment))
    }

    fn pending(&self) -> i64 {
        self.metrics.pending.get()
    }

    fn counted(family: &Family<Labels, Counter>, label: &str, value: &str) -> u64 {
        family.get_or_create(&vec![(label.to_owned(), value.to_owned())]).get()
    }

    /// Files (not directories) under `dir`, recursively, as paths relative to it.
    fn files(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(next) = stack.pop() {
            for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if let Ok(relative) = path.strip_prefix(dir) {
                    out.push(relative.display().to_string());
                }
            }
        }
        out.sort();
        out
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn segment(id: SegmentId, size: usize) -> Arc<CachedSegment> {
    let seq = id.seq;
    let record = SegmentRecord {
        id,
        name: format!("index{seq}.ts"),
        start_ts: Utc::now(),
        length_ms: 2000,
        discontinuity: seq == 0,
    };
    CachedSegment::new(record, "cam", 2.0, Bytes::from(vec![seq as u8; size]))
}

/// Polls `check` until it holds, failing after 10 s.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = StdInstant::now() + Duration::from_secs(10);
    while !check() {
        assert!(StdInstant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn no_recordings_no_job() {
    let f = Fixture::new().await;
    let recorder = f.recorder(1 << 20, "recordings").await;
    recorder.record(segment(f.id(0), 10), Vec::new());
    assert_eq!(f.pending(), 0);
    assert!(Fixture::files(&f.spool_dir()).is_empty());
}

#[tokio::test]
async fn the_spool_survives_a_restart_and_delivers_every_job_once_in_order() {
    let mut f = Fixture::new().await;
    f.store.down.store(true, Ordering::SeqCst);
    let recorder = f.recorder(1 << 20, "recordings").await;
    for seq in 0..5 {
        recorder.record(segment(f.id(seq), 100 + seq as usize), vec!["rec-a".into()]);
    }
    // The same segment again (a second recording back-filling it): one job, both recordings.
    recorder.record(segment(f.id(2), 102), vec!["rec-b".into(), "rec-a".into()]);
    assert_eq!(f.pending(), 5);
    until("the first upload attempts", || Fixture::counted(&f.metrics.failures, "kind", "upload") > 0).await;
    until("every job on disk", || Fixture::files(&f.spool_dir()).iter().filter(|p| p.ends_with(".json")).count() == 5)
        .await;
    drop(recorder); // mid-outage, as a crash would
    assert!(f.report(Duration::from_millis(300)).await.is_none(), "nothing reported during the outage");

    f.store.down.store(false, Ordering::SeqCst);
    let recorder = f.recorder(1 << 20, "recordings").await;
    for seq in 0..5 {
        let (recordings, info) = f.report(Duration::from_secs(10)).await.expect("a report");
        let id = f.id(seq);
        assert_eq!(info.seq, seq as i64, "in order");
        assert_eq!(info.run, Some(f.run));
        assert_eq!(info.discontinuity, seq == 0);
        assert_eq!(info.name, format!("index{seq}.ts"));
        assert_eq!(info.uri, id.object_key("recordings"));
        assert_eq!(info.size, 100 + seq as i64);
        let expected: &[&str] = if seq == 2 { &["rec-a", "rec-b"] } else { &["rec-a"] };
        assert_eq!(recordings, expected);
        let stored = f.store.get(&info.uri).await.unwrap();
        assert_eq!(stored, segment(f.id(seq), 100 + seq as usize).data, "its own bytes");
        let hash = info.sha256.as_deref().expect("the spool hashed the segment");
        assert_eq!(
            hash,
            livemix_common::digest::sha256_hex(&stored),
            "the hash of what was recorded, across a restart"
        );
    }
    until("the spool to drain", || f.pending() == 0 && f.metrics.spool_bytes.get() == 0).await;
    until("the delivered jobs to be deleted", || Fixture::files(&f.spool_dir()).is_empty()).await;
    assert!(f.report(Duration::from_millis(300)).await.is_none(), "each job reported once");
    assert_eq!(f.metrics.uploaded.get(), 5);
    recorder.shutdown().await;
}

#[tokio::test]
async fn recordings_joining_a_job_being_reported_are_reported_too() {
    let mut f = Fixture::new().await;
    // The bus is "down": the control topic does not exist yet, so publishing fails.
    let bus = MemoryBus::default();
    f.bus = bus.clone();
    let recorder = f.recorder(1 << 20, "recordings").await;
    recorder.record(segment(f.id(7), 10), vec!["rec-a".into()]);
    until("a failed report", || Fixture::counted(&f.metrics.failures, "kind", "report") > 0).await;
    recorder.record(segment(f.id(7), 10), vec!["rec-b".into()]);
    bus.ensure_topic(TOPIC).await.unwrap();
    bus.ensure_subscription("reports", TOPIC).await.unwrap();
    f.reports = bus.subscribe("reports").await.unwrap();
    let mut recordings = Vec::new();
    while recordings.len() < 2 {
        let (ids, info) = f.report(Duration::from_secs(10)).await.expect("a report");
        assert_eq!(info.seq, 7);
        recordings.extend(ids);
    }
    recordings.sort();
    assert_eq!(recordings, ["rec-a", "rec-b"]);
    until("the spool to drain", || f.pending() == 0).await;
    assert!(f.report(Duration::from_millis(300)).await.is_none());
    recorder.shutdown().await;
}

#[tokio::test]
async fn a_full_spool_refuses_the_newest_and_keeps_the_oldest() {
    let mut f = Fixture::new().await;
    f.store.down.store(true, Ordering::SeqCst);
    let recorder = f.recorder(300, "recordings").await;
    for seq in 0..5 {
        recorder.record(segment(f.id(seq), 100), vec!["rec".into()]);
    }
    assert_eq!(Fixture::counted(&f.metrics.dropped, "reason", "spool_full"), 2);
    assert_eq!(f.pending(), 3);
    assert_eq!(f.metrics.spool_bytes.get(), 300);

    f.store.down.store(false, Ordering::SeqCst);
    for seq in 0..3 {
        let (_, info) = f.report(Duration::from_secs(10)).await.expect("a report");
        assert_eq!(info.seq, seq, "the oldest are kept");
    }
    until("the spool to drain", || f.metrics.spool_bytes.get() == 0).await;
    // Room again: recording resumes.
    recorder.record(segment(f.id(5), 100), vec!["rec".into()]);
    let (_, info) = f.report(Duration::from_secs(10)).await.expect("a report");
    assert_eq!(info.seq, 5);
    assert!(f.report(Duration::from_millis(300)).await.is_none(), "seq 3 and 4 were refused");
    assert_eq!(Fixture::counted(&f.metrics.dropped, "reason", "spool_full"), 2);
    recorder.shutdown().await;
}

#[tokio::test]
async fn a_permanent_error_moves_the_job_to_failed_without_retrying() {
    let mut f = Fixture::new().await;
    // The local store refuses keys that would leave its root: a malformed key, permanently.
    let recorder = f.recorder(1 << 20, "../outside").await;
    recorder.record(segment(f.id(0), 50), vec!["rec".into()]);
    until("the job to fail", || Fixture::counted(&f.metrics.failures, "kind", "rejected") == 1).await;
    until("the job to move", || Fixture::files(&f.spool_dir()).iter().all(|p| p.starts_with("failed/"))).await;
    let failed = Fixture::files(&f.spool_dir().join("failed"));
    assert_eq!(failed.len(), 2, "bytes and sidecar: {failed:?}");
    assert_eq!(f.store.puts.load(Ordering::SeqCst), 1, "not retried");
    assert_eq!(f.pending(), 0);
    assert_eq!(f.metrics.spool_bytes.get(), 50, "failed/ counts toward the budget");
    assert!(f.report(Duration::from_millis(300)).await.is_none(), "nothing reported");
    recorder.shutdown().await;

    // A restart does not try it again, and still counts its bytes.
    let recorder = f.recorder(1 << 20, "../outside").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(f.store.puts.load(Ordering::SeqCst), 1);
    assert!(f.metrics.spool_bytes.get() >= 50);
    recorder.shutdown().await;
}
