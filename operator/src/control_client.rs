//! Typed client of the control node's management API (`:8080`), the operator's only way into LiveMix. The HTTP
//! core, error type and reply conventions are shared with the edge: [`livemix_common::control_client`].

use std::time::Duration;

pub use livemix_common::control_client::ControlError;
pub use livemix_common::management_api::{
    Coverage, Deletion, Gap, GapCause, NewRecording, NewSource, RecordingsPolicy, Usage, Verification,
};
use livemix_common::{
    control_client::{ClientOptions, ControlHttp, Empty},
    management_api::{
        CoverageReply, DeletionReply, EdgeBinding, HoldUpdate, RecordingModeUpdate, RecordingReply, RecordingsReply,
        SourceEdgeReply, SourceReply, SourcesReply, UsageReply, VerifyReply,
    },
    model::{Recording, RecordingMode, Retention, Source},
};
use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;
use url::Url;
use uuid::Uuid;

/// A management-API client with its own bearer token. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ControlClient {
    http: ControlHttp,
}

impl ControlClient {
    /// `base_url` is the management API's root, e.g. `http://livemix-control:8080` (a path prefix is kept).
    pub fn new(base_url: &str, token: Option<String>, timeout: Duration) -> Result<Self, ControlError> {
        let options = ClientOptions {
            timeout,
            connect_timeout: Duration::from_secs(5),
            user_agent: concat!("livemix-operator/", env!("CARGO_PKG_VERSION")),
        };
        Ok(Self { http: ControlHttp::new(base_url, token, options)? })
    }

    pub fn base_url(&self) -> &Url {
        self.http.base_url()
    }

    fn request(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        self.http.request(method, segments)
    }

    async fn send<T: DeserializeOwned>(&self, what: String, request: RequestBuilder) -> Result<T, ControlError> {
        self.http.send(what, request).await
    }

    /// `GET /liveness/ready`: the control node and its backing services answer.
    pub async fn ready(&self) -> Result<(), ControlError> {
        let request = self.request(Method::GET, &["liveness", "ready"]);
        self.send::<Empty>("checking readiness".into(), request).await.map(|_| ())
    }

    pub async fn list_sources(&self) -> Result<Vec<Source>, ControlError> {
        let request = self.request(Method::GET, &["v1", "source"]);
        let reply: SourcesReply = self.send("listing sources".into(), request).await?;
        Ok(reply.sources)
    }

    /// The source with this name, if any (names are unique).
    pub async fn find_source(&self, name: &str) -> Result<Option<Source>, ControlError> {
        let request = self.request(Method::GET, &["v1", "source"]).query(&[("source_name", name)]);
        let reply: SourcesReply = self.send(format!("looking up source {name:?}"), request).await?;
        Ok(reply.sources.into_iter().find(|s| s.name == name))
    }

    pub async fn get_source(&self, id: Uuid) -> Result<Source, ControlError> {
        let request = self.request(Method::GET, &["v1", "source", &id.to_string()]);
        let reply: SourceReply = self.send(format!("reading source {id}"), request).await?;
        Ok(reply.source)
    }

    pub async fn create_source(&self, new: &NewSource) -> Result<Source, ControlError> {
        let request = self.request(Method::POST, &["v1", "source"]).json(new);
        let reply: SourceReply = self.send(format!("creating source {:?}", new.name), request).await?;
        Ok(reply.source)
    }

    /// Deletes a source, keeping or deleting its recordings as `recordings` says; the control node stops its
    /// active recordings first. Always explicit: without the parameter a source with recordings is refused.
    pub async fn delete_source(&self, id: Uuid, recordings: RecordingsPolicy) -> Result<Deletion, ControlError> {
        let request = self
            .request(Method::DELETE, &["v1", "source", &id.to_string()])
            .query(&[("recordings", recordings.as_str())]);
        let what = format!("deleting source {id} (recordings={})", recordings.as_str());
        let reply: DeletionReply = self.send(what, request).await?;
        Ok(reply.deleted)
    }

