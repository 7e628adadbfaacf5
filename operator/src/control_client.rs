//! Typed client of the control node's management API (`:8080`), the operator's only way into LiveMix.
//!
//! Replies follow `livemix_common::api`: `{"success", "request_id", ...}` with the object under a named key, and
//! `{"error": {"code", "reason", "message"}}` on failure. Errors keep the HTTP status, the reason and the control
//! node's request id ([`ControlError::request_id`], for Events and logs; not in the message, so that the same
//! failure twice reads the same in a condition).

use std::time::Duration;

pub use livemix_common::management_api::{NewRecording, NewSource};
use livemix_common::{
    api,
    management_api::{RecordingReply, RecordingsReply, SegmentsReply, SourceReply, SourcesReply},
    model::{Recording, Segment, Source},
};
use reqwest::{Method, RequestBuilder};
use serde::{Deserialize, de::DeserializeOwned};
use url::Url;
use uuid::Uuid;

/// What went wrong talking to the control node.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control node URL {url:?} is invalid: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("control node at {url} is unreachable while {what}: {source}")]
    Unreachable {
        what: String,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("control node refused {what}: HTTP {status}: {message}")]
    Api { what: String, status: u16, reason: Option<String>, message: String, request_id: Option<String> },
    #[error("control node sent an unreadable reply while {what}: {detail}")]
    BadReply { what: String, detail: String, request_id: Option<String> },
}

/// The message of control nodes that predate `error.reason` for an unknown route (a wrong URL).
const NO_SUCH_ROUTE_MESSAGE: &str = "no such route";

impl ControlError {
    /// The control node's id of the failed request, to find it in the control node's logs.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::Api { request_id, .. } | Self::BadReply { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The object does not exist in the control node (a 404 for a wrong URL is not that).
    pub fn is_not_found(&self) -> bool {
        match self {
            Self::Api { status: 404, reason: Some(reason), .. } => reason == api::reason::NOT_FOUND,
            Self::Api { status: 404, reason: None, message, .. } => message != NO_SUCH_ROUTE_MESSAGE,
            _ => false,
        }
    }

    /// The name or alias is already taken.
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }
}

/// Replies that carry nothing but `success` and `request_id`.
#[derive(Deserialize)]
struct Empty {}

/// A management-API client with its own bearer token. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ControlClient {
    base: Url,
    token: Option<String>,
    http: reqwest::Client,
}

impl ControlClient {
    /// `base_url` is the management API's root, e.g. `http://livemix-control:8080` (a path prefix is kept).
    pub fn new(base_url: &str, token: Option<String>, timeout: Duration) -> Result<Self, ControlError> {
        let invalid = |reason: String| ControlError::InvalidUrl { url: base_url.to_owned(), reason };
        let mut base = Url::parse(base_url).map_err(|err| invalid(err.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(invalid("use an http:// or https:// URL".into()));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|err| invalid(format!("building the HTTP client: {err}")))?;
        Ok(Self { base, token: token.filter(|t| !t.is_empty()), http })
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    fn request(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        let request = self.http.request(method, url);
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn send<T: DeserializeOwned>(&self, what: String, request: RequestBuilder) -> Result<T, ControlError> {
        let unreachable = |what: &str, source| ControlError::Unreachable {
            what: what.to_owned(),
            url: self.base.to_string(),
            source,
        };
        let response = request.send().await.map_err(|err| unreachable(&what, err))?;
        let status = response.status();
        let request_id =
            response.headers().get(api::REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = response.bytes().await.map_err(|err| unreachable(&what, err))?;
        if !status.is_success() {
            let error = api::ErrorBody::from_reply(status.as_u16(), &body);
            return Err(ControlError::Api {
                what,
                status: status.as_u16(),
                reason: error.reason,
                message: error.message,
                request_id,
            });
        }
        serde_json::from_slice(&body).map_err(|err| ControlError::BadReply {
            what,
            detail: err.to_string(),
            request_id,
        })
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

    /// Deletes a source; the control node stops its active recordings first.
    pub async fn delete_source(&self, id: Uuid) -> Result<(), ControlError> {
        let request = self.request(Method::DELETE, &["v1", "source", &id.to_string()]);
        self.send::<Empty>(format!("deleting source {id}"), request).await.map(|_| ())
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

    pub async fn delete_recording(&self, id: &str) -> Result<(), ControlError> {
        let request = self.request(Method::DELETE, &["v1", "recording", id]);
        self.send::<Empty>(format!("deleting recording {id}"), request).await.map(|_| ())
    }

    pub async fn recording_segments(&self, id: &str) -> Result<Vec<Segment>, ControlError> {
        let request = self.request(Method::GET, &["v1", "recording", id, "segment"]);
        let reply: SegmentsReply = self.send(format!("listing the segments of recording {id}"), request).await?;
        Ok(reply.segments)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> ControlClient {
        ControlClient::new(base, Some("t".into()), Duration::from_secs(1)).unwrap()
    }

    #[test]
    fn urls_keep_a_path_prefix_and_escape_ids() {
        let c = client("http://control:8080/livemix");
        let request = c.request(Method::GET, &["v1", "recording", "a/b"]).build().unwrap();
        assert_eq!(request.url().as_str(), "http://control:8080/livemix/v1/recording/a%2Fb");
        let request = client("http://control:8080/").request(Method::GET, &["v1", "source"]).build().unwrap();
        assert_eq!(request.url().as_str(), "http://control:8080/v1/source");
        assert_eq!(request.headers()["authorization"].to_str().unwrap(), "Bearer t");
    }

    #[test]
    fn bad_urls_are_refused_at_start() {
        for bad in ["control:8080", "ftp://control", "not a url"] {
            let err = ControlClient::new(bad, None, Duration::from_secs(1)).unwrap_err();
            assert!(matches!(err, ControlError::InvalidUrl { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn an_unknown_route_is_not_a_missing_object() {
        let api = |reason: Option<&str>, message: &str| ControlError::Api {
            what: "x".into(),
            status: 404,
            reason: reason.map(str::to_owned),
            message: message.into(),
            request_id: Some("r-1".into()),
        };
        assert!(api(Some(api::reason::NOT_FOUND), "source 1 not found").is_not_found());
        assert!(!api(Some(api::reason::NO_SUCH_ROUTE), "no such route").is_not_found());
        // Control nodes from before `error.reason`: only the message tells.
        assert!(api(None, "source 1 not found").is_not_found());
        assert!(!api(None, NO_SUCH_ROUTE_MESSAGE).is_not_found());
        assert_eq!(api(None, "gone").request_id(), Some("r-1"));
    }

    #[test]
    fn the_same_failure_reads_the_same_whatever_its_request_id() {
        let api = |id: &str| ControlError::Api {
            what: "creating source \"a\"".into(),
            status: 401,
            reason: Some("unauthorized".into()),
            message: "missing or wrong token".into(),
            request_id: Some(id.into()),
        };
        let (one, two) = (api("7a1c"), api("90be"));
        assert_eq!(one.to_string(), two.to_string());
        assert_eq!(one.to_string(), "control node refused creating source \"a\": HTTP 401: missing or wrong token");
        assert_eq!((one.request_id(), two.request_id()), (Some("7a1c"), Some("90be")));
    }
}
