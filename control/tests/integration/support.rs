//! Real control nodes on the real backing services, and an edge played by the test.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use bytes::Bytes;
use clap::Parser;
use livemix_common::{
    bus::{
        BusArgs, SharedBus,
        pubsub::{PubSubBus, PubSubConfig},
    },
    cache::{SharedCache, memcached::MemcachedCache},
    messages::{Envelope, Message},
    rpc::respond,
    store::{
        ObjectStore, SharedStore, StoreError,
        s3::{S3Config, S3Store},
    },
};
use livemix_control::{Backends, Listeners, config::Settings, db::Db};
use serde_json::Value;
use tokio::{
    net::TcpListener,
    sync::{Mutex, OnceCell, mpsc, oneshot},
    task::JoinHandle,
};
use uuid::Uuid;

pub const EDGE_TOKEN: &str = "test-edge-token";

/// A backing-service setting from `scripts/services.sh env`; a missing one fails the test loudly.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: start the services and load their settings with `eval \"$(scripts/services.sh env)\"`"
        )
    })
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &Uuid::new_v4().simple().to_string()[..12])
}

#[derive(Parser)]
struct SettingsOnly {
    #[command(flatten)]
    settings: Settings,
}

/// Control-node settings as the binary would parse them from these flags.
pub fn settings(flags: &[&str]) -> Settings {
    let mut argv = vec!["livemix-control".to_string(), format!("--edge-token={EDGE_TOKEN}")];
    argv.extend(flags.iter().map(|f| f.to_string()));
    SettingsOnly::parse_from(argv).settings
}

/// Counts object-store reads per key, to prove the single-flight loader.
pub struct CountingStore {
    inner: SharedStore,
    pub reads: std::sync::Mutex<std::collections::HashMap<String, usize>>,
    pub total: AtomicUsize,
}