    /// Sets the source's own retention; a `None` limit follows the control node's default.
    pub async fn set_retention(&self, id: Uuid, retention: &Retention) -> Result<Source, ControlError> {
        let request = self.request(Method::PUT, &["v1", "source", &id.to_string(), "retention"]).json(retention);
        let reply: SourceReply = self.send(format!("setting the retention of source {id}"), request).await?;
        Ok(reply.source)
    }

    /// `PUT /v1/source/{id}/recording-mode`: records every segment of the source (`continuous`, through one
    /// open-ended recording the control node keeps active) or only what recordings cover (`on_demand`).
    pub async fn set_recording_mode(&self, id: Uuid, recording: RecordingMode) -> Result<Source, ControlError> {
        let request = self
            .request(Method::PUT, &["v1", "source", &id.to_string(), "recording-mode"])
            .json(&RecordingModeUpdate { recording });
        let reply: SourceReply =
            self.send(format!("setting the recording mode of source {id} to {recording}"), request).await?;
        Ok(reply.source)
    }

    /// `GET /v1/source/{id}/edge`: the edge the source is bound to, if any.
    pub async fn source_edge(&self, id: Uuid) -> Result<Option<String>, ControlError> {
        let request = self.request(Method::GET, &["v1", "source", &id.to_string(), "edge"]);
        let reply: SourceEdgeReply = self.send(format!("reading the edge of source {id}"), request).await?;
        Ok(reply.edge_id)
    }

    /// `PUT /v1/source/{id}/edge`: binds the source to this edge (or moves it there); only that edge's credential
    /// may then act for it. Returns the binding the control node now holds.
    pub async fn bind_edge(&self, id: Uuid, edge_id: &str) -> Result<Option<String>, ControlError> {
        let request = self
            .request(Method::PUT, &["v1", "source", &id.to_string(), "edge"])
            .json(&EdgeBinding { edge_id: edge_id.to_owned() });
        let reply: SourceEdgeReply = self.send(format!("binding source {id} to edge {edge_id:?}"), request).await?;
        Ok(reply.edge_id)
    }

    /// `DELETE /v1/source/{id}/edge`: binds the source to no edge (only the deprecated shared edge token may then
    /// act for it). Returns the binding the control node now holds.
    pub async fn unbind_edge(&self, id: Uuid) -> Result<Option<String>, ControlError> {
        let request = self.request(Method::DELETE, &["v1", "source", &id.to_string(), "edge"]);
        let reply: SourceEdgeReply = self.send(format!("unbinding source {id} from its edge"), request).await?;
        Ok(reply.edge_id)
    }

    /// What the source's recordings keep in the object store.
    pub async fn source_storage(&self, id: Uuid) -> Result<Usage, ControlError> {
        let request = self.request(Method::GET, &["v1", "source", &id.to_string(), "storage"]);
        let reply: UsageReply = self.send(format!("reading the storage of source {id}"), request).await?;
        Ok(reply.storage)
    }

    pub async fn rename_source(&self, id: Uuid, new_name: &str) -> Result<Source, ControlError> {
        let request =
            self.request(Method::PUT, &["v1", "source", &id.to_string(), "name"]).query(&[("new_name", new_name)]);
        let reply: SourceReply = self.send(format!("renaming source {id} to {new_name:?}"), request).await?;
        Ok(reply.source)
    }

    pub async fn set_description(&self, id: Uuid, description: &str) -> Result<Source, ControlError> {
        let request = self
            .request(Method::PUT, &["v1", "source", &id.to_string(), "description"])
            .json(&serde_json::json!({ "description": description }));
        let reply: SourceReply = self.send(format!("setting the description of source {id}"), request).await?;
        Ok(reply.source)
    }

    /// Sets the wanted streaming state. An error after the state was saved (the edge did not confirm) is still an
    /// error here; callers re-read the source to tell the two apart.
    pub async fn set_streaming(&self, id: Uuid, streaming: bool) -> Result<Source, ControlError> {
        let request = self
            .request(Method::PUT, &["v1", "source", &id.to_string(), "streaming"])
            .query(&[("new_state", if streaming { "true" } else { "false" })]);
        let reply: SourceReply = self.send(format!("setting streaming of source {id} to {streaming}"), request).await?;
        Ok(reply.source)
    }

