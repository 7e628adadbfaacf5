//! Client of the control node's edge-facing API. The edge only ever dials out: this is its one HTTP peer.

use std::time::Duration;

use bytes::Bytes;
use livemix_common::{
    api::ErrorBody,
    edge_api::{StatusReply, StatusReport, headers as h},
    management_api::SourceReply,
    model::Source,
};
use reqwest::StatusCode;
use uuid::Uuid;

use crate::cache::Segment;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control node unreachable at {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("control node answered {status} to {what}: {message}")]
    Refused { what: &'static str, status: StatusCode, message: String },
}

impl ControlError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ControlError::Refused { status, .. } => Some(*status),
            ControlError::Unreachable { .. } => None,
        }
    }
}

#[derive(Clone)]
pub struct ControlClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl ControlClient {
    pub fn new(base: &str, token: Option<String>) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(20))
            .user_agent(concat!("livemix-edge/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http, base: base.trim_end_matches('/').to_owned(), token })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> (String, reqwest::RequestBuilder) {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        (url, req)
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        (url, req): (String, reqwest::RequestBuilder),
    ) -> Result<T, ControlError> {
        let resp = req.send().await.map_err(|source| ControlError::Unreachable { url: url.clone(), source })?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|source| ControlError::Unreachable { url, source })?;
        if !status.is_success() {
            let message = ErrorBody::from_reply(status.as_u16(), &body).message;
            return Err(ControlError::Refused { what, status, message });
        }
        serde_json::from_slice(&body).map_err(|err| ControlError::Refused {
            what,
            status,
            message: format!("unreadable reply: {err}"),
        })
    }

    /// The source registered under `name` (404 `Refused` when there is none).
    pub async fn find_source(&self, name: &str) -> Result<Source, ControlError> {
        let (url, req) = self.request(reqwest::Method::GET, "/v1/source");
        let reply: SourceReply = self.send("source lookup", (url, req.query(&[("source_name", name)]))).await?;
        Ok(reply.source)
    }

    pub async fn report_status(&self, source: Uuid, edge_id: &str) -> Result<StatusReply, ControlError> {
        let (url, req) = self.request(reqwest::Method::POST, &format!("/v1/source/{source}/status"));
        let report = StatusReport { rr_target_id: edge_id.to_owned(), local_timestamp: Some(chrono::Utc::now()) };
        self.send("status report", (url, req.json(&report))).await
    }

    pub async fn forward_segment(&self, source: Uuid, segment: &Segment) -> Result<(), ControlError> {
        let (url, req) = self.request(reqwest::Method::POST, "/v1/new-segment");
        let start = segment.start_ts.timestamp_millis() as f64 / 1000.0;
        let req = req
            .header(h::SOURCE_ID, source.to_string())
            .header(h::SEGMENT_NAME, &segment.name)
            .header(h::SEGMENT_SEQ, segment.id.seq.to_string())
            .header(h::SEGMENT_START_TS, format!("{start:.3}"))
            .header(h::SEGMENT_LENGTH_MSEC, segment.length_ms().to_string())
            .header(h::SEGMENT_DISCONTINUITY, segment.discontinuity.to_string())
            .header(reqwest::header::CONTENT_TYPE, "video/mp2t")
            .body(Bytes::clone(&segment.data));
        self.send::<serde_json::Value>("new segment", (url, req)).await.map(|_| ())
    }
}
