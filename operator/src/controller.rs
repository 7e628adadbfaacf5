//! Runs both controllers until shutdown. Callable in-process (tests, a single binary), given a `kube::Client`.

use std::{
    future::Future,
    hash::{DefaultHasher, Hash, Hasher},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::ListParams,
    runtime::{
        Controller, PredicateConfig, WatchStreamExt, controller,
        reflector::{self, ObjectRef},
        watcher,
    },
};
use livemix_common::telemetry::Metrics;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::{
    config::Settings,
    context::Context,
    control_client::ControlError,
    crd::{Recording, VideoSource},
    metrics::ReconcileMetrics,
    readiness::Readiness,
    reconcile::{self, Reconciled},
};

/// How often the running controllers probe the control node for readiness.
const CONTROL_PROBE_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Control(#[from] ControlError),
    /// Listing fails: no CRD (404), no permission, no API server.
    #[error("cannot list {kind} resources{}", if *.crd_missing { "; install the CRDs first: kubectl apply -f crds/" } else { "" })]
    CannotList {
        kind: &'static str,
        crd_missing: bool,
        #[source]
        source: kube::Error,
    },
}

/// The operator, ready to run.
pub struct Operator {
    ctx: Context,
    readiness: Readiness,
}

impl Operator {
    /// Registers its metrics in `metrics`; fails on an unusable control-node URL.
    pub fn new(client: Client, settings: Settings, metrics: &Metrics) -> Result<Self, RunError> {
        Ok(Self { ctx: Context::new(client, settings, metrics)?, readiness: Readiness::new(metrics) })
    }

    /// Readiness and role, for the `/ready` endpoint and leader election.
    pub fn readiness(&self) -> Readiness {
        self.readiness.clone()
    }

    /// Reconcile metrics, for the `/health` endpoint.
    pub fn metrics(&self) -> ReconcileMetrics {
        self.ctx.metrics.clone()
    }

    /// Watches VideoSources and Recordings and reconciles them until `shutdown` completes; in-flight reconciles
    /// finish first.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), RunError> {
        self.run_controllers(shutdown).await
    }

    /// [`Operator::run`] without consuming the operator (what the leader runs during its term).
    ///
    /// Each resource is reconciled when its spec changes (its `metadata.generation`), when its finalizers,
    /// annotations or deletion change, and every resync period (the reconcilers requeue); the operator's own
    /// status writes trigger nothing. At most `concurrency` reconciles of a kind run at once, and a failing object
    /// is retried after its own jittered, exponential backoff.
    pub async fn run_controllers(&self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), RunError> {
        let client = self.ctx.client.clone();
        let namespace = self.ctx.settings.namespace.clone();
        let sources: Api<VideoSource> = api(&client, namespace.as_deref());
        let recordings: Api<Recording> = api(&client, namespace.as_deref());
        ensure_crd(&sources).await?;
        ensure_crd(&recordings).await?;

        let stop = CancellationToken::new();
        tokio::spawn({
            let stop = stop.clone();
            async move {
                shutdown.await;
                stop.cancel();
            }
        });
        let stopped = {
            let stop = stop.clone();
            move || stop.clone().cancelled_owned()
        };

        let watch_config = watcher::Config::default().any_semantic();
        let config = controller::Config::default().concurrency(self.ctx.settings.concurrency);
        // Caches synced: both watchers listed everything once. (Not `Store::wait_until_ready`: its one-waker
        // channel wakes only the last of several waiters, and the controller itself waits on it.)
        let synced = SyncTracker::new(self.readiness.clone(), 2);
        let (source_store, source_writer) = reflector::store();
        let source_events = watcher(sources.clone(), watch_config.clone())
            .default_backoff()
            .reflect(source_writer)
            .inspect(synced.on_init_done(VideoSource::KIND))
            .applied_objects()
            .predicate_filter(spec_change, PredicateConfig::default());
        let source_controller = Controller::for_stream(source_events, source_store.clone()).with_config(config.clone());
        let ctx = Arc::new(self.ctx.clone().with_video_sources(source_store.clone()));

        let (recording_store, recording_writer) = reflector::store();
        let recording_events = watcher(recordings, watch_config.clone())
            .default_backoff()
            .reflect(recording_writer)
            .inspect(synced.on_init_done(Recording::KIND))
            .applied_objects()
            .predicate_filter(spec_change, PredicateConfig::default());
        let recording_controller =
            Controller::for_stream(recording_events, recording_store.clone()).with_config(config);
        // A VideoSource that becomes ready (or goes) re-reconciles the Recordings waiting for it.
        let recording_controller = recording_controller.watches(sources, watch_config, move |vs: VideoSource| {
            let namespace = vs.namespace();
            let name = vs.name_any();
            recording_store
                .state()
                .into_iter()
                .filter(|rec| rec.namespace() == namespace && rec.spec.source == name)
                .map(|rec| ObjectRef::from_obj(rec.as_ref()))
                .collect::<Vec<_>>()
        });

        tracing::info!(
            control = %ctx.control.base_url(),
            namespace = namespace.as_deref().unwrap_or("<all>"),
            "livemix-operator watching VideoSources and Recordings"
        );
        let readiness = self.readiness.clone();
        let probe = tokio::spawn(probe_control(ctx.clone(), readiness.clone(), stop.clone()));
        let sources_done = source_controller
            .graceful_shutdown_on(stopped())
            .run(reconcile::video_source::reconcile, reconcile::error_policy, ctx.clone())
            .for_each(|result| async move { log_result(result) });
        let recordings_done = recording_controller
            .graceful_shutdown_on(stopped())
            .run(reconcile::recording::reconcile, reconcile::error_policy, ctx)
            .for_each(|result| async move { log_result(result) });
        futures::join!(sources_done, recordings_done);
        probe.abort();
        readiness.set_synced(false);
        tracing::info!("controllers stopped");
        Ok(())
    }
}