    pub async fn start_recording(&self, source_id: Uuid, new: &NewRecording) -> Result<Recording, ControlError> {
        let request = self.request(Method::POST, &["v1", "source", &source_id.to_string(), "recording"]).json(new);
        let reply: RecordingReply = self.send(format!("starting a recording of source {source_id}"), request).await?;
        Ok(reply.recording)
    }

    pub async fn source_recordings(&self, source_id: Uuid, only_active: bool) -> Result<Vec<Recording>, ControlError> {
        let request = self
            .request(Method::GET, &["v1", "source", &source_id.to_string(), "recording"])
            .query(&[("only_active", only_active.to_string())]);
        let reply: RecordingsReply =
            self.send(format!("listing the recordings of source {source_id}"), request).await?;
        Ok(reply.recordings)
    }

    pub async fn list_recordings(&self) -> Result<Vec<Recording>, ControlError> {
        let request = self.request(Method::GET, &["v1", "recording"]);
        let reply: RecordingsReply = self.send("listing recordings".into(), request).await?;
        Ok(reply.recordings)
    }

    pub async fn get_recording(&self, id: &str) -> Result<Recording, ControlError> {
        let request = self.request(Method::GET, &["v1", "recording", id]);
        let reply: RecordingReply = self.send(format!("reading recording {id}"), request).await?;
        Ok(reply.recording)
    }

    /// Stops a recording; stopping a stopped one is a no-op that keeps its end time.
    pub async fn stop_recording(&self, id: &str) -> Result<Recording, ControlError> {
        let request = self.request(Method::POST, &["v1", "recording", id, "stop"]);
        let reply: RecordingReply = self.send(format!("stopping recording {id}"), request).await?;
        Ok(reply.recording)
    }

    /// Deletes a recording (refused with 409 while it is on hold); objects no other recording shares are queued
    /// for deletion from the object store.
    pub async fn delete_recording(&self, id: &str) -> Result<Deletion, ControlError> {
        let request = self.request(Method::DELETE, &["v1", "recording", id]);
        let reply: DeletionReply = self.send(format!("deleting recording {id}"), request).await?;
        Ok(reply.deleted)
    }

    /// Puts the recording on legal hold, or lifts the hold.
    pub async fn set_hold(&self, id: &str, hold: bool) -> Result<Recording, ControlError> {
        let request = self.request(Method::PUT, &["v1", "recording", id, "hold"]).json(&HoldUpdate { hold });
        let reply: RecordingReply = self.send(format!("setting the hold of recording {id} to {hold}"), request).await?;
        Ok(reply.recording)
    }

    /// What the recording keeps in the object store, and when retention deletes it.
    pub async fn recording_storage(&self, id: &str) -> Result<Usage, ControlError> {
        let request = self.request(Method::GET, &["v1", "recording", id, "storage"]);
        let reply: UsageReply = self.send(format!("reading the storage of recording {id}"), request).await?;
        Ok(reply.storage)
    }

    /// `GET /v1/recording/{id}/coverage`: the recording's recorded spans and the gaps between them.
    pub async fn recording_coverage(&self, id: &str) -> Result<Coverage, ControlError> {
        let request = self.request(Method::GET, &["v1", "recording", id, "coverage"]);
        let reply: CoverageReply = self.send(format!("reading the coverage of recording {id}"), request).await?;
        Ok(reply.coverage)
    }

    /// `POST /v1/recording/{id}/verify`: reads every object of the recording back and checks it against the hash
    /// (or size) taken when it was recorded; the control node keeps the outcome in `Recording.verification`.
    pub async fn verify_recording(&self, id: &str) -> Result<Verification, ControlError> {
        let request = self.request(Method::POST, &["v1", "recording", id, "verify"]);
        let reply: VerifyReply = self.send(format!("verifying recording {id}"), request).await?;
        Ok(reply.verification)
    }
}
