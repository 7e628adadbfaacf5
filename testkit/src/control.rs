//! A real control node in the test process, on the real PostgreSQL, memcached, S3 and Pub/Sub emulator, on
//! ephemeral ports and with topics of its own, so tests run side by side.

use std::{
    collections::HashMap,
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
    store::{
        ObjectInfo, ObjectStore, SharedStore, StoreError,
        s3::{S3Config, S3Store},
    },
};
use livemix_control::{Backends, Listeners, config::Settings, db::Db};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{env, http, unique};

/// The edge-facing token of every test control node.
pub const EDGE_TOKEN: &str = "test-edge-token";

#[derive(Parser)]
struct SettingsOnly {
    #[command(flatten)]
    settings: Settings,
}

/// Control-node settings exactly as the binary parses these flags (plus the test edge token).
pub fn settings(flags: &[String]) -> Settings {
    let mut argv = vec!["livemix-control".to_owned(), format!("--edge-token={EDGE_TOKEN}")];
    argv.extend(flags.iter().cloned());
    SettingsOnly::parse_from(argv).settings
}

/// The object store with a count of reads per key, to prove that concurrent misses make one read.
pub struct CountingStore {
    inner: SharedStore,
    reads: Mutex<HashMap<String, usize>>,
    total: AtomicUsize,
    deletes: Mutex<HashMap<String, usize>>,
}

impl CountingStore {
    pub fn reads_of(&self, key: &str) -> usize {
        self.reads.lock().get(key).copied().unwrap_or(0)
    }

