//! What the real-API-server tests share: a client from KUBECONFIG, the CRDs installed from `crds/`, a fresh
//! namespace per test, the operator running in-process, a real control node, polling and kubectl.

#[path = "../../integration/support/control.rs"]
pub mod control;

use std::{
    fmt::Debug,
    future::Future,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::{core::v1::Namespace as K8sNamespace, events::v1::Event},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::apis::meta::v1::Condition,
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams},
    config::KubeConfigOptions,
};
use livemix_common::telemetry::{LogArgs, LogFormat, Metrics};
use livemix_operator::{
    Operator, RunError, Settings,
    crd::{Recording, VideoSource},
};
use tokio::{sync::oneshot, task::JoinHandle};

use self::control::{ControlNode, MANAGEMENT_TOKEN};

/// How to get the API server these tests need.
pub const HINT: &str = "these tests run against a real kube-apiserver: start it and load its settings with \
                        `bash scripts/k8s.sh up && eval \"$(bash scripts/k8s.sh env)\"`";
/// Field manager of the changes these tests make as a user would.
pub const USER: &str = "livemix-apiserver-test";
pub const VOD_URL: &str = "https://vod.example.com";
/// The longest wait for an eventual state; generous, since CI machines are small and shared.
const EVENTUALLY: Duration = Duration::from_secs(30);

pub use livemix_testkit::unique;

fn kubeconfig() -> String {
    match std::env::var("KUBECONFIG") {
        Ok(path) if !path.is_empty() => path,
        _ => panic!("KUBECONFIG is not set; {HINT}"),
    }
}

/// A client for the API server of `KUBECONFIG` (never in-cluster or `~/.kube/config`); fails loudly without it.
pub async fn client() -> Client {
    client_as(None).await
}

/// A client acting as the ServiceAccount `namespace/name` (impersonated by the KUBECONFIG's admin), when given.
pub async fn client_as(service_account: Option<(&str, &str)>) -> Client {
    // Logs of the operator and the control node, when asked for: `RUST_LOG=info cargo test ...`.
    if std::env::var_os("RUST_LOG").is_some() {
        livemix_common::telemetry::init_logging(&LogArgs { log_format: LogFormat::Text, log: "info".into() });
    }
    let path = kubeconfig();
    let mut config = kube::Config::from_kubeconfig(&KubeConfigOptions::default())
        .await
        .unwrap_or_else(|err| panic!("cannot read KUBECONFIG={path}: {err}; {HINT}"));
    if let Some((namespace, name)) = service_account {
        config.auth_info.impersonate = Some(format!("system:serviceaccount:{namespace}:{name}"));
        config.auth_info.impersonate_groups = Some(vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{namespace}"),
            "system:authenticated".into(),
        ]);
    }
    let client = Client::try_from(config).unwrap_or_else(|err| panic!("kube client for {path}: {err}"));
    client
        .apiserver_version()
        .await
        .unwrap_or_else(|err| panic!("the kube-apiserver of KUBECONFIG={path} does not answer: {err}; {HINT}"));
    client
}

fn repo_dir(sub: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(sub)
}

static CRDS: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

/// Installs `crds/*.yaml` with server-side apply, as `kubectl apply --server-side -f crds/` does, and waits until
/// the API server serves them. Once per test binary.
pub async fn install_crds(client: &Client) {
    CRDS.get_or_init(|| async {
        let api: Api<CustomResourceDefinition> = Api::all(client.clone());
        let mut names = Vec::new();
        for file in ["videosource.yaml", "recording.yaml"] {
            let path = repo_dir("crds").join(file);
            let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            let crd: CustomResourceDefinition = serde_yaml::from_str(&text).expect("a CRD");
            let name = crd.name_any();
            // kubectl's own field manager: a later `kubectl apply --server-side -f crds/` meets no conflict.
            api.patch(&name, &PatchParams::apply("kubectl").force(), &Patch::Apply(&crd))
                .await
                .unwrap_or_else(|err| panic!("the API server refuses crds/{file}: {err}"));
            names.push(name);
        }
        for name in names {
            let crd = eventually(&format!("CRD {name} Established"), || async {
                let crd = api.get(&name).await.map_err(|err| err.to_string())?;
                let conditions = crd.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
                let established = conditions.iter().any(|c| c.type_ == "Established" && c.status == "True");
                let accepted = conditions.iter().any(|c| c.type_ == "NamesAccepted" && c.status == "True");
                if established && accepted { Ok(crd) } else { Err(format!("conditions {conditions:?}")) }
            })
            .await;
            // CEL rules that do not compile or exceed the cost budget show up here, not at apply time.
            let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
            assert!(
                !conditions.iter().any(|c| c.type_ == "NonStructuralSchema" && c.status == "True"),
                "{name}: {conditions:?}"
            );
        }
        // Established, and served: a list works.
        eventually("the custom resources are served", || async {
            let vs: Api<VideoSource> = Api::all(client.clone());
            let rec: Api<Recording> = Api::all(client.clone());
            vs.list(&ListParams::default().limit(1)).await.map_err(|e| e.to_string())?;
            rec.list(&ListParams::default().limit(1)).await.map_err(|e| e.to_string())?;
            Ok(())
        })
        .await;
    })
    .await;
}

