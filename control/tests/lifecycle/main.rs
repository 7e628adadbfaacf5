//! Deletions under faults and replicas, each scenario alone (this binary runs one at a time, and no other
//! control node shares the database while it runs): a control node killed with SIGKILL in the middle of a large
//! deletion, an object store frozen with SIGSTOP during another, and two replicas racing for the same queue.
//! Afterwards every deletion is carried out, nothing a recording still refers to is deleted, and nothing is left.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use bytes::Bytes;
use chrono::{TimeDelta, Utc};
use livemix_common::{management_api::NewSource, model::SegmentInfo, store::ObjectStore};
use livemix_control::db::Db;
use livemix_testkit::{
    control::{ControlNode, s3},
    env, eventually_within, http, service_env, unique,
};
use serde_json::Value;
use tokio::sync::Mutex;

/// One scenario at a time: they stop shared services and count every deletion.
static SERIAL: Mutex<()> = Mutex::const_new(());
/// Time for the queue to drain on a loaded machine, and for a thawed S3 to answer again.
const HEAL: Duration = Duration::from_secs(240);

fn services(args: &[&str]) -> bool {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/services.sh");
    Command::new("bash").arg(script).args(args).status().is_ok_and(|s| s.success())
}

/// Resumes the frozen S3 server even when the test fails while it is frozen.
struct FrozenS3;

impl FrozenS3 {
    fn new() -> Self {
        assert!(services(&["signal", "s3", "STOP"]), "freezing s3");
        Self
    }
}

impl Drop for FrozenS3 {
    fn drop(&mut self) {
        services(&["signal", "s3", "CONT"]);
    }
}

/// A source with two overlapping recordings: `doomed` has `only` segments of its own and `shared` ones with
/// `kept`. Rows are written straight into the index (what the inbox would write), objects into S3.
struct Fixture {
    doomed: String,
    kept: String,
    only: Vec<SegmentInfo>,
    shared: Vec<SegmentInfo>,
}

impl Fixture {
    async fn new(only: usize, shared: usize) -> Self {
        let db = Db::connect(&env("DATABASE_URL"), 4, Duration::from_secs(30)).await.expect("PostgreSQL");
        let new = NewSource {
            name: unique("cam"),
            segment_len: 2,
            description: None,
            owner: None,
            retention: None,
            edge: None,
            recording: None,
        };
        let source = db.create_source(&new).await.unwrap().id;
        let doomed = db.create_recording(source, None, None, Utc::now()).await.unwrap().id;
        let kept = db.create_recording(source, None, None, Utc::now()).await.unwrap().id;
        db.stop_recording(&doomed).await.unwrap();
        let store = s3().await;
        let run = ulid::Ulid::new();
        let start = Utc::now() - TimeDelta::hours(1);
        let mut segments = Vec::new();
        for seq in 0..(only + shared) as i64 {
            let key = format!("recordings/{source}/{run}/{seq:012}.ts");
            let data = Bytes::from(format!("{key} bytes"));
            let start_ts = start + TimeDelta::seconds(2 * seq);
            let info = SegmentInfo {
                name: format!("index{seq}.ts"),
                source,
                run: Some(run),
                seq,
                discontinuity: false,
                start_ts,
                end_ts: start_ts + TimeDelta::seconds(2),
                length_ms: 2000,
                size: data.len() as i64,
                uri: key.clone(),
                sha256: None,
            };
            let owners = if (seq as usize) < only { vec![doomed.clone()] } else { vec![doomed.clone(), kept.clone()] };
            db.add_recorded_segment(&owners, &info).await.unwrap();
            segments.push((info, data));
        }
        // Upload concurrently: thousands of objects one after another take minutes on moto.
        futures::future::join_all(segments.chunks(100).map(|chunk| {
            let store = store.clone();
            async move {
                for (info, data) in chunk {
                    store.put(&info.uri, data.clone()).await.unwrap();
                }
            }
        }))
        .await;
        let infos: Vec<SegmentInfo> = segments.into_iter().map(|(info, _)| info).collect();
        let (only_infos, shared_infos) = infos.split_at(only);
        Self { doomed, kept, only: only_infos.to_vec(), shared: shared_infos.to_vec() }
    }

    /// How many of `segments`' objects are still in the bucket, by listing their prefix (a few requests, where
    /// reading each would flood the server).
    async fn present(segments: &[SegmentInfo]) -> usize {
        let Some(first) = segments.first() else { return 0 };
        let prefix = format!("recordings/{}/", first.source);
        let store = s3().await;
        let mut listed = std::collections::HashSet::new();
        let mut after: Option<String> = None;
        loop {
            let page = store.list(&prefix, after.as_deref(), 1000).await.expect("listing the bucket");
            let Some(last) = page.last() else { break };
            after = Some(last.key.clone());
            listed.extend(page.into_iter().map(|object| object.key));
        }
        segments.iter().filter(|info| listed.contains(&info.uri)).count()
    }

    /// Waits until every object of `doomed` alone is gone, then checks the shared ones all stayed.
    async fn settled(&self) {
        let only = &self.only;
        eventually_within("every deletion to be carried out", HEAL, || async move {
            (Self::present(only).await == 0).then_some(())
        })
        .await;
        assert_eq!(Self::present(&self.shared).await, self.shared.len(), "nothing a recording refers to was deleted");
        assert_eq!(self.kept_segments().await, self.shared.len());
    }

    async fn kept_segments(&self) -> usize {
        let db = Db::connect(&env("DATABASE_URL"), 1, Duration::from_secs(30)).await.unwrap();
        db.recording_segments(&self.kept).await.unwrap().len()
    }
}

