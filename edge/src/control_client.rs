//! Client of the control node's edge-facing API. The edge only ever dials out: this is its one HTTP peer.

use std::time::Duration;

use bytes::Bytes;
pub use livemix_common::control_client::ControlError;
use livemix_common::{
    control_client::{ClientOptions, ControlHttp},
    credentials::Secret,
    edge_api::{StatusReply, StatusReport},
    management_api::SourceReply,
    model::Source,
    segment::SegmentRecord,
};
use reqwest::Method;
use uuid::Uuid;

/// The edge-facing API's client with the edge's bearer token. Cheap to clone.
#[derive(Clone)]
pub struct ControlClient {
    http: ControlHttp,
}

impl ControlClient {
    /// `base` is the edge-facing API's root, e.g. `https://control.example.com:8082`; `token` is this edge's
    /// bearer token there.
    pub fn new(base: &str, token: Option<Secret>) -> Result<Self, ControlError> {
        let options = ClientOptions {
            timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(5),
            user_agent: concat!("livemix-edge/", env!("CARGO_PKG_VERSION")),
        };
        Ok(Self { http: ControlHttp::new(base, token.map(|t| t.expose().to_owned()), options)? })
    }

    /// The source registered under `name` (404 `Refused` when there is none).
    pub async fn find_source(&self, name: &str) -> Result<Source, ControlError> {
        let request = self.http.request(Method::GET, &["v1", "source"]).query(&[("source_name", name)]);
        let reply: SourceReply = self.http.send(format!("looking up source {name:?}"), request).await?;
        Ok(reply.source)
    }

    pub async fn report_status(&self, source: Uuid, edge_id: &str) -> Result<StatusReply, ControlError> {
        let report = StatusReport { rr_target_id: edge_id.to_owned(), local_timestamp: Some(chrono::Utc::now()) };
        let request = self.http.request(Method::POST, &["v1", "source", &source.to_string(), "status"]).json(&report);
        self.http.send("reporting status", request).await
    }

    /// Forwards a live segment: its record in the headers of `POST /v1/new-segment` (the one encoding, in
    /// [`SegmentRecord::to_headers`]), its bytes as the body.
    pub async fn forward_segment(&self, record: &SegmentRecord, data: Bytes) -> Result<(), ControlError> {
        let what = format!("forwarding segment {}", record.name);
        let headers = record.to_headers().map_err(|message| ControlError::Api {
            what: what.clone(),
            status: 400,
            reason: Some("bad_request".into()),
            message,
            request_id: None,
        })?;
        let req = self
            .http
            .request(Method::POST, &["v1", "new-segment"])
            .headers(headers)
            .header(reqwest::header::CONTENT_TYPE, "video/mp2t")
            .body(data);
        self.http.send::<serde_json::Value>(what, req).await.map(|_| ())
    }
}