impl CountingStore {
    pub fn reads_of(&self, key: &str) -> usize {
        self.reads.lock().unwrap().get(key).copied().unwrap_or(0)
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        self.inner.put(key, data).await
    }
    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        *self.reads.lock().unwrap().entry(key.to_owned()).or_default() += 1;
        self.total.fetch_add(1, Ordering::SeqCst);
        // Slow enough that concurrent misses really overlap.
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.inner.get(key).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

pub struct Services {
    pub db: Db,
    pub cache: SharedCache,
    pub store: Arc<CountingStore>,
    pub bus: SharedBus,
}

pub async fn services(settings: &Settings) -> Services {
    let db = Db::connect(&env("DATABASE_URL"), 5, settings.reachable_within()).await.expect("PostgreSQL");
    let cache: SharedCache = Arc::new(MemcachedCache::connect(&env("MEMCACHED_URL")).expect("memcached"));
    let s3 = S3Store::connect(S3Config {
        bucket: env("LIVEMIX_BUCKET"),
        endpoint: Some(env("S3_ENDPOINT")),
        region: env("AWS_REGION"),
        create_bucket: true,
    })
    .await
    .expect("S3");
    let store = Arc::new(CountingStore { inner: Arc::new(s3), reads: Default::default(), total: AtomicUsize::new(0) });
    let bus: SharedBus = Arc::new(
        PubSubBus::connect(PubSubConfig {
            project: env("PUBSUB_PROJECT_ID"),
            emulator_host: Some(env("PUBSUB_EMULATOR_HOST")),
            endpoint: None,
        })
        .await
        .expect("Pub/Sub emulator"),
    );
    Services { db, cache, store, bus }
}

fn bus_args() -> BusArgs {
    BusArgs {
        pubsub_project: env("PUBSUB_PROJECT_ID"),
        pubsub_emulator_host: Some(env("PUBSUB_EMULATOR_HOST")),
        pubsub_endpoint: None,
        create_topics: true,
        in_process_bus: false,
    }
}

/// A control node running in this process on the real services, on ephemeral ports.
pub struct ControlNode {
    pub management: String,
    pub vod: String,
    pub edge_api: String,
    pub settings: Settings,
    pub store: Arc<CountingStore>,
    pub cache: SharedCache,
    pub bus: SharedBus,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl ControlNode {
    /// Starts a control node with its own topics.
    pub async fn start(extra_flags: &[&str]) -> Self {
        let control_topic = unique("ctl");
        let reply_topic = unique("reply");
        let mut flags = vec![
            format!("--control-topic={control_topic}"),
            format!("--control-subscription={control_topic}"),
            format!("--reply-topic={reply_topic}"),
            "--broadcast-topic=".to_string(),
        ];
        flags.extend(extra_flags.iter().map(|f| f.to_string()));
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        Self::start_with(settings(&flags)).await
    }

    /// Starts a control node with exactly these settings (e.g. the ones of a node that was stopped).
    pub async fn start_with(settings: Settings) -> Self {
        let svc = services(&settings).await;
        livemix_control::prepare_topics(&bus_args(), &svc.bus, &settings).await.expect("topics");
        let listen = || async { TcpListener::bind("127.0.0.1:0").await.expect("bind") };
        let listeners = Listeners { management: listen().await, vod: listen().await, edge: listen().await };
        let url = |l: &TcpListener| format!("http://{}", l.local_addr().unwrap());
        let (management, vod, edge_api) = (url(&listeners.management), url(&listeners.vod), url(&listeners.edge));
        let backends =
            Backends { db: svc.db, cache: svc.cache.clone(), store: svc.store.clone(), bus: svc.bus.clone() };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(livemix_control::serve(settings.clone(), backends, listeners, async {
            let _ = stopped.await;
        }));
        let node = Self {
            management,
            vod,
            edge_api,
            settings,
            store: svc.store,
            cache: svc.cache,
            bus: svc.bus,
            stop: Some(stop),
            task: Some(task),
        };
        node.wait_ready().await;
        node
    }

    async fn wait_ready(&self) {
        for _ in 0..100 {
            let ready = reqwest::get(format!("{}/liveness/ready", self.management)).await;
            if ready.is_ok_and(|resp| resp.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("control node never became ready");
    }

    /// Stops the node and waits until it has shut down.
    pub async fn stop(mut self) -> Settings {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("control task").expect("control node exited with an error");
        }
        self.settings.clone()
    }

    pub fn mgmt(&self, path: &str) -> String {
        format!("{}{path}", self.management)
    }

    /// Registers a source through the management API and returns its JSON.
    pub async fn create_source(&self, name: &str, segment_len: i64) -> Value {
        let resp = http()
            .post(self.mgmt("/v1/source"))
            .json(&serde_json::json!({"name": name, "segment_len": segment_len, "description": "test"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json::<Value>().await.unwrap()["source"].clone()
    }

    pub fn control_topic(&self) -> &str {
        &self.settings.control_topic
    }
}

impl Drop for ControlNode {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

/// An edge played by the test: it reports status over HTTP, forwards segments, and answers commands arriving
/// on its own Pub/Sub topic (or stays silent).
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
        let mut inbox: mpsc::Receiver<livemix_common::bus::Delivery> = node.bus.subscribe(&topic).await.unwrap();
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

    pub async fn report(&self, node: &ControlNode, source_id: &str) -> reqwest::Response {
        http()
            .post(format!("{}/v1/source/{source_id}/status", node.edge_api))
            .bearer_auth(EDGE_TOKEN)
            .json(&serde_json::json!({"rr_target_id": self.topic, "local_timestamp": chrono::Utc::now()}))
            .send()
            .await
            .unwrap()
    }

    /// Waits until a message matching `pred` arrived.
    pub async fn wait_for(&self, pred: impl Fn(&Message) -> bool) -> Message {
        for _ in 0..200 {
            if let Some(m) = self.received.lock().await.iter().find(|m| pred(m)) {
                return m.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the edge never received the expected message; got {:?}", self.received.lock().await);
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

/// Real MPEG-TS segments made by ffmpeg once per test run: ~1 s each, from the lavfi test source.
pub async fn ffmpeg_segments() -> &'static [(String, Bytes)] {
    static SEGMENTS: OnceCell<Vec<(String, Bytes)>> = OnceCell::const_new();
    SEGMENTS
        .get_or_init(|| async {
            let dir = std::env::temp_dir().join(unique("livemix-ffmpeg"));
            std::fs::create_dir_all(&dir).unwrap();
            let status = tokio::process::Command::new("ffmpeg")
                .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=320x180:rate=30"])
                .args(["-t", "8", "-c:v", "libx264", "-preset", "veryfast", "-g", "30", "-sc_threshold", "0"])
                .args(["-pix_fmt", "yuv420p", "-f", "hls", "-hls_time", "1", "-hls_list_size", "0"])
                .arg("-hls_segment_filename")
                .arg(dir.join("seg%d.ts"))
                .arg(dir.join("index.m3u8"))
                .status()
                .await
                .expect("ffmpeg must be installed (scripts/services.sh up installs it)");
            assert!(status.success(), "ffmpeg failed");
            let mut segments = Vec::new();
            for i in 0.. {
                let path: PathBuf = dir.join(format!("seg{i}.ts"));
                let Ok(data) = std::fs::read(&path) else {
                    break;
                };
                segments.push((format!("seg{i}.ts"), Bytes::from(data)));
            }
            assert!(segments.len() >= 6, "ffmpeg made {} segments", segments.len());
            segments
        })
        .await
}

/// Runs ffprobe on a URL and returns the number of decoded video frames and the duration it read.
pub async fn ffprobe_frames(url: &str) -> (u64, f64) {
    let out = tokio::process::Command::new("ffprobe")
        .args(["-v", "error", "-rw_timeout", "10000000", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames,codec_name:format=duration", "-of", "json", url])
        .output()
        .await
        .expect("ffprobe must be installed");
    assert!(out.status.success(), "ffprobe {url} failed: {}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let frames = json["streams"][0]["nb_read_frames"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
    let duration = json["format"]["duration"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0.0);
    (frames, duration)
}

/// Publishes a message to the control node's topic, as an edge does after uploading a recorded segment.
pub async fn publish_to_control(node: &ControlNode, body: Message) {
    node.bus.publish(node.control_topic(), &Envelope::new(body)).await.unwrap();
}

/// Polls `f` until it returns `Some`, for up to ~10 s.
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..100 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}
