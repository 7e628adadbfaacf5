//! The durable recorder on the real services: moto S3 and the Pub/Sub emulator.

use std::{collections::BTreeMap, path::Path, sync::Arc, time::Duration};

use bytes::Bytes;
use chrono::Utc;
use livemix_common::{
    messages::Message,
    segment::SegmentRecord,
    segment_id::SegmentId,
    store::{
        SharedStore,
        s3::{S3Config, S3Store},
    },
};
use livemix_edge::{
    cache::CachedSegment,
    recorder::{RecordMetrics, Recorder, RecorderConfig},
};
use livemix_testkit::control::{pubsub, s3};
use ulid::Ulid;
use uuid::Uuid;

use crate::support::{env, eventually, unique};

fn segment(id: SegmentId) -> Arc<CachedSegment> {
    let seq = id.seq;
    let data = Bytes::from(format!("segment {seq} ").repeat(1000));
    let record = SegmentRecord {
        id,
        name: format!("index{seq}.ts"),
        start_ts: Utc::now(),
        length_ms: 1000,
        discontinuity: false,
    };
    CachedSegment::new(record, "cam", 1.0, data)
}

fn config(topic: &str) -> RecorderConfig {
    RecorderConfig {
        spool_dir: std::env::temp_dir().join(unique("livemix-spool-e2e")),
        spool_bytes: 1 << 20,
        object_prefix: unique("recordings"),
        control_topic: topic.into(),
    }
}

/// Spooled jobs still waiting (files outside `failed/`).
fn waiting(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name() != "failed")
        .map(|e| std::fs::read_dir(e.path()).map(|d| d.count()).unwrap_or(0))
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn recorder_uploads_to_s3_reports_on_pubsub_and_parks_what_s3_refuses() {
    let store: SharedStore = Arc::new(s3().await);
    let bus = pubsub().await;
    let topic = unique("rec-ctl");
    bus.ensure_topic(&topic).await.unwrap();
    bus.ensure_subscription(&topic, &topic).await.unwrap();
    let mut reports = bus.subscribe(&topic).await.unwrap();

    let config = config(&topic);
    let spool = config.spool_dir.clone();
    let metrics = RecordMetrics::default();
    let recorder = Recorder::start(config.clone(), store.clone(), bus.clone(), metrics.clone()).await.unwrap();
    let (source, run) = (Uuid::new_v4(), Ulid::new());
    for seq in 0..3 {
        recorder.record(segment(SegmentId { source, run, seq }), vec!["rec-1".into()]);
    }
    // Pub/Sub may redeliver and need not keep the order: collect by sequence number.
    let mut seen = BTreeMap::new();
    while seen.len() < 3 {
        let delivery = tokio::time::timeout(Duration::from_secs(60), reports.recv())
            .await
            .expect("a report within 60 s")
            .expect("subscription open");
        if let Message::NewVideoRecordingSegment { recording_ids, segment } = delivery.envelope.body.clone() {
            assert_eq!(recording_ids, ["rec-1"]);
            seen.insert(segment.seq, segment);
        }
        delivery.ack();
    }
    for (seq, info) in &seen {
        let id = SegmentId { source, run, seq: *seq as u64 };
        assert_eq!(info.uri, id.object_key(&config.object_prefix));
        assert_eq!(info.run, Some(run));
        assert_eq!(store.get(&info.uri).await.unwrap(), segment(id).data, "its own bytes in S3");
    }
    eventually("the spool to drain", || async { (waiting(&spool) == 0).then_some(()) }).await;
    assert_eq!(metrics.uploaded.get(), 3);
    recorder.shutdown().await;

    // A bucket that does not exist: S3 answers NoSuchBucket, which no retry fixes.
    let missing: SharedStore = Arc::new(
        S3Store::connect(S3Config {
            bucket: unique("livemix-no-such-bucket"),
            endpoint: Some(env("S3_ENDPOINT")),
            region: env("AWS_REGION"),
            create_bucket: false,
        })
        .await
        .unwrap(),
    );
    let config = self::config(&topic);
    let metrics = RecordMetrics::default();
    let recorder = Recorder::start(config.clone(), missing, bus.clone(), metrics.clone()).await.unwrap();
    recorder.record(segment(SegmentId { source, run, seq: 3 }), vec!["rec-1".into()]);
    let failed = config.spool_dir.join("failed").join(source.to_string());
    eventually("the refused job in failed/", || async {
        let files = std::fs::read_dir(&failed).map(|d| d.count()).unwrap_or(0);
        (files == 2 && waiting(&config.spool_dir) == 0).then_some(())
    })
    .await;
    let rejected = metrics.failures.get_or_create(&vec![("kind".to_owned(), "rejected".to_owned())]).get();
    assert_eq!(rejected, 1);
    recorder.shutdown().await;
    drop(reports);
    bus.delete_subscription(&topic).await.unwrap();
    let _ = std::fs::remove_dir_all(spool);
    let _ = std::fs::remove_dir_all(config.spool_dir);
}