/// Marks the caches synced once each of `kinds` watchers finished its first list.
struct SyncTracker {
    readiness: Readiness,
    remaining: Arc<AtomicUsize>,
}

impl SyncTracker {
    fn new(readiness: Readiness, kinds: usize) -> Self {
        Self { readiness, remaining: Arc::new(AtomicUsize::new(kinds)) }
    }

    /// An inspector of one kind's watch events.
    fn on_init_done<K>(&self, kind: &'static str) -> impl FnMut(&Result<watcher::Event<K>, watcher::Error>) + use<K> {
        let (readiness, remaining) = (self.readiness.clone(), self.remaining.clone());
        let mut done = false;
        move |event| {
            if !done && matches!(event, Ok(watcher::Event::InitDone)) {
                done = true;
                tracing::info!(kind, "cache synced");
                if remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                    readiness.set_synced(true);
                }
            }
        }
    }
}

/// Probes the control node's readiness now and every [`CONTROL_PROBE_INTERVAL`] until `stop`.
async fn probe_control(ctx: Arc<Context>, readiness: Readiness, stop: CancellationToken) {
    let mut was = None;
    loop {
        let result = ctx.control.ready().await;
        let reachable = result.is_ok();
        readiness.set_control_reachable(reachable);
        if was != Some(reachable) {
            match result {
                Ok(()) => tracing::info!("the control node answers"),
                Err(err) => tracing::warn!(%err, "the control node does not answer; this replica is not Ready"),
            }
            was = Some(reachable);
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(CONTROL_PROBE_INTERVAL) => {}
        }
    }
}

/// What a reconcile depends on in an object's metadata: its spec (`generation`), finalizers, annotations
/// (`livemix.io/skip-cleanup`, adoption) and deletion. Status changes, the operator's own included, change none of
/// them. Deletion is listed although the API server bumps `generation` when it sets `deletionTimestamp`.
pub fn spec_change<K: Resource>(obj: &K) -> Option<u64> {
    let meta = obj.meta();
    let mut hasher = DefaultHasher::new();
    meta.generation.hash(&mut hasher);
    meta.finalizers.hash(&mut hasher);
    meta.annotations.hash(&mut hasher);
    meta.deletion_timestamp.as_ref().map(|t| t.0.as_second()).hash(&mut hasher);
    Some(hasher.finish())
}

