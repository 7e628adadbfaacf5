//! The edge's HTTP API (`:9080`): playlist and segment ingest, local preview, health.

use std::sync::Arc;

use axum::{
    Extension, Router,
    extract::{DefaultBodyLimit, FromRef, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware,
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use livemix_common::{
    ApiError, ApiResult,
    api::{Body, Path, Reply, ok, playlist_response, request_id, required_header, segment_response},
    door::{self, Door},
    hls::{ServedSegment, live_playlist},
    model::validate_segment_name,
    telemetry::{Metrics, metrics_handler},
};
use serde_json::json;

use crate::{
    fetch::{FetchError, SegmentSource},
    gate::{Admitted, BodyLimits, EdgeGate, SOURCE_HEADER},
    node::{Edge, EdgeView, IngestError, IngestReport},
};

pub const PREFIX_HEADER: &str = "MPEG-TS-URI-Prefix";

#[derive(Clone)]
pub struct ApiState {
    pub edge: Arc<Edge>,
    pub metrics: Metrics,
    /// Web origins allowed to read a token-less preview (`--preview-cors-origins`).
    pub preview_origins: Arc<[String]>,
    /// Whether the preview needs a token.
    pub preview_protected: bool,
}

impl FromRef<ApiState> for Metrics {
    fn from_ref(state: &ApiState) -> Metrics {
        state.metrics.clone()
    }
}

/// Every route and who may call it: ingest needs an ingest token, the preview, `/v1/source` and `/debug/tasks` a
/// preview (or ingest) token (see [`crate::auth`]); probes and `/metrics` are open. `door` checks all that (and
/// the loopback host names of an edge without an ingest token) before any handler reads a body.
pub fn routes(limits: BodyLimits, door: Door<EdgeGate>) -> Router<ApiState> {
    let ingest_max = limits.max_segment_bytes.max(limits.max_playlist_bytes);
    Router::new()
        .route("/v1/playlist", post(post_playlist).layer(DefaultBodyLimit::max(limits.max_playlist_bytes)))
        .route(
            "/v1/ingest/{source}/{file}",
            put(ingest_file).post(ingest_file).delete(delete_file).layer(DefaultBodyLimit::max(ingest_max)),
        )
        .route("/v1/vod/live/{source}/{file}", get(preview).options(preview_preflight))
        .route("/v1/source", get(list_sources))
        .route("/liveness/alive", get(|| async { ok() }))
        .route("/liveness/ready", get(ready))
        .route("/debug/tasks", get(tasks))
        .route("/metrics", get(metrics_handler))
        .route_layer(middleware::from_fn_with_state(door, door::guard::<EdgeGate>))
}

/// A fault of ours as a reply: `status` with a generic message naming the request id; `detail` (URLs, backend
/// text) is logged only.
pub fn server_fault(status: StatusCode, what: &str, detail: &dyn std::error::Error) -> ApiError {
    tracing::error!(status = status.as_u16(), error = %detail, "{what} failed");
    ApiError::new(status, format!("{what} failed; the edge's log has the details under request id {}", request_id()))
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
            e @ IngestError::ControlUnavailable { .. } => {
                server_fault(StatusCode::SERVICE_UNAVAILABLE, "looking the source up at the control node", &e)
            }
        }
    }
}

/// The seed's push: ffmpeg POSTs its playlist with the source name and where to read the segments from.
/// The door checked the name and the token; a source's own token may name only that source's prefixes.
async fn post_playlist(
    State(state): State<ApiState>,
    Extension(admitted): Extension<Admitted>,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<Reply<IngestReport>> {
    let name = required_header(&headers, SOURCE_HEADER)?;
    let prefix = required_header(&headers, PREFIX_HEADER)?;
    let from = state.edge.segment_source(prefix, name, admitted.grant)?;
    Ok(Reply(state.edge.ingest_playlist(name, &from, &body).await?))
}

/// ffmpeg's HTTP output (`-method PUT http://edge:9080/v1/ingest/<source>/index.m3u8`): segments first, then
/// the playlist that lists them. The door checked the source name and the token.
async fn ingest_file(
    State(state): State<ApiState>,
    Path((source, file)): Path<(String, String)>,
    Body(body): Body,
) -> ApiResult<Response> {
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
async fn delete_file() -> Reply<serde_json::Map<String, serde_json::Value>> {
    ok()
}

/// Local preview of a source as this edge has it, without the control node. The door checked the token.
async fn preview(
    State(state): State<ApiState>,
    Extension(admitted): Extension<Admitted>,
    headers: HeaderMap,
    Path((source, file)): Path<(String, String)>,
) -> ApiResult<Response> {
    let mut response = preview_body(&state, &source, &file)?;
    if admitted.grant.by_token() {
        // Whoever holds the token may play it from any page; a shared cache must not keep it for others.
        response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        if response.headers().get(header::CACHE_CONTROL).is_some_and(|v| v.as_bytes().starts_with(b"public")) {
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=3600"));
        }
    } else if let Some(origin) = allowed_origin(&state, &headers) {
        response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        response.headers_mut().insert(header::VARY, HeaderValue::from_static("origin"));
    }
    Ok(response)
}

fn preview_body(state: &ApiState, source: &str, file: &str) -> ApiResult<Response> {
    if file == "vid.m3u8" {
        let (media_sequence, segments) = state.edge.preview(source);
        if segments.is_empty() {
            return Err(ApiError::not_found(format!("no segments of {source} cached on this edge")));
        }
        let served: Vec<ServedSegment> = segments
            .iter()
            .map(|s| ServedSegment::new(&s.record.name, s.duration_secs, s.record.discontinuity))
            .collect();
        return Ok(playlist_response(live_playlist(&served, media_sequence, 0)));
    }
    validate_segment_name(file).map_err(ApiError::bad_request)?;
    let segment = state
        .edge
        .cached_segment(source, file)
        .ok_or_else(|| ApiError::not_found(format!("segment {file} of {source} is not cached on this edge")))?;
    Ok(segment_response(segment.data.clone()))
}

/// The request's `Origin` when `--preview-cors-origins` lists it.
fn allowed_origin(state: &ApiState, headers: &HeaderMap) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let text = origin.to_str().ok()?;
    state.preview_origins.iter().any(|o| o.eq_ignore_ascii_case(text)).then(|| origin.clone())
}

/// CORS preflight of the preview (a player sending `Authorization`): allowed for any origin when the preview
/// needs a token (the preflight grants nothing; the request it announces is checked), else for listed origins.
async fn preview_preflight(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let origin =
        if state.preview_protected { Some(HeaderValue::from_static("*")) } else { allowed_origin(&state, &headers) };
    let Some(origin) = origin else { return StatusCode::NO_CONTENT.into_response() };
    (
        StatusCode::NO_CONTENT,
        [
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, origin),
            (header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, HEAD")),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("authorization, range")),
            (header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600")),
            (header::VARY, HeaderValue::from_static("origin")),
        ],
    )
        .into_response()
}

async fn list_sources(State(state): State<ApiState>) -> ApiResult<Reply<EdgeView>> {
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
async fn tasks(State(state): State<ApiState>) -> ApiResult<Reply<serde_json::Value>> {
    Ok(Reply(json!({"tasks": state.edge.readiness().tasks})))
}
