//! The control node's test support: the shared testkit, plus an edge played by the test.

use std::sync::Arc;

use bytes::Bytes;
use livemix_common::{
    bus::Delivery,
    messages::{Envelope, Message},
    rpc::respond,
    segment::SegmentRecord,
};
pub use livemix_testkit::{
    control::{ControlNode, EDGE_TOKEN},
    eventually, http,
    media::{ffmpeg_segments, ffprobe},
    unique,
};
use tokio::{
    sync::{Mutex, mpsc},
    task::JoinHandle,
};

/// An edge played by the test: it reports status over HTTP, and answers (or ignores) the commands arriving on its
/// own Pub/Sub topic.
pub struct FakeEdge {
    pub topic: String,
    pub received: Arc<Mutex<Vec<Message>>>,
    _task: JoinHandle<()>,
}

impl FakeEdge {
    pub async fn start(node: &ControlNode, answer: bool) -> Self {
        let topic = unique("edge");
        node.bus.ensure_topic(&topic).await.unwrap();
        node.bus.ensure_subscription(&topic, &topic).await.unwrap();
        let mut inbox: mpsc::Receiver<Delivery> = node.bus.subscribe(&topic).await.unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let bus = node.bus.clone();
        let task = tokio::spawn(async move {
            while let Some(delivery) = inbox.recv().await {
                log.lock().await.push(delivery.envelope.body.clone());
                if answer {
                    respond(&bus, &delivery.envelope, Ok(())).await.unwrap();
                }
                delivery.ack();
            }
        });
        Self { topic, received, _task: task }
    }

    /// A new source this edge serves, reported and streaming: what live playback needs.
    pub async fn streaming_source(node: &ControlNode) -> (String, Self) {
        let source = node.create_source(&unique("cam"), 1).await;
        let sid = source["id"].as_str().unwrap().to_owned();
        let edge = Self::start(node, true).await;
        assert_eq!(edge.report(node, &sid).await.status(), 200);
        let resp = http().put(node.mgmt(&format!("/v1/source/{sid}/streaming?new_state=true"))).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        (sid, edge)
    }

    pub async fn report(&self, node: &ControlNode, source_id: &str) -> reqwest::Response {
        node.edge_report(source_id, &self.topic).await
    }

    /// Waits until a message matching `pred` arrived.
    pub async fn wait_for(&self, pred: impl Fn(&Message) -> bool) -> Message {
        let received = &self.received;
        let pred = &pred;
        eventually("the edge to receive the expected message", || async move {
            received.lock().await.iter().find(|m| pred(m)).cloned()
        })
        .await
    }
}

/// Forwards one live segment as an edge does.
pub async fn forward_segment(
    node: &ControlNode,
    source_id: &str,
    name: &str,
    seq: u64,
    data: Bytes,
) -> reqwest::Response {
    http()
        .post(format!("{}/v1/new-segment", node.edge_api))
        .bearer_auth(EDGE_TOKEN)
        .header("Source-ID", source_id)
        .header("Segment-Name", name)
        .header("Segment-Seq", seq.to_string())
        .header("Segment-Start-TS", format!("{:.3}", chrono::Utc::now().timestamp_millis() as f64 / 1000.0))
        .header("Segment-Length-MSec", "1000")
        .body(data)
        .send()
        .await
        .unwrap()
}

/// Forwards one live segment as the current edge does: its record in the headers (`Segment-Run` included).
pub async fn forward_record(node: &ControlNode, record: &SegmentRecord, data: Bytes) -> reqwest::Response {
    http()
        .post(format!("{}/v1/new-segment", node.edge_api))
        .bearer_auth(EDGE_TOKEN)
        .headers(record.to_headers().unwrap())
        .body(data)
        .send()
        .await
        .unwrap()
}

/// Publishes a message to the control node's topic, as an edge does after uploading a recorded segment.
pub async fn publish_to_control(node: &ControlNode, body: Message) {
    node.bus.publish(node.control_topic(), &Envelope::new(body)).await.unwrap();
}