/// Runs the operator with a metrics registry of its own.
pub async fn run(
    client: Client,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    Operator::new(client, settings, &Metrics::new("livemix_operator"))?.run(shutdown).await
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

async fn ensure_crd<K>(api: &Api<K>) -> Result<(), RunError>
where
    K: Reconciled + DeserializeOwned,
{
    api.list(&ListParams::default().limit(1)).await.map(|_| ()).map_err(|source| RunError::CannotList {
        kind: K::KIND,
        crd_missing: matches!(&source, kube::Error::Api(status) if status.code == 404),
        source,
    })
}

fn log_result<K: Resource, E: std::fmt::Display, Q: std::fmt::Display>(
    result: Result<(ObjectRef<K>, kube::runtime::controller::Action), kube::runtime::controller::Error<E, Q>>,
) {
    match result {
        Ok((object, action)) => tracing::debug!(%object, ?action, "reconciled"),
        // Reconcile failures are logged by the error policy; this is everything else (watch errors...).
        Err(kube::runtime::controller::Error::ReconcilerFailed(_, object)) => {
            tracing::debug!(%object, "reconcile failed")
        }
        // Normal: a Recording queued because its VideoSource changed was deleted in the meantime.
        Err(kube::runtime::controller::Error::ObjectNotFound(object)) => {
            tracing::debug!(%object, "queued object is gone")
        }
        Err(err) => tracing::warn!(%err, "controller error"),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use livemix_common::telemetry::Metrics;

    use super::*;

    fn source(generation: i64) -> VideoSource {
        let mut vs =
            VideoSource::new("lobby", serde_json::from_value(serde_json::json!({"segmentLength": 2})).unwrap());
        vs.metadata.generation = Some(generation);
        vs
    }

    #[test]
    fn only_spec_finalizer_annotation_and_deletion_changes_trigger_a_reconcile() {
        let base = source(1);
        let mut status_only = base.clone();
        status_only.status = Some(Default::default());
        status_only.metadata.resource_version = Some("42".into());
        status_only.metadata.managed_fields = Some(vec![Default::default()]);
        assert_eq!(spec_change(&base), spec_change(&status_only), "a status write is not a change");

        assert_ne!(spec_change(&base), spec_change(&source(2)), "a spec change");
        let mut finalized = base.clone();
        finalized.metadata.finalizers = Some(vec!["livemix.io/cleanup".into()]);
        assert_ne!(spec_change(&base), spec_change(&finalized));
        let mut annotated = base.clone();
        annotated.metadata.annotations = Some([("livemix.io/skip-cleanup".to_owned(), "true".to_owned())].into());
        assert_ne!(spec_change(&base), spec_change(&annotated));
        let mut deleted = base.clone();
        deleted.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        assert_ne!(spec_change(&base), spec_change(&deleted));
    }

    #[test]
    fn caches_are_synced_once_every_kind_listed() {
        let readiness = Readiness::new(&Metrics::new("livemix_operator"));
        readiness.set_control_reachable(true);
        let tracker = SyncTracker::new(readiness.clone(), 2);
        let mut sources = tracker.on_init_done::<VideoSource>("VideoSource");
        let mut recordings = tracker.on_init_done::<Recording>("Recording");
        sources(&Ok(watcher::Event::Init));
        sources(&Ok(watcher::Event::InitDone));
        sources(&Ok(watcher::Event::InitDone)); // a re-list counts once
        assert!(readiness.check().is_err(), "Recordings not listed yet");
        recordings(&Ok(watcher::Event::InitDone));
        assert!(readiness.check().is_ok());
    }
}