    pub fn total_reads(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    /// How many times each key was deleted.
    pub fn deletes(&self) -> HashMap<String, usize> {
        self.deletes.lock().clone()
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        self.inner.put(key, data).await
    }
    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        *self.reads.lock().entry(key.to_owned()).or_default() += 1;
        self.total.fetch_add(1, Ordering::SeqCst);
        // Slow enough that concurrent misses really overlap.
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.inner.get(key).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        *self.deletes.lock().entry(key.to_owned()).or_default() += 1;
        self.inner.delete(key).await
    }
    async fn delete_many(&self, keys: &[String]) -> Vec<Result<(), StoreError>> {
        {
            let mut deletes = self.deletes.lock();
            for key in keys {
                *deletes.entry(key.clone()).or_default() += 1;
            }
        }
        self.inner.delete_many(keys).await
    }
    async fn list(&self, prefix: &str, after: Option<&str>, max: usize) -> Result<Vec<ObjectInfo>, StoreError> {
        self.inner.list(prefix, after, max).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

/// Connects to the real Pub/Sub emulator named by `scripts/services.sh env`.
pub async fn pubsub() -> SharedBus {
    Arc::new(
        PubSubBus::connect(PubSubConfig {
            project: env("PUBSUB_PROJECT_ID"),
            emulator_host: Some(env("PUBSUB_EMULATOR_HOST")),
            endpoint: None,
        })
        .await
        .expect("Pub/Sub emulator"),
    )
}

/// Connects to the real S3 server named by `scripts/services.sh env`.
pub async fn s3() -> S3Store {
    S3Store::connect(S3Config {
        bucket: env("LIVEMIX_BUCKET"),
        endpoint: Some(env("S3_ENDPOINT")),
        region: env("AWS_REGION"),
        create_bucket: true,
    })
    .await
    .expect("S3")
}

/// A control node running in this process.
pub struct ControlNode {
    pub management: String,
    pub vod: String,
    pub edge_api: String,
    pub settings: Settings,
    pub store: Arc<CountingStore>,
    pub cache: SharedCache,
    pub bus: SharedBus,
    stop: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl ControlNode {
    /// Starts a control node with topics of its own and these extra flags.
    pub async fn start(extra_flags: &[&str]) -> Self {
        let control_topic = unique("ctl");
        let mut flags = vec![
            format!("--control-topic={control_topic}"),
            format!("--control-subscription={control_topic}"),
            format!("--reply-topic={}", unique("reply")),
            format!("--reply-subscription={}", unique("reply")),
            "--broadcast-topic=".to_owned(),
        ];
        flags.extend(extra_flags.iter().map(|f| (*f).to_owned()));
        Self::start_with(settings(&flags)).await
    }

    /// Starts a control node with exactly these settings (e.g. those of a node that was stopped).
    pub async fn start_with(settings: Settings) -> Self {
        let store = Arc::new(CountingStore {
            inner: Arc::new(s3().await),
            reads: Mutex::default(),
            total: AtomicUsize::new(0),
            deletes: Mutex::default(),
        });
        Self::start_sharing(settings, store).await
    }

    /// Starts a control node on `store`, e.g. another replica's, to count what both do to it.
    pub async fn start_sharing(settings: Settings, store: Arc<CountingStore>) -> Self {
        let db = Db::connect(&env("DATABASE_URL"), 5, settings.reachable_within()).await.expect("PostgreSQL");
        let cache: SharedCache = Arc::new(MemcachedCache::connect(&env("MEMCACHED_URL")).expect("memcached"));
        let bus = pubsub().await;
        let bus_args = BusArgs {
            pubsub_project: env("PUBSUB_PROJECT_ID"),
            pubsub_emulator_host: Some(env("PUBSUB_EMULATOR_HOST")),
            pubsub_endpoint: None,
            create_topics: true,
            in_process_bus: false,
        };
        livemix_control::prepare_topics(&bus_args, &bus, &settings).await.expect("topics");
        let listen = || async { TcpListener::bind("127.0.0.1:0").await.expect("bind") };
        let listeners = Listeners { management: listen().await, vod: listen().await, edge: listen().await };
        let url = |l: &TcpListener| format!("http://{}", l.local_addr().expect("local address"));
        let (management, vod, edge_api) = (url(&listeners.management), url(&listeners.vod), url(&listeners.edge));
        let backends = Backends { db, cache: cache.clone(), store: store.clone(), bus: bus.clone() };
        let stop = CancellationToken::new();
        let task =
            tokio::spawn(livemix_control::serve(settings.clone(), backends, listeners, stop.clone().cancelled_owned()));
        let node = Self { management, vod, edge_api, settings, store, cache, bus, stop, task: Some(task) };
        node.wait_ready().await;
        node
    }

    async fn wait_ready(&self) {
        for _ in 0..100 {
            let ready = http().get(format!("{}/liveness/ready", self.management)).send().await;
            if ready.is_ok_and(|resp| resp.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the control node never became ready");
    }

    /// Stops the node, waits until it has shut down and returns its settings (to start it again).
    pub async fn stop(mut self) -> Settings {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("control task").expect("control node exited with an error");
        }
        self.settings.clone()
    }

    pub fn mgmt(&self, path: &str) -> String {
        format!("{}{path}", self.management)
    }

    pub fn control_topic(&self) -> &str {
        &self.settings.control_topic
    }

    /// Registers a source through the management API (no management token) and returns its JSON.
    pub async fn create_source(&self, name: &str, segment_len: i64) -> Value {
        let resp = http()
            .post(self.mgmt("/v1/source"))
            .json(&serde_json::json!({"name": name, "segment_len": segment_len, "description": "test"}))
            .send()
            .await
            .expect("create source");
        assert_eq!(resp.status(), 200);
        resp.json::<Value>().await.expect("JSON")["source"].clone()
    }

    /// Reports status for a source as its edge would: it becomes reachable, with `rr_target` as its edge.
    pub async fn edge_report(&self, source_id: &str, rr_target: &str) -> reqwest::Response {
        http()
            .post(format!("{}/v1/source/{source_id}/status", self.edge_api))
            .bearer_auth(EDGE_TOKEN)
            .json(&serde_json::json!({"rr_target_id": rr_target, "local_timestamp": chrono::Utc::now()}))
            .send()
            .await
            .expect("edge status report")
    }
}

impl Drop for ControlNode {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
