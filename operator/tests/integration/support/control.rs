//! A real control node, in this process, on the real backing services (`scripts/services.sh`), as the control
//! node's own integration tests run it.

use std::{sync::Arc, time::Duration};

use clap::Parser;
use livemix_common::{
    bus::{
        BusArgs, SharedBus,
        pubsub::{PubSubBus, PubSubConfig},
    },
    cache::{SharedCache, memcached::MemcachedCache},
    store::{
        SharedStore,
        s3::{S3Config, S3Store},
    },
};
use livemix_control::{Backends, Listeners, config::Settings, db::Db};
use livemix_operator::ControlClient;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use super::unique;

/// The management token every test control node requires; the operator must send it.
pub const MANAGEMENT_TOKEN: &str = "operator-test-token";
const EDGE_TOKEN: &str = "operator-test-edge-token";

/// A backing-service setting from `scripts/services.sh env`; a missing one fails the test loudly.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests drive a real control node on the real services; start them and load \
             their settings with `scripts/services.sh up && eval \"$(scripts/services.sh env)\"`"
        )
    })
}

#[derive(Parser)]
struct SettingsOnly {
    #[command(flatten)]
    settings: Settings,
}

pub struct ControlNode {
    /// Root URL of the management API.
    pub management: String,
    pub edge_api: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl ControlNode {
    /// Starts a control node with topics of its own, requiring [`MANAGEMENT_TOKEN`]. Edge commands time out
    /// after a second, so a silent edge is quick to notice.
    pub async fn start() -> Self {
        let control_topic = unique("ctl");
        let settings = SettingsOnly::parse_from([
            "livemix-control".to_owned(),
            format!("--edge-token={EDGE_TOKEN}"),
            format!("--management-token={MANAGEMENT_TOKEN}"),
            format!("--control-topic={control_topic}"),
            format!("--control-subscription={control_topic}"),
            format!("--reply-topic={}", unique("reply")),
            "--broadcast-topic=".to_owned(),
            "--command-timeout-ms=1000".to_owned(),
        ])
        .settings;
        let db = Db::connect(&env("DATABASE_URL"), 5, settings.reachable_within()).await.expect("PostgreSQL");
        let cache: SharedCache = Arc::new(MemcachedCache::connect(&env("MEMCACHED_URL")).expect("memcached"));
        let store: SharedStore = Arc::new(
            S3Store::connect(S3Config {
                bucket: env("LIVEMIX_BUCKET"),
                endpoint: Some(env("S3_ENDPOINT")),
                region: env("AWS_REGION"),
                create_bucket: true,
            })
            .await
            .expect("S3"),
        );
        let bus: SharedBus = Arc::new(
            PubSubBus::connect(PubSubConfig {
                project: env("PUBSUB_PROJECT_ID"),
                emulator_host: Some(env("PUBSUB_EMULATOR_HOST")),
                endpoint: None,
            })
            .await
            .expect("Pub/Sub emulator"),
        );
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
        let (management, edge_api) = (url(&listeners.management), url(&listeners.edge));
        let (stop, stopped) = oneshot::channel::<()>();
        let task =
            tokio::spawn(livemix_control::serve(settings, Backends { db, cache, store, bus }, listeners, async {
                let _ = stopped.await;
            }));
        let node = Self { management, edge_api, stop: Some(stop), task: Some(task) };
        node.wait_ready().await;
        node
    }

    async fn wait_ready(&self) {
        let client = self.client();
        for _ in 0..100 {
            if client.ready().await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the control node never became ready");
    }

    /// The operator's management-API client, with the right token.
    pub fn client(&self) -> ControlClient {
        ControlClient::new(&self.management, Some(MANAGEMENT_TOKEN.into()), Duration::from_secs(15))
            .expect("control client")
    }

    /// Reports status for a source as its edge would, making it reachable and naming `rr_target` as its edge.
    pub async fn edge_report(&self, source_id: uuid::Uuid, rr_target: &str) {
        let response = reqwest::Client::new()
            .post(format!("{}/v1/source/{source_id}/status", self.edge_api))
            .bearer_auth(EDGE_TOKEN)
            .json(&serde_json::json!({"rr_target_id": rr_target, "local_timestamp": chrono::Utc::now()}))
            .send()
            .await
            .expect("edge status report");
        assert!(response.status().is_success(), "edge status report: {}", response.status());
    }

    /// Stops the node and waits until it has shut down.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("control task").expect("control node exited with an error");
        }
    }
}

impl Drop for ControlNode {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
