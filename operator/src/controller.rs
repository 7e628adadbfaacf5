//! Runs both controllers until shutdown. Callable in-process (tests, a single binary), given a `kube::Client`.

use std::{future::Future, sync::Arc};

use futures::StreamExt;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::ListParams,
    runtime::{Controller, reflector::ObjectRef, watcher},
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
    reconcile::{self, Reconciled},
};

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
}

impl Operator {
    /// Registers its metrics in `metrics`; fails on an unusable control-node URL.
    pub fn new(client: Client, settings: Settings, metrics: &Metrics) -> Result<Self, RunError> {
        Ok(Self { ctx: Context::new(client, settings, metrics)? })
    }

    /// Reconcile metrics, for the `/health` endpoint.
    pub fn metrics(&self) -> ReconcileMetrics {
        self.ctx.metrics.clone()
    }

    /// Watches VideoSources and Recordings and reconciles them until `shutdown` completes; in-flight reconciles
    /// finish first.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), RunError> {
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
        let stopped = move || stop.clone().cancelled_owned();

        let watch_config = watcher::Config::default().any_semantic();
        let source_controller = Controller::new(sources.clone(), watch_config.clone());
        let ctx = Arc::new(self.ctx.with_video_sources(source_controller.store()));

        let recording_controller = Controller::new(recordings, watch_config.clone());
        let recording_store = recording_controller.store();
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
        let sources_done = source_controller
            .graceful_shutdown_on(stopped())
            .run(reconcile::video_source::reconcile, reconcile::error_policy, ctx.clone())
            .for_each(|result| async move { log_result(result) });
        let recordings_done = recording_controller
            .graceful_shutdown_on(stopped())
            .run(reconcile::recording::reconcile, reconcile::error_policy, ctx)
            .for_each(|result| async move { log_result(result) });
        futures::join!(sources_done, recordings_done);
        tracing::info!("controllers stopped");
        Ok(())
    }
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
