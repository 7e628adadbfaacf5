//! The edge's HTTP API (`:9080`): playlist and segment ingest, local preview, health.

use std::sync::Arc;

use axum::{
    Router,
    extract::{DefaultBodyLimit, FromRef, State},
    http::{HeaderMap, Method, StatusCode},
    response::Response,
    routing::{get, post, put},
};
use livemix_common::{
    ApiError, ApiResult,
    api::{Body, Path, Reply, ok, playlist_response, required_header, segment_response},
    hls::{ServedSegment, live_playlist},
    model::{validate_segment_name, validate_source_name},
    telemetry::{Metrics, metrics_handler},
};
use serde_json::json;
use tower_http::cors::CorsLayer;

use crate::{
    auth::{Access, EdgeAuth, check_not_cross_site},
    fetch::{FetchError, SegmentSource},
    node::{Edge, EdgeView, IngestError, IngestReport},
};

pub const SOURCE_HEADER: &str = "Video-Source-Name";
pub const PREFIX_HEADER: &str = "MPEG-TS-URI-Prefix";

#[derive(Clone)]
pub struct ApiState {
    pub edge: Arc<Edge>,
    pub metrics: Metrics,
    pub auth: Arc<EdgeAuth>,
}

/// Body size limits of the ingest routes.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_playlist_bytes: usize,
    pub max_segment_bytes: usize,
}

impl FromRef<ApiState> for Metrics {
    fn from_ref(state: &ApiState) -> Metrics {
        state.metrics.clone()
    }
}

/// Every route and who may call it: ingest needs an ingest token, the preview, `/v1/source` and `/debug/tasks` a
/// preview (or ingest) token (see [`crate::auth`]); probes and `/metrics` are open.
pub fn routes(limits: Limits) -> Router<ApiState> {
    let ingest_max = limits.max_segment_bytes.max(limits.max_playlist_bytes);
    Router::new()
        .route("/v1/playlist", post(post_playlist).layer(DefaultBodyLimit::max(limits.max_playlist_bytes)))
        .route(
            "/v1/ingest/{source}/{file}",
            put(ingest_file).post(ingest_file).delete(delete_file).layer(DefaultBodyLimit::max(ingest_max)),
        )
        .route("/v1/vod/live/{source}/{file}", get(preview).layer(CorsLayer::permissive()))
        .route("/v1/source", get(list_sources))
        .route("/liveness/alive", get(|| async { ok() }))
        .route("/liveness/ready", get(ready))
        .route("/debug/tasks", get(tasks))
        .route("/metrics", get(metrics_handler))
}

impl From<IngestError> for ApiError {
    fn from(err: IngestError) -> Self {
        match err {
            IngestError::Fetch(FetchError::Forbidden(m)) => ApiError::forbidden(m),
            IngestError::Fetch(FetchError::Invalid(m)) => ApiError::bad_request(m),
            IngestError::Fetch(FetchError::Unavailable(m)) => ApiError::new(StatusCode::BAD_GATEWAY, m),
            IngestError::Playlist(e) => ApiError::bad_request(e.to_string()),
            IngestError::UnknownSource(m) => ApiError::not_found(m),
            IngestError::NothingRead(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m).with_reason("segments_unavailable")
            }
            IngestError::Full(m) => ApiError::new(StatusCode::INSUFFICIENT_STORAGE, m),
            e @ IngestError::ControlUnavailable { .. } => ApiError::unavailable(e.to_string()),
        }
    }
}

