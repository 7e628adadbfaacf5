//! What the operator tests share: a mocked Kubernetes API, a real control node, resources and contexts.

pub mod control;
pub mod kube_api;

use std::{sync::Arc, time::Duration};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::runtime::controller::Action;
use livemix_common::telemetry::Metrics;
use livemix_operator::{
    Context, Settings,
    crd::{Recording, RecordingSpec, VideoSource, VideoSourceSpec},
    reconcile::{self, Error},
};
use serde_json::Value;
use uuid::Uuid;

use self::kube_api::{Call, MockApi};

pub const NAMESPACE: &str = "default";
pub const VOD_URL: &str = "https://vod.example.com";
pub const VIDEOSOURCES: &str = "/apis/livemix.io/v1alpha1/namespaces/default/videosources";
pub const RECORDINGS: &str = "/apis/livemix.io/v1alpha1/namespaces/default/recordings";
pub const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";

pub use livemix_testkit::unique;

fn new_meta(meta: &mut kube::api::ObjectMeta) {
    meta.namespace = Some(NAMESPACE.into());
    meta.uid = Some(Uuid::new_v4().to_string());
    meta.generation = Some(1);
    meta.resource_version = Some("1".into());
    meta.creation_timestamp = Some(Time(Timestamp::from_second(Timestamp::now().as_second()).expect("now")));
}

/// A VideoSource as a user applies it: no finalizer, no status.
pub fn video_source(name: &str, streaming: bool) -> VideoSource {
    let mut vs = VideoSource::new(
        name,
        VideoSourceSpec {
            name: None,
            description: "lobby camera".into(),
            segment_length: 2,
            streaming,
            deletion_policy: None,
            retention: None,
            edge: None,
            recording: None,
        },
    );
    new_meta(&mut vs.metadata);
    vs
}

pub fn recording(name: &str, source: &str) -> Recording {
    let mut rec = Recording::new(
        name,
        RecordingSpec {
            source: source.into(),
            alias: None,
            description: Some("morning show".into()),
            start_time: None,
            stopped: false,
            deletion_policy: None,
            purge_on_delete: false,
            hold: false,
        },
    );
    new_meta(&mut rec.metadata);
    rec
}

/// Marks a stored object deleted, as the API server does while finalizers remain.
pub fn mark_deleted(meta: &mut kube::api::ObjectMeta) {
    meta.deletion_timestamp = Some(Time(Timestamp::now()));
}

/// Settings of an operator talking to `control_url` with the test token, publishing VOD URLs.
pub fn settings(control_url: &str) -> Settings {
    let mut settings = Settings::for_control(control_url, Some(control::MANAGEMENT_TOKEN.into()));
    settings.vod_public_url = Some(VOD_URL.into());
    settings.backoff_base_ms = 500;
    settings.backoff_max_secs = 4;
    settings
}

/// A fresh operator (as after a restart): new clients, new event recorder, new backoff state.
pub fn operator(client: kube::Client, settings: Settings) -> (Arc<Context>, Metrics) {
    let metrics = Metrics::new("livemix_operator");
    let ctx = Context::new(client, settings, &metrics).expect("context");
    (Arc::new(ctx), metrics)
}

const RECONCILE_TIMEOUT: Duration = Duration::from_secs(30);

/// Reconciles the VideoSource as stored in the mock API server; returns the result and the calls it made.
pub async fn reconcile_source(api: &MockApi, ctx: &Arc<Context>, name: &str) -> (Result<Action, Error>, Vec<Call>) {
    let vs: VideoSource = api.get(NAMESPACE, name).expect("VideoSource is stored");
    let result = tokio::time::timeout(RECONCILE_TIMEOUT, reconcile::video_source::reconcile(Arc::new(vs), ctx.clone()))
        .await
        .expect("reconcile finished in time");
    (result, api.take_calls())
}

pub async fn reconcile_recording(api: &MockApi, ctx: &Arc<Context>, name: &str) -> (Result<Action, Error>, Vec<Call>) {
    let rec: Recording = api.get(NAMESPACE, name).expect("Recording is stored");
    let result = tokio::time::timeout(RECONCILE_TIMEOUT, reconcile::recording::reconcile(Arc::new(rec), ctx.clone()))
        .await
        .expect("reconcile finished in time");
    (result, api.take_calls())
}

