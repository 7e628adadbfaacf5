//! Edge-facing API (`:8082`): status reports and live segments. Edges dial in; nothing dials out to them.

use axum::{
    Router,
    extract::{DefaultBodyLimit, State},
    http::HeaderMap,
    routing::{get, post},
};
use livemix_common::{
    ApiError, ApiResult,
    api::{Body, Json, Path, Query, Reply},
    edge_api::{StatusReply, StatusReport},
    management_api::SourceReply,
    segment::{NewSegment, insane_time, sane_time},
};
use serde::Deserialize;
use serde_json::{Map, Value};
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

#[derive(Debug, Deserialize)]
struct ByName {
    source_name: String,
}

/// Edges know sources by the name ffmpeg sends; a source the caller may not act for reads as none.
async fn find_source(
    State(state): State<AppState>,
    caller: EdgeCaller,
    Query(q): Query<ByName>,
) -> ApiResult<Reply<SourceReply>> {
    Ok(Reply(SourceReply { source: state.sources().find_for(&caller.identity, &q.source_name).await? }))
}

/// An edge says it serves a source; the reply carries the wanted state so the edge heals after missed commands.
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
#[tracing::instrument(skip_all, fields(source, segment))]
async fn new_segment(
    State(state): State<AppState>,
    caller: EdgeCaller,
    headers: HeaderMap,
    Body(data): Body,
) -> ApiResult<Reply<Map<String, Value>>> {
    let segment = NewSegment::from_headers(&headers)?;
    if data.is_empty() {
        return Err(ApiError::bad_request("empty segment body"));
    }
    tracing::Span::current()
        .record("source", tracing::field::display(segment.source()))
        .record("segment", segment.name());
    let media_seq = state.live().accept(&caller.identity, segment, data).await?;
    let mut reply = Map::new();
    reply.insert("media_seq".into(), media_seq.into());
    Ok(Reply(reply))
}