/// Polls `check` until it returns `Ok`, for up to 30 s; then fails with what it last saw.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if start.elapsed() > EVENTUALLY => {
                panic!("waited {EVENTUALLY:?} for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(150)).await,
        }
    }
}

/// A namespace of one test, with a unique name. [`TestNamespace::delete`] removes it at the end; a failed test
/// removes it too (finalizers stripped, since its operator is gone).
pub struct TestNamespace {
    pub name: String,
    client: Client,
    deleted: bool,
}

impl TestNamespace {
    pub async fn create(client: &Client) -> Self {
        let name = unique("lm-op");
        let ns = K8sNamespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([("app.kubernetes.io/part-of".to_owned(), "livemix-operator-tests".to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..K8sNamespace::default()
        };
        Api::<K8sNamespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|err| panic!("creating namespace {name}: {err}"));
        Self { name, client: client.clone(), deleted: false }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Deletes the namespace; resources still in it lose their finalizers first (their operator is stopped).
    pub async fn delete(mut self) {
        self.deleted = true;
        for vs in self.api::<VideoSource>().list(&ListParams::default()).await.expect("list").items {
            strip_finalizers(&self.api::<VideoSource>(), &vs.name_any()).await;
        }
        for rec in self.api::<Recording>().list(&ListParams::default()).await.expect("list").items {
            strip_finalizers(&self.api::<Recording>(), &rec.name_any()).await;
        }
        match Api::<K8sNamespace>::all(self.client.clone()).delete(&self.name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(err) => panic!("deleting namespace {}: {err}", self.name),
        }
    }
}

async fn strip_finalizers<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + Debug,
{
    let patch = serde_json::json!({"metadata": {"finalizers": null}});
    match api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(err) => panic!("removing the finalizers of {name}: {err}"),
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        // A failed test: clean up with kubectl, synchronously (the test's runtime is going away).
        let ns = self.name.as_str();
        let run = |args: &[&str]| kubectl_command(args).stderr(Stdio::null()).output();
        if let Ok(out) = run(&["get", "videosources,recordings", "-n", ns, "-o", "name"]) {
            for object in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = run(&["patch", "-n", ns, object, "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#]);
            }
        }
        let _ = run(&["delete", "namespace", ns, "--wait=false"]);
    }
}

/// The kubectl of `scripts/k8s.sh env` (first on PATH), against KUBECONFIG.
fn kubectl_command(args: &[&str]) -> Command {
    let mut command = Command::new("kubectl");
    command.args(args).env("KUBECONFIG", kubeconfig());
    command
}

/// Runs kubectl without blocking the test's runtime (the operator and the control node run on it), feeding it
/// `stdin`; returns (success, stdout, stderr).
pub async fn kubectl_with_input(args: &[&str], stdin: &str) -> (bool, String, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::from(kubectl_command(args))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run kubectl: {err}; {HINT}"));
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).await.expect("write to kubectl");
    drop(input);
    let out = child.wait_with_output().await.expect("kubectl output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// kubectl that must succeed; returns its stdout.
pub async fn kubectl_ok(args: &[&str]) -> String {
    let (ok, stdout, stderr) = kubectl_with_input(args, "").await;
    assert!(ok, "kubectl {args:?} failed: {stderr}");
    stdout
}

/// A control node on the real services, and the operator's settings for it, watching only `namespace`.
/// What most tests start from: CRDs installed, a namespace of their own, a control node, and operator settings
/// watching only that namespace. End with `ns.delete()` and `node.stop()`.
pub struct Fixture {
    pub client: Client,
    pub ns: TestNamespace,
    pub node: ControlNode,
    pub settings: Settings,
}

impl Fixture {
    pub async fn new() -> Self {
        let client = client().await;
        install_crds(&client).await;
        let ns = TestNamespace::create(&client).await;
        let (node, settings) = control_and_settings(&ns.name).await;
        Self { client, ns, node, settings }
    }
}

pub async fn control_and_settings(namespace: &str) -> (ControlNode, Settings) {
    let node = ControlNode::start().await;
    let mut settings = Settings::for_control(&node.management, Some(MANAGEMENT_TOKEN.into()));
    settings.namespace = Some(namespace.to_owned());
    settings.vod_public_url = Some(VOD_URL.into());
    settings.backoff_base_ms = 200;
    settings.backoff_max_secs = 2;
    settings.instance = Some(unique("operator-test"));
    (node, settings)
}

/// The operator running in this process, as `livemix-operator` runs it.
pub struct RunningOperator {
    metrics: Metrics,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), RunError>>>,
}

impl RunningOperator {
    /// Starts the operator with a kube client of its own, as a new process would have.
    pub async fn start(settings: Settings) -> Self {
        Self::start_with(client().await, settings)
    }

    pub fn start_with(client: Client, settings: Settings) -> Self {
        let metrics = Metrics::new("livemix_operator");
        let operator = Operator::new(client, settings, &metrics).expect("operator");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(operator.run(async {
            let _ = stopped.await;
        }));
        Self { metrics, stop: Some(stop), task: Some(task) }
    }

    /// How many reconciles of `kind` this operator finished (from its metrics).
    pub fn reconciles(&self, kind: &str) -> u64 {
        let line = format!("livemix_operator_reconcile_duration_seconds_count{{kind=\"{kind}\"}} ");
        let text = self.metrics.encode();
        text.lines().find_map(|l| l.strip_prefix(&line)).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
    }

    /// Waits until this operator finished at least `count` reconciles of `kind`.
    pub async fn wait_reconciled(&self, kind: &str, count: u64) {
        eventually(&format!("{count} {kind} reconciles"), || async {
            let done = self.reconciles(kind);
            if done >= count { Ok(()) } else { Err(format!("{done} so far")) }
        })
        .await;
    }

    /// Stops the controllers and waits until they finished; an error of the operator fails the test.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("running");
        tokio::time::timeout(EVENTUALLY, task)
            .await
            .expect("the operator stops in time")
            .expect("operator task")
            .expect("the operator ran without error");
    }
}

impl Drop for RunningOperator {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// The `Ready` condition, when it reflects the current generation.
fn current_ready(conditions: &[Condition], generation: Option<i64>) -> Result<&Condition, String> {
    let ready = find(conditions, "Ready").ok_or_else(|| format!("no Ready condition in {conditions:?}"))?;
    if ready.observed_generation != generation {
        return Err(format!("Ready is for generation {:?}, not {generation:?}: {ready:?}", ready.observed_generation));
    }
    Ok(ready)
}

/// Waits until the VideoSource's status reflects its current spec and `check` accepts it.
pub async fn wait_source(
    api: &Api<VideoSource>,
    name: &str,
    check: impl Fn(&VideoSource) -> Result<(), String>,
) -> VideoSource {
    eventually(&format!("VideoSource {name}"), || async {
        let vs = api.get(name).await.map_err(|err| err.to_string())?;
        let status = vs.status.as_ref().ok_or("no status yet")?;
        current_ready(&status.conditions, vs.metadata.generation)?;
        check(&vs).map_err(|why| format!("{why}; status {status:?}"))?;
        Ok(vs)
    })
    .await
}

pub async fn wait_recording(
    api: &Api<Recording>,
    name: &str,
    check: impl Fn(&Recording) -> Result<(), String>,
) -> Recording {
    eventually(&format!("Recording {name}"), || async {
        let rec = api.get(name).await.map_err(|err| err.to_string())?;
        let status = rec.status.as_ref().ok_or("no status yet")?;
        current_ready(&status.conditions, rec.metadata.generation)?;
        check(&rec).map_err(|why| format!("{why}; status {status:?}"))?;
        Ok(rec)
    })
    .await
}

/// `Ready` is `True` for the current generation.
pub fn ready(conditions: &[Condition]) -> Result<(), String> {
    match find(conditions, "Ready") {
        Some(c) if c.status == "True" => Ok(()),
        other => Err(format!("Ready is {other:?}")),
    }
}

/// Waits until the object is gone from the API server (its finalizer ran).
pub async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + Debug,
{
    eventually(&format!("{name} deleted"), || async {
        match api.get_opt(name).await.map_err(|err| err.to_string())? {
            None => Ok(()),
            Some(obj) => Err(format!(
                "still there: deletionTimestamp {:?}, finalizers {:?}",
                obj.meta().deletion_timestamp,
                obj.meta().finalizers
            )),
        }
    })
    .await
}

/// The Events (events.k8s.io/v1) about one object in the namespace, oldest first.
pub async fn events_about(client: &Client, namespace: &str, kind: &str, name: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    let mut events: Vec<Event> = api
        .list(&ListParams::default())
        .await
        .expect("list Events")
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(name))
        })
        .collect();
    events.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    events
}

/// Waits for an Event with this reason about the object, and checks who reported it.
pub async fn wait_event(client: &Client, namespace: &str, kind: &str, name: &str, reason: &str) -> Event {
    eventually(&format!("a {reason} Event about {kind} {name}"), || async {
        let events = events_about(client, namespace, kind, name).await;
        events.iter().find(|e| e.reason.as_deref() == Some(reason)).cloned().ok_or_else(|| {
            let seen: Vec<_> = events.iter().map(|e| e.reason.clone().unwrap_or_default()).collect();
            format!("Events so far: {seen:?}")
        })
    })
    .await
}