/// The seed's push: ffmpeg POSTs its playlist with the source name and where to read the segments from.
async fn post_playlist(
    State(state): State<ApiState>,
    method: Method,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<Reply<IngestReport>> {
    check_not_cross_site(&method, &headers)?;
    let name = required_header(&headers, SOURCE_HEADER)?;
    validate_source_name(name).map_err(ApiError::bad_request)?;
    state.auth.check(&headers, Access::Ingest(name))?;
    let prefix = required_header(&headers, PREFIX_HEADER)?;
    let from = state.edge.segment_source(prefix)?;
    Ok(Reply(state.edge.ingest_playlist(name, &from, &body).await?))
}

/// ffmpeg's HTTP output (`-method PUT http://edge:9080/v1/ingest/<source>/index.m3u8`): segments first, then
/// the playlist that lists them.
async fn ingest_file(
    State(state): State<ApiState>,
    method: Method,
    headers: HeaderMap,
    Path((source, file)): Path<(String, String)>,
    Body(body): Body,
) -> ApiResult<Response> {
    check_not_cross_site(&method, &headers)?;
    validate_source_name(&source).map_err(ApiError::bad_request)?;
    state.auth.check(&headers, Access::Ingest(&source))?;
    validate_segment_name(&file).map_err(ApiError::bad_request)?;
    if file.ends_with(".m3u8") {
        let cap = state.edge.max_playlist_bytes();
        if body.len() > cap {
            return Err(ApiError::payload_too_large(format!("a playlist may have at most {cap} bytes")));
        }
        let report = state.edge.ingest_playlist(&source, &SegmentSource::Pushed, &body).await?;
        return Ok(axum::response::IntoResponse::into_response(Reply(report)));
    }
    if !file.ends_with(".ts") {
        return Err(ApiError::bad_request(format!("{file}: only .m3u8 playlists and .ts segments can be pushed")));
    }
    if body.is_empty() {
        return Err(ApiError::bad_request(format!("{file}: empty segment")));
    }
    let cap = state.edge.max_segment_bytes();
    if body.len() > cap {
        return Err(ApiError::payload_too_large(format!("a segment may have at most {cap} bytes")));
    }
    state.edge.accept_upload(&source, &file, body).await?;
    Ok(axum::response::IntoResponse::into_response((StatusCode::CREATED, Reply(json!({"segment": file})))))
}

/// ffmpeg deletes old segments when `delete_segments` is set; the edge expires them itself.
async fn delete_file(
    State(state): State<ApiState>,
    method: Method,
    headers: HeaderMap,
    Path((source, _file)): Path<(String, String)>,
) -> ApiResult<Reply<serde_json::Map<String, serde_json::Value>>> {
    check_not_cross_site(&method, &headers)?;
    validate_source_name(&source).map_err(ApiError::bad_request)?;
    state.auth.check(&headers, Access::Ingest(&source))?;
    Ok(ok())
}

/// Local preview of a source as this edge has it, without the control node.
async fn preview(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((source, file)): Path<(String, String)>,
) -> ApiResult<Response> {
    validate_source_name(&source).map_err(ApiError::bad_request)?;
    state.auth.check(&headers, Access::Preview(&source))?;
    if file == "vid.m3u8" {
        let (media_sequence, segments) = state.edge.preview(&source);
        if segments.is_empty() {
            return Err(ApiError::not_found(format!("no segments of {source} cached on this edge")));
        }
        let served: Vec<ServedSegment> =
            segments.iter().map(|s| ServedSegment::new(&s.name, s.duration_secs, s.discontinuity)).collect();
        return Ok(playlist_response(live_playlist(&served, media_sequence, 0)));
    }
    validate_segment_name(&file).map_err(ApiError::bad_request)?;
    let segment = state
        .edge
        .cached_segment(&source, &file)
        .ok_or_else(|| ApiError::not_found(format!("segment {file} of {source} is not cached on this edge")))?;
    Ok(segment_response(segment.data.clone()))
}

async fn list_sources(State(state): State<ApiState>, headers: HeaderMap) -> ApiResult<Reply<EdgeView>> {
    state.auth.check(&headers, Access::View)?;
    Ok(Reply(state.edge.view()))
}

/// Ready when the control node answered the last status report (or no source needed one yet), the command
/// subscription is up and every supervised task runs.
async fn ready(State(state): State<ApiState>) -> ApiResult<Reply<serde_json::Value>> {
    let readiness = state.edge.readiness();
    if readiness.ready() {
        return Ok(Reply(json!({"control": "ok", "bus": "ok", "tasks": "ok"})));
    }
    let down: Vec<&str> = readiness.tasks.iter().filter(|t| !t.up).map(|t| t.name.as_str()).collect();
    Err(ApiError::unavailable(format!(
        "control reachable: {}, command subscription up: {}, tasks down: {down:?}",
        readiness.control, readiness.bus
    )))
}

/// Every supervised task and how it is doing (tests check that bad input stopped none of them).
async fn tasks(State(state): State<ApiState>, headers: HeaderMap) -> ApiResult<Reply<serde_json::Value>> {
    state.auth.check(&headers, Access::View)?;
    Ok(Reply(json!({"tasks": state.edge.readiness().tasks})))
}