/// Applies and reconciles a VideoSource until it is in step: finalizer, then registration and status.
pub async fn settle_source(api: &MockApi, ctx: &Arc<Context>, vs: &VideoSource) -> VideoSource {
    api.put(vs);
    let name = vs.metadata.name.as_deref().expect("name");
    for _ in 0..3 {
        let (result, calls) = reconcile_source(api, ctx, name).await;
        result.expect("VideoSource reconciles");
        if calls.is_empty() {
            return api.get(NAMESPACE, name).expect("stored");
        }
    }
    panic!("VideoSource {name} never settled");
}

pub async fn settle_recording(api: &MockApi, ctx: &Arc<Context>, rec: &Recording) -> Recording {
    api.put(rec);
    let name = rec.metadata.name.as_deref().expect("name");
    for _ in 0..3 {
        let (result, calls) = reconcile_recording(api, ctx, name).await;
        result.expect("Recording reconciles");
        if calls.is_empty() {
            return api.get(NAMESPACE, name).expect("stored");
        }
    }
    panic!("Recording {name} never settled");
}

/// The lines (`METHOD uri`) of the calls.
pub fn lines(calls: &[Call]) -> Vec<String> {
    calls.iter().map(Call::line).collect()
}

pub fn object_patch(base: &str, name: &str) -> String {
    format!("PATCH {base}/{name}?")
}

pub fn status_patch(base: &str, name: &str) -> String {
    format!("PATCH {base}/{name}/status?&force=true&fieldManager=livemix-operator")
}

pub fn event_post() -> String {
    format!("POST {EVENTS}?")
}

/// Whether the call publishes an Event: a new one, or a repeat (same reason and action as an earlier Event
/// about the object), which kube's recorder counts in that Event's series instead.
pub fn is_event(call: &Call) -> bool {
    call.line() == event_post() || call.line().starts_with(&format!("PATCH {EVENTS}/"))
}

/// Checks an Event call: its type, reason, the object it is about, and words its note must contain.
pub fn assert_event(call: &Call, type_: &str, reason: &str, kind: &str, name: &str, note_has: &[&str]) {
    assert_eq!(call.line(), event_post(), "an Event is created");
    let event = &call.body;
    assert_eq!(event["type"], type_, "{event}");
    assert_eq!(event["reason"], reason, "{event}");
    assert_eq!(event["regarding"]["kind"], kind, "{event}");
    assert_eq!(event["regarding"]["name"], name, "{event}");
    assert_eq!(event["reportingController"], "livemix-operator", "{event}");
    let note = event["note"].as_str().unwrap_or_default();
    for word in note_has {
        assert!(note.contains(word), "Event note {note:?} lacks {word:?}");
    }
}

/// The status sent by a server-side-apply status call, checking the envelope SSA needs.
pub fn applied_status<'a>(call: &'a Call, kind: &str) -> &'a Value {
    assert_eq!(call.content_type.as_deref(), Some("application/apply-patch+yaml"));
    assert_eq!(call.body["apiVersion"], "livemix.io/v1alpha1");
    assert_eq!(call.body["kind"], kind);
    &call.body["status"]
}

/// The condition of this type in a status JSON.
pub fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|list| list.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

/// A management URL nothing listens on.
pub async fn closed_port_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    format!("http://{addr}")
}

/// When `action` requeues (kube's `Action` has no getter: read from its `Debug`, e.g. `Some(250.1ms)`).
pub fn requeue_after(action: &kube::runtime::controller::Action) -> std::time::Duration {
    let text = format!("{action:?}");
    let inner = text.split("Some(").nth(1).and_then(|s| s.split(')').next()).unwrap_or_else(|| panic!("{text}"));
    let split = inner.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or_else(|| panic!("{text}"));
    let (number, unit) = inner.split_at(split);
    let number: f64 = number.parse().unwrap_or_else(|_| panic!("{text}"));
    let scale = match unit {
        "s" => 1.0,
        "ms" => 1e-3,
        "µs" => 1e-6,
        "ns" => 1e-9,
        other => panic!("unit {other} in {text}"),
    };
    std::time::Duration::from_secs_f64(number * scale)
}

/// Asserts the retry delays back off with jitter: each in `[nominal/2, nominal]`.
#[track_caller]
pub fn assert_backoff(actions: &[kube::runtime::controller::Action], nominal_secs: &[f64]) {
    assert_eq!(actions.len(), nominal_secs.len(), "{actions:?}");
    for (action, nominal) in actions.iter().zip(nominal_secs) {
        let secs = requeue_after(action).as_secs_f64();
        assert!(
            secs >= nominal / 2.0 - 1e-3 && secs <= nominal + 1e-3,
            "{secs} s is not a jittered {nominal} s: {actions:?}"
        );
    }
}
