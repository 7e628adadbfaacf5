//! Edge-facing API (`:8082`): status reports and live segments. Edges dial in; nothing dials out to them.

use axum::{
    Router,
    extract::{DefaultBodyLimit, State},
    http::HeaderMap,
    routing::{get, post},
};
use livemix_common::{
    ApiError, ApiResult,
    api::{Body, ErrorReply, Json, Path, Query, Reply},
    edge_api::{StatusReply, StatusReport},
    management_api::SourceReply,
    segment::{NewSegment, insane_time, sane_time},
};
use serde::Deserialize;
use uuid::Uuid;

use crate::{
    api::auth::{self, EdgeCaller},
    state::AppState,
};

/// The edge-facing API: each edge presents its own token (or the deprecated shared one) and acts only for the
/// sources bound to it.
pub fn app(state: AppState) -> Router {
    let max_segment_bytes = state.settings().max_segment_bytes;
    super::app("edge", routes(max_segment_bytes), super::Access::Edges, state)
}

fn routes(max_segment_bytes: usize) -> Router<AppState> {
    Router::new()
        .route("/v1/source", get(find_source))
        .route("/v1/source/{id}/status", post(report_status).layer(DefaultBodyLimit::max(auth::STATUS_BODY_LIMIT)))
        .route("/v1/new-segment", post(new_segment).layer(DefaultBodyLimit::max(max_segment_bytes)))
}

/// The edge-facing API's operations, for [`crate::openapi`].
#[derive(utoipa::OpenApi)]
#[openapi(paths(find_source, report_status, new_segment))]
pub(crate) struct Operations;

#[derive(Debug, Deserialize)]
struct ByName {
    source_name: String,
}

/// Edges know sources by the name ffmpeg sends; a source the caller may not act for reads as none.
#[utoipa::path(
    get,
    path = "/v1/source",
    tag = "edges",
    summary = "The source of this name, if the calling edge may act for it.",
    params(("source_name" = String, Query, description = "The name the encoder sends: 1 to 253 letters, digits, `-`, `_` or `.`; not only dots, never `..`", example = "camera-0", pattern = r"^(?!\.+$)(?!.*\.\.)[A-Za-z0-9._-]{1,253}$")),
    responses((status = 200, description = "The named object beside `success` and `request_id`", body = SourceReply))
)]
async fn find_source(
    State(state): State<AppState>,
    caller: EdgeCaller,
    Query(q): Query<ByName>,
) -> ApiResult<Reply<SourceReply>> {
    // Not a name a source can have: refused before it reaches the database (which refuses a NUL in text).
    livemix_common::model::validate_source_name(&q.source_name).map_err(ApiError::bad_request)?;
    Ok(Reply(SourceReply { source: state.sources().find_for(&caller.identity, &q.source_name).await? }))
}

/// An edge says it serves a source; the reply carries the wanted state so the edge heals after missed commands.
#[utoipa::path(
    post,
    path = "/v1/source/{id}/status",
    tag = "edges",
    summary = "An edge reports that it serves a source; the reply carries the wanted state.",
    params(("id" = Uuid, Path, description = "The source's id")),
    request_body(content = StatusReport, example = json!({"rr_target_id": "edge-lab-1", "local_timestamp": "2026-12-01T10:00:00Z"})),
    responses(
        (status = 200, description = "The named object beside `success` and `request_id`", body = StatusReply),
        (status = 403, description = "The caller may not act for this source or take commands on this topic", body = ErrorReply)
    )
)]
#[tracing::instrument(skip(state, report), fields(edge = %report.rr_target_id))]
async fn report_status(
    State(state): State<AppState>,
    caller: EdgeCaller,
    Path(id): Path<Uuid>,
    Json(report): Json<StatusReport>,
) -> ApiResult<Reply<StatusReply>> {
    let topic = report.rr_target_id.trim();
    if topic.len() < 3 || topic.len() > 255 || !topic.chars().all(|c| c.is_ascii_alphanumeric() || "-_.~%+".contains(c))
    {
        return Err(ApiError::bad_request(
            "rr_target_id must be a Pub/Sub topic id: 3 to 255 letters, digits or - _ . ~ % +",
        ));
    }
    if let Some(ts) = report.local_timestamp.filter(|ts| !sane_time(*ts)) {
        return Err(insane_time("local_timestamp", &ts.to_rfc3339()));
    }
    let settings = state.settings();
    let topic = caller.command_topic(topic, &[&settings.control_topic, &settings.reply_topic])?;
    let (source, recordings) =
        state.sources().report_status(&caller.identity, id, topic, report.local_timestamp).await?;
    Ok(Reply(StatusReply { source, recordings }))
}

/// A live segment forwarded by an edge: its record decoded and every header checked
/// ([`NewSegment::from_headers`]) before anything is stored, then taken by the live stream
/// ([`crate::domain::live::Live::accept`]).
#[utoipa::path(
    post,
    path = "/v1/new-segment",
    tag = "edges",
    summary = "A live segment forwarded by an edge: MPEG-TS bytes, described by its headers.",
    params(
        ("Source-ID" = Uuid, Header, description = "The source's id"),
        ("Segment-Name" = String, Header, description = "The segment's name in the live playlist", example = "camera-0-1764070000.ts"),
        ("Segment-Run" = Option<String>, Header, description = "The encoder run, a ULID (absent from edges that predate it)"),
        ("Segment-Seq" = Option<i64>, Header, description = "The sequence number within the run"),
        ("Segment-Start-TS" = String, Header, description = "Seconds since the Unix epoch (fractions allowed) or RFC 3339"),
        ("Segment-Length-MSec" = i64, Header, description = "The segment's length in milliseconds"),
        ("Segment-Discontinuity" = Option<bool>, Header, description = "`true` when a discontinuity precedes the segment")
    ),
    request_body(content = crate::openapi::Binary, content_type = "video/mp2t", description = "The segment's MPEG-TS bytes"),
    responses(
        (status = 200, description = "The segment's media sequence number in the live playlist", body = NewSegmentReply),
        (status = 403, description = "The caller may not act for this source", body = ErrorReply)
    )
)]
#[tracing::instrument(skip_all, fields(source, segment))]
async fn new_segment(
    State(state): State<AppState>,
    caller: EdgeCaller,
    headers: HeaderMap,
    Body(data): Body,
) -> ApiResult<Reply<NewSegmentReply>> {
    let segment = NewSegment::from_headers(&headers)?;
    if data.is_empty() {
        return Err(ApiError::bad_request("empty segment body"));
    }
    tracing::Span::current()
        .record("source", tracing::field::display(segment.source()))
        .record("segment", segment.name());
    let media_seq = state.live().accept(&caller.identity, segment, data).await?;
    Ok(Reply(NewSegmentReply { media_seq }))
}

/// `POST /v1/new-segment` reply.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct NewSegmentReply {
    /// The segment's media sequence number in the source's live playlist.
    media_seq: i64,
}
