//! Edge-facing API (`:8082`): status reports and live segments. Edges dial in; nothing dials out to them.

use axum::{
    Router,
    extract::{DefaultBodyLimit, State},
    http::HeaderMap,
    routing::{get, post},
};
use chrono::{DateTime, TimeZone, Utc};
use livemix_common::{
    ApiError, ApiResult,
    api::{Body, Json, Path, Query, Reply, parse_header, required_header},
    edge_api::{StatusReply, StatusReport, headers as h},
    management_api::SourceReply,
    messages::Message,
    model::validate_segment_name,
};
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::{db::NewLiveSegment, segments::live_key, state::AppState};

pub fn routes(max_segment_bytes: usize) -> Router<AppState> {
    Router::new()
        .route("/v1/source", get(find_source))
        .route("/v1/source/{id}/status", post(report_status))
        .route("/v1/new-segment", post(new_segment).layer(DefaultBodyLimit::max(max_segment_bytes)))
}

#[derive(Debug, Deserialize)]
struct ByName {
    source_name: String,
}

/// Edges know sources by the name ffmpeg sends; this maps it to the source (404 with how to register it).
async fn find_source(State(state): State<AppState>, Query(q): Query<ByName>) -> ApiResult<Reply<SourceReply>> {
    let mut sources = state.db.list_sources(Some(&q.source_name)).await?;
    match sources.pop() {
        Some(source) => Ok(Reply(SourceReply { source })),
        None => Err(ApiError::not_found(format!(
            "no source named {:?} is registered; register it on the control node with \
             POST /v1/source {{\"name\": \"{}\", \"segment_len\": <seconds>}}",
            q.source_name, q.source_name
        ))),
    }
}

/// An edge says it serves a source; the reply carries the wanted state so the edge heals after missed commands.
#[tracing::instrument(skip(state, report), fields(edge = %report.rr_target_id))]
async fn report_status(
    State(state): State<AppState>,
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
    let source = state.db.record_status(id, topic, report.local_timestamp).await?;
    let recordings = state.db.list_recordings(Some(id), true).await?;
    tracing::debug!(source = %source.name, streaming = source.streaming, recordings = recordings.len(), "status report");
    state.broadcast(Message::ReportVideoSourceStatus { source: source.clone() });
    Ok(Reply(StatusReply { source, recordings }))
}

/// `Segment-Start-TS` in seconds since the epoch (fractions allowed) or RFC 3339.
fn parse_start(headers: &HeaderMap) -> ApiResult<DateTime<Utc>> {
    let raw = required_header(headers, h::SEGMENT_START_TS)?;
    if let Ok(secs) = raw.parse::<f64>() {
        if let Some(ts) = Some(secs)
            .filter(|s| s.is_finite() && *s > 0.0)
            .and_then(|s| Utc.timestamp_millis_opt((s * 1000.0) as i64).single())
        {
            return Ok(ts);
        }
    } else if let Ok(ts) = DateTime::parse_from_rfc3339(raw) {
        return Ok(ts.with_timezone(&Utc));
    }
    Err(ApiError::bad_request(format!(
        "header Segment-Start-TS: {raw:?} is not seconds since the epoch or an RFC 3339 time"
    )))
}

/// A live segment forwarded by an edge: validated, cached with a TTL, then listed in the live playlist.
#[tracing::instrument(skip_all, fields(source, segment))]
async fn new_segment(
    State(state): State<AppState>,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<Reply<Map<String, Value>>> {
    let source_id: Uuid = parse_header(&headers, h::SOURCE_ID, "a UUID")?;
    let name = required_header(&headers, h::SEGMENT_NAME)?.to_owned();
    validate_segment_name(&name).map_err(ApiError::bad_request)?;
    let _seq: u64 = parse_header(&headers, h::SEGMENT_SEQ, "a non-negative integer")?;
    let start_ts = parse_start(&headers)?;
    let length_ms: i64 = parse_header(&headers, h::SEGMENT_LENGTH_MSEC, "an integer number of milliseconds")?;
    if !(1..=600_000).contains(&length_ms) {
        return Err(ApiError::bad_request("header Segment-Length-MSec must be between 1 and 600000"));
    }
    let discontinuity = match headers.get(h::SEGMENT_DISCONTINUITY).map(|v| v.to_str().unwrap_or("")) {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!("header Segment-Discontinuity: {other:?} is not true/false")));
        }
    };
    if body.is_empty() {
        return Err(ApiError::bad_request("empty segment body"));
    }
    tracing::Span::current().record("source", tracing::field::display(source_id)).record("segment", &name);

    let source = state.db.get_source(source_id).await?;
    if !source.streaming {
        return Err(ApiError::conflict(format!(
            "streaming is off for source {}; turn it on with PUT /v1/source/{}/streaming?new_state=true",
            source.name, source.id
        )));
    }
    let segment_secs = (length_ms as f64 / 1000.0).max(f64::from(source.segment_length));
    let size = body.len();
    state
        .cache
        .put(&live_key(source_id, &name), body, state.settings.live_ttl(segment_secs))
        .await
        .map_err(|err| ApiError::unavailable(format!("caching segment: {err}")))?;
    let live = state
        .db
        .add_live_segment(
            &NewLiveSegment { source: source_id, name, length_ms, start_ts, discontinuity },
            std::time::Duration::from_secs_f64((segment_secs * 1.5).max(2.0)),
        )
        .await?;
    tracing::debug!(media_seq = live.media_seq, size, "live segment stored");
    let mut reply = Map::new();
    reply.insert("media_seq".into(), live.media_seq.into());
    Ok(Reply(reply))
}
