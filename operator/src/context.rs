//! What every reconcile needs: the Kubernetes client, the control-node client, events, metrics and backoff.

use kube::runtime::{events::Recorder, events::Reporter, reflector::Store};
use livemix_common::telemetry::Metrics;
use uuid::Uuid;

use crate::{
    backoff::Backoff,
    config::Settings,
    control_client::{ControlClient, ControlError},
    crd::VideoSource,
    metrics::ReconcileMetrics,
};

/// Name of the operator in Events and in server-side-apply field ownership.
pub const MANAGER: &str = "livemix-operator";

#[derive(Clone)]
pub struct Context {
    pub client: kube::Client,
    pub control: ControlClient,
    pub recorder: Recorder,
    pub metrics: ReconcileMetrics,
    pub backoff: Backoff,
    pub settings: Settings,
    /// Every VideoSource the operator watches, to keep two resources from claiming one control-node source.
    /// `None` when reconciling outside a running controller (tests).
    pub video_sources: Option<Store<VideoSource>>,
}

impl Context {
    /// Builds the context; fails only on an unusable control-node URL.
    pub fn new(client: kube::Client, settings: Settings, metrics: &Metrics) -> Result<Self, ControlError> {
        let control =
            ControlClient::new(&settings.control_url, settings.management_token.clone(), settings.control_timeout())?;
        let reporter = match &settings.instance {
            Some(instance) => Reporter { controller: MANAGER.into(), instance: Some(instance.clone()) },
            None => Reporter::from(MANAGER),
        };
        Ok(Self {
            recorder: Recorder::new(client.clone(), reporter),
            control,
            metrics: ReconcileMetrics::new(metrics),
            backoff: settings.backoff(),
            client,
            settings,
            video_sources: None,
        })
    }

    pub fn with_video_sources(mut self, store: Store<VideoSource>) -> Self {
        self.video_sources = Some(store);
        self
    }

    fn vod_url(&self, path: &str) -> Option<String> {
        let base = self.settings.vod_public_url.as_deref()?.trim_end_matches('/');
        Some(format!("{base}{path}"))
    }

    /// Where players find the source's live stream.
    pub fn live_url(&self, source_id: Uuid) -> Option<String> {
        self.vod_url(&format!("/v1/vod/live/{source_id}/vid.m3u8"))
    }

    /// Where players find a recording.
    pub fn playlist_url(&self, recording_id: &str) -> Option<String> {
        self.vod_url(&format!("/v1/vod/recording/{recording_id}/vid.m3u8"))
    }
}