async fn delete(management: &str, recording: &str) -> Value {
    let resp = http().delete(format!("{management}/v1/recording/{recording}")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// A control node as its own process, so it can be killed.
struct Process {
    child: tokio::process::Child,
    management: String,
}

impl Process {
    async fn start(log: &str, extra: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let topic = unique("ctl");
        let log = std::fs::File::create(std::env::temp_dir().join(format!("{log}.log"))).unwrap();
        let mut cmd = tokio::process::Command::new(PathBuf::from(env!("CARGO_BIN_EXE_livemix-control")));
        cmd.envs(service_env());
        cmd.args([
            format!("--management-addr=127.0.0.1:{port}"),
            "--vod-addr=127.0.0.1:0".to_owned(),
            "--edge-api-addr=127.0.0.1:0".to_owned(),
            "--edge-token=lifecycle-test-token".to_owned(),
            format!("--control-topic={topic}"),
            format!("--control-subscription={topic}"),
            format!("--reply-topic={}", unique("reply")),
            format!("--reply-subscription={}", unique("reply")),
            "--broadcast-topic=".to_owned(),
            "--create-topics".to_owned(),
            "--deletion-interval-secs=1".to_owned(),
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .kill_on_drop(true);
        let child = cmd.spawn().expect("livemix-control");
        let management = format!("http://127.0.0.1:{port}");
        let ready = format!("{management}/liveness/ready");
        eventually_within("the control node to be ready", Duration::from_secs(60), || async {
            http().get(&ready).send().await.ok().filter(|r| r.status().is_success()).map(|_| ())
        })
        .await;
        Self { child, management }
    }

    async fn metric(&self, name: &str) -> f64 {
        let text = http().get(format!("{}/metrics", self.management)).send().await.unwrap().text().await.unwrap();
        text.lines()
            .filter(|line| line.starts_with(name))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// SIGKILL: no shutdown, no cleanup.
    async fn kill(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
}

#[tokio::test]
async fn a_control_node_killed_mid_deletion_finishes_after_restart() {
    let _serial = SERIAL.lock().await;
    let fixture = Fixture::new(2500, 200).await;
    // Small batches, so the deletion takes long enough to be caught in the middle.
    let node = Process::start("lifecycle-kill-1", &["--deletion-batch-size=20"]).await;
    let deleted = delete(&node.management, &fixture.doomed).await;
    assert_eq!(deleted["deleted"]["objects_queued"], 2500);
    // Kill as soon as the first objects are gone: the rest of the queue is in the database only.
    let deadline = tokio::time::Instant::now() + HEAL;
    while node.metric("livemix_control_objects_deleted_total").await == 0.0 {
        assert!(tokio::time::Instant::now() < deadline, "no object was ever deleted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.kill().await;
    let left = Fixture::present(&fixture.only).await;
    eprintln!("killed with {left} of 2500 objects left");
    assert!(left > 0 && left < 2500, "killed in the middle of the deletion ({left} of 2500 left)");
    let node = Process::start("lifecycle-kill-2", &[]).await;
    fixture.settled().await;
    node.kill().await;
}

#[tokio::test]
async fn deletions_wait_out_a_frozen_object_store() {
    let _serial = SERIAL.lock().await;
    let fixture = Fixture::new(300, 50).await;
    let node = ControlNode::start(&["--deletion-interval-secs=1"]).await;
    {
        let _frozen = FrozenS3::new();
        let resp = http().delete(node.mgmt(&format!("/v1/recording/{}", fixture.doomed))).send().await.unwrap();
        assert_eq!(resp.status(), 200, "the delete itself needs only the database");
        tokio::time::sleep(Duration::from_secs(20)).await;
        let db = Db::connect(&env("DATABASE_URL"), 1, Duration::from_secs(30)).await.unwrap();
        let keys: Vec<String> = fixture.only.iter().map(|i| i.uri.clone()).collect();
        let pending = db.pending_keys(&keys).await.unwrap().len();
        assert_eq!(pending, keys.len(), "every deletion is still recorded while S3 is away");
    }
    fixture.settled().await;
}

#[tokio::test]
async fn two_replicas_delete_each_object_once() {
    let _serial = SERIAL.lock().await;
    let fixture = Fixture::new(1500, 10).await;
    let a = ControlNode::start(&["--deletion-interval-secs=1"]).await;
    let mut settings = a.settings.clone();
    settings.reply_subscription = Some(unique("reply"));
    let b = ControlNode::start_sharing(settings, a.store.clone()).await;
    let resp = http().delete(b.mgmt(&format!("/v1/recording/{}", fixture.doomed))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // Both replicas' workers race for the queue, woken by hand too.
    let (ra, rb) = tokio::join!(
        http().post(a.mgmt("/v1/storage/deletions")).send(),
        http().post(b.mgmt("/v1/storage/deletions")).send()
    );
    assert_eq!((ra.unwrap().status().as_u16(), rb.unwrap().status().as_u16()), (200, 200));
    fixture.settled().await;
    let deletes = a.store.deletes();
    let twice: Vec<_> = fixture.only.iter().filter(|i| deletes.get(&i.uri) != Some(&1)).map(|i| &i.uri).collect();
    assert!(twice.is_empty(), "{} objects not deleted exactly once, e.g. {:?}", twice.len(), twice.first());
    assert!(fixture.shared.iter().all(|i| !deletes.contains_key(&i.uri)));
}
