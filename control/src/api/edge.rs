//! Edge-facing API (`:8082`): status reports and live segments. Edges dial in; nothing dials out to them.

use axum::{
    Router,
    extract::{DefaultBodyLimit, State},
    http::HeaderMap,
    routing::{get, post},
};
use chrono::{DateTime, Datelike, Utc};
use livemix_common::{
    ApiError, ApiResult,
    api::{Body, Json, Path, Query, Reply, parse_header, required_header},
    edge_api::{StatusReply, StatusReport, headers as h},
    management_api::SourceReply,
    model::validate_segment_name,
};
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::{
    api::auth::{self, EdgeCaller},
    domain::live::Forwarded,
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

/// Times edges send must fall in these years; anything else is a broken clock or hostile input, and would only
/// travel on into arithmetic, the database and playlists.
const SANE_YEARS: std::ops::RangeInclusive<i32> = 2000..=2200;

/// The longest segment an edge may forward, in milliseconds (ten minutes; HLS segments are seconds long).
const MAX_SEGMENT_MSEC: i64 = 600_000;

fn sane_time(ts: DateTime<Utc>) -> bool {
    SANE_YEARS.contains(&ts.year())
}

fn insane_time(field: &str, raw: &str) -> ApiError {
    ApiError::bad_request(format!(
        "{field}: {raw:?} is not a time in the years {} to {}",
        SANE_YEARS.start(),
        SANE_YEARS.end()
    ))
}

/// `Segment-Start-TS` in seconds since the epoch (fractions allowed) or RFC 3339, within [`SANE_YEARS`].
fn parse_start(headers: &HeaderMap) -> ApiResult<DateTime<Utc>> {
    let raw = required_header(headers, h::SEGMENT_START_TS)?;
    let field = format!("header {}", h::SEGMENT_START_TS);
    let ts = if let Ok(secs) = raw.parse::<f64>() {
        // Range-checked as a float first, so the conversion to milliseconds cannot overflow (NaN and infinities
        // fail the check too).
        let (earliest, latest) = (year_start(*SANE_YEARS.start()), year_start(*SANE_YEARS.end() + 1));
        if !(earliest..latest).contains(&secs) {
            return Err(insane_time(&field, raw));
        }
        DateTime::from_timestamp_millis((secs * 1000.0).round() as i64)
    } else {
        DateTime::parse_from_rfc3339(raw).ok().map(|ts| ts.with_timezone(&Utc))
    };
    let ts = ts.ok_or_else(|| {
        ApiError::bad_request(format!("{field}: {raw:?} is not seconds since the epoch or an RFC 3339 time"))
    })?;
    if !sane_time(ts) {
        return Err(insane_time(&field, raw));
    }
    Ok(ts)
}

/// Seconds since the epoch at the start of `year`.
fn year_start(year: i32) -> f64 {
    chrono::NaiveDate::from_ymd_opt(year, 1, 1)
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map_or(0.0, |t| t.and_utc().timestamp() as f64)
}

/// `Segment-Seq`: a non-negative integer that fits the database's BIGINT.
fn parse_seq(headers: &HeaderMap) -> ApiResult<i64> {
    let seq: u64 = parse_header(headers, h::SEGMENT_SEQ, "a non-negative integer")?;
    i64::try_from(seq)
        .map_err(|_| ApiError::bad_request(format!("header {}: {seq} is larger than {}", h::SEGMENT_SEQ, i64::MAX)))
}

/// `Segment-Length-MSec`: 1 to [`MAX_SEGMENT_MSEC`].
fn parse_length(headers: &HeaderMap) -> ApiResult<i64> {
    let length_ms: i64 = parse_header(headers, h::SEGMENT_LENGTH_MSEC, "an integer number of milliseconds")?;
    if !(1..=MAX_SEGMENT_MSEC).contains(&length_ms) {
        return Err(ApiError::bad_request(format!(
            "header {} must be between 1 and {MAX_SEGMENT_MSEC}, not {length_ms}",
            h::SEGMENT_LENGTH_MSEC
        )));
    }
    Ok(length_ms)
}

/// `Segment-Discontinuity` (optional): `true`/`1` or `false`/`0`.
fn parse_discontinuity(headers: &HeaderMap) -> ApiResult<bool> {
    match headers.get(h::SEGMENT_DISCONTINUITY).map(|v| v.to_str().unwrap_or("")) {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(other) => {
            Err(ApiError::bad_request(format!("header {}: {other:?} is not true/false", h::SEGMENT_DISCONTINUITY)))
        }
    }
}

/// A live segment forwarded by an edge: every header checked before anything is stored, then taken by the live
/// stream ([`crate::domain::live::Live::accept`]).
#[tracing::instrument(skip_all, fields(source, segment))]
async fn new_segment(
    State(state): State<AppState>,
    caller: EdgeCaller,
    headers: HeaderMap,
    Body(data): Body,
) -> ApiResult<Reply<Map<String, Value>>> {
    let source: Uuid = parse_header(&headers, h::SOURCE_ID, "a UUID")?;
    let name = required_header(&headers, h::SEGMENT_NAME)?.to_owned();
    validate_segment_name(&name).map_err(ApiError::bad_request)?;
    let _seq = parse_seq(&headers)?;
    let start_ts = parse_start(&headers)?;
    let length_ms = parse_length(&headers)?;
    let discontinuity = parse_discontinuity(&headers)?;
    if data.is_empty() {
        return Err(ApiError::bad_request("empty segment body"));
    }
    tracing::Span::current().record("source", tracing::field::display(source)).record("segment", &name);
    let segment = Forwarded { source, name, length_ms, start_ts, discontinuity, data };
    let media_seq = state.live().accept(&caller.identity, segment).await?;
    let mut reply = Map::new();
    reply.insert("media_seq".into(), media_seq.into());
    Ok(Reply(reply))
}
