//! High availability against the real API server: two `livemix-operator` processes (the real binary) compete for
//! the Lease; exactly one leads and reconciles, the other is a Ready follower. SIGKILL of the leader: the follower
//! takes the Lease within the lease duration and the resources keep reconciling.

use std::{
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams};
use livemix_operator::crd::VideoSource;
use serde_json::json;
use tokio::process::{Child, Command};

use crate::support::{Fixture, USER, VOD_URL, control::MANAGEMENT_TOKEN, eventually, ready, unique, wait_source};

const LEASE: &str = "livemix-operator";
const LEASE_DURATION_SECS: u64 = 6;
const LEASE_GRACE_SECS: u64 = 2;

/// One `livemix-operator` process with leader election on, its logs in a file.
struct Replica {
    name: String,
    child: Child,
    http: String,
    log: PathBuf,
}

impl Replica {
    fn start(name: &str, namespace: &str, control_url: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::env::temp_dir().join(format!("{namespace}-{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_livemix-operator"))
            .args([
                &format!("--http-addr=127.0.0.1:{port}"),
                &format!("--control-url={control_url}"),
                &format!("--vod-public-url={VOD_URL}"),
                &format!("--namespace={namespace}"),
                &format!("--instance={name}"),
                "--leader-elect",
                &format!("--lease-namespace={namespace}"),
                &format!("--lease-duration-secs={LEASE_DURATION_SECS}"),
                &format!("--lease-grace-secs={LEASE_GRACE_SECS}"),
                "--backoff-base-ms=200",
                "--backoff-max-secs=2",
                "--log=info",
            ])
            .env("LIVEMIX_MANAGEMENT_TOKEN", MANAGEMENT_TOKEN)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .expect("start livemix-operator");
        Self { name: name.to_owned(), child, http: format!("http://127.0.0.1:{port}"), log }
    }

    /// `/ready`'s status code and role.
    async fn ready(&self) -> Result<(u16, String), String> {
        let response = reqwest::get(format!("{}/ready", self.http)).await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
        Ok((status, body["role"].as_str().unwrap_or_default().to_owned()))
    }

    async fn leader_gauge(&self) -> Result<String, String> {
        let text = reqwest::get(format!("{}/metrics", self.http))
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        text.lines()
            .find_map(|l| l.strip_prefix("livemix_operator_leader "))
            .map(str::to_owned)
            .ok_or_else(|| "no leader gauge".into())
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

async fn holder(leases: &Api<Lease>) -> Result<String, String> {
    let lease = leases.get_opt(LEASE).await.map_err(|e| e.to_string())?.ok_or("no Lease yet")?;
    lease.spec.and_then(|s| s.holder_identity).filter(|h| !h.is_empty()).ok_or_else(|| "no holder".into())
}

fn source(name: &str, streaming: bool) -> Patch<serde_json::Value> {
    Patch::Apply(json!({"apiVersion": "livemix.io/v1alpha1", "kind": "VideoSource", "metadata": {"name": name},
                        "spec": {"segmentLength": 2, "streaming": streaming}}))
}

fn streaming(want: bool) -> impl Fn(&VideoSource) -> Result<(), String> {
    move |vs| {
        let status = vs.status.as_ref().unwrap();
        ready(&status.conditions)?;
        if status.streaming == want { Ok(()) } else { Err(format!("streaming is not {want}")) }
    }
}

#[tokio::test]
async fn one_replica_leads_and_the_other_takes_over_when_it_is_killed() {
    let Fixture { client, ns, node, settings: _ } = Fixture::new().await;
    let leases: Api<Lease> = ns.api();
    let sources: Api<VideoSource> = ns.api();
    let user = PatchParams::apply(USER);
    let mut replicas =
        vec![Replica::start("op-a", &ns.name, &node.management), Replica::start("op-b", &ns.name, &node.management)];

    // Exactly one leads: it holds the Lease, says so on /ready and in its gauge; the other is a Ready follower.
    let held = eventually("a Lease holder", || holder(&leases)).await;
    let leader = replicas.iter().position(|r| held.starts_with(&format!("{}_", r.name))).unwrap_or_else(|| {
        panic!("holder {held:?} is neither replica; logs:\n{}\n{}", replicas[0].logs(), replicas[1].logs())
    });
    let follower = 1 - leader;
    eventually("the leader Ready, the follower Ready as follower", || async {
        let (l, f) = (replicas[leader].ready().await?, replicas[follower].ready().await?);
        if l == (200, "leader".into()) && f == (200, "follower".into()) {
            Ok(())
        } else {
            Err(format!("leader {l:?}, follower {f:?}"))
        }
    })
    .await;
    assert_eq!(replicas[leader].leader_gauge().await.unwrap(), "1");
    assert_eq!(replicas[follower].leader_gauge().await.unwrap(), "0");

    let (lobby, door) = (unique("lobby"), unique("door"));
    sources.patch(&lobby, &user, &source(&lobby, true)).await.unwrap();
    let id = wait_source(&sources, &lobby, streaming(true)).await.source_id();
    assert_eq!(holder(&leases).await.unwrap(), held, "leadership stays put while the leader lives");
    assert!(!replicas[follower].logs().contains("reconcile failed"), "the follower reconciles nothing");

    // SIGKILL: no release of the Lease, the follower must wait for it to expire.
    let killed = Instant::now();
    replicas[leader].child.start_kill().expect("SIGKILL the leader");
    replicas[leader].child.wait().await.expect("the leader exits");
    let new_holder = eventually("the follower takes the Lease", || async {
        let now = holder(&leases).await?;
        if now != held { Ok(now) } else { Err(format!("still held by {now}")) }
    })
    .await;
    let takeover = killed.elapsed();
    assert!(new_holder.starts_with(&format!("{}_", replicas[follower].name)), "{new_holder}");
    println!("takeover after SIGKILL of the leader: {takeover:?} (lease duration {LEASE_DURATION_SECS} s)");
    // The crate waits out the Lease, then pauses up to 1 s to avoid collisions; 1 s more for polling.
    assert!(
        takeover <= Duration::from_secs(LEASE_DURATION_SECS + 2),
        "took {takeover:?}, lease duration {LEASE_DURATION_SECS} s; logs:\n{}",
        replicas[follower].logs()
    );
    eventually("the new leader Ready", || async {
        match replicas[follower].ready().await? {
            (200, role) if role == "leader" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // The new leader reconciles a change of an existing resource and a new one.
    sources.patch(&lobby, &user, &source(&lobby, false)).await.unwrap();
    sources.patch(&door, &user, &source(&door, true)).await.unwrap();
    let vs = wait_source(&sources, &lobby, streaming(false)).await;
    assert_eq!(vs.source_id(), id, "the same control-node source");
    wait_source(&sources, &door, streaming(true)).await;
    let sources_in_control = node.client().list_sources().await.unwrap();
    for name in [&lobby, &door] {
        assert_eq!(sources_in_control.iter().filter(|s| &s.name == name).count(), 1, "{name}: once in control");
    }

    // A graceful stop of the new leader (SIGTERM) releases the Lease at once.
    let survivor = &mut replicas[follower];
    let pid = survivor.child.id().expect("running");
    let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), survivor.child.wait()).await.expect("stops").unwrap();
    assert!(exit.success(), "a shutdown exits 0: {exit:?}; logs:\n{}", survivor.logs());
    eventually("the Lease released on shutdown", || async {
        match holder(&leases).await {
            Err(why) if why == "no holder" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    drop(replicas);
    let _ = client;
    ns.delete().await;
    node.stop().await;
}
