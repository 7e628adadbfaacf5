//! The one HTTP client core for the control node's APIs, shared by the edge (edge-facing API) and the operator
//! (management API).
//!
//! Replies follow [`crate::api`]: `{"success", "request_id", ...}` with the object under a named key, and
//! `{"error": {"code", "reason", "message"}}` on failure. A [`ControlError`] keeps the HTTP status, the
//! machine-readable reason and the control node's request id ([`ControlError::request_id`], for Events and logs;
//! not in the message, so that the same failure twice reads the same).

use std::time::Duration;

use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;
use url::Url;

use crate::api;

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

    /// The message the control node gave with a refusal, else the whole error.
    pub fn message(&self) -> String {
        match self {
            Self::Api { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}

/// Timeouts and identity of a client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Whole-request timeout.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub user_agent: &'static str,
}

/// Base URL, bearer token and connection pool. Cheap to clone; `Debug` shows the URL only.
#[derive(Clone)]
pub struct ControlHttp {
    base: Url,
    token: Option<String>,
    http: reqwest::Client,
}

impl std::fmt::Debug for ControlHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlHttp")
            .field("base", &self.base.as_str())
            .field("token", &self.token.as_ref().map(|_| "<token>"))
            .finish()
    }
}

impl ControlHttp {
    /// `base_url` is an API's root, e.g. `http://livemix-control:8080` (a path prefix is kept).
    pub fn new(base_url: &str, token: Option<String>, options: ClientOptions) -> Result<Self, ControlError> {
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
            .timeout(options.timeout)
            .connect_timeout(options.connect_timeout.min(options.timeout))
            .user_agent(options.user_agent)
            .build()
            .map_err(|err| invalid(format!("building the HTTP client: {err}")))?;
        Ok(Self { base, token: token.filter(|t| !t.is_empty()), http })
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// A request to the API path made of `segments` (each one escaped), with the bearer token.
    pub fn request(&self, method: Method, segments: &[&str]) -> RequestBuilder {
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

    /// Sends `request` and reads the reply as `T`, or the error body as a [`ControlError::Api`]. `what` says what
    /// the caller was doing, for the error's message.
    pub async fn send<T: DeserializeOwned>(
        &self,
        what: impl Into<String>,
        request: RequestBuilder,
    ) -> Result<T, ControlError> {
        let what = what.into();
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
}

/// Replies that carry nothing but `success` and `request_id`.
#[derive(serde::Deserialize)]
pub struct Empty {}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> ControlHttp {
        let options =
            ClientOptions { timeout: Duration::from_secs(1), connect_timeout: Duration::from_secs(1), user_agent: "t" };
        ControlHttp::new(base, Some("t".into()), options).unwrap()
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
        let options =
            ClientOptions { timeout: Duration::from_secs(1), connect_timeout: Duration::from_secs(1), user_agent: "t" };
        for bad in ["control:8080", "ftp://control", "not a url"] {
            let err = ControlHttp::new(bad, None, options.clone()).unwrap_err();
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
        assert_eq!(api(None, "gone").message(), "gone");
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
