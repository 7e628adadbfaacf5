//! Management API (`:8080`): sources, streaming, recordings.

use axum::{
    Router,
    extract::State,
    routing::{get, post, put},
};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use livemix_common::{
    ApiError, ApiResult,
    api::{Body, Json, Path, Query, Reply, ok},
    management_api::{
        NewRecording, NewSource, RecordingReply, RecordingsReply, SegmentsReply, SourceReply, SourcesReply,
    },
    messages::Message,
    model::{self, Recording},
};
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::{db::LiveSummary, edge_link::command_error, state::AppState};

/// The management API: the management token (or loopback only), see [`super::auth::ManagementGuard`].
pub fn app(state: AppState) -> Router {
    super::app_with_open_routes("management", routes(), super::console::routes(), super::Access::Management, state)
}

fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/source", post(create_source).get(list_sources))
        .route("/v1/source/{id}", get(get_source).delete(delete_source))
        .route("/v1/source/{id}/name", put(rename_source))
        .route("/v1/source/{id}/description", put(set_description))
        .route("/v1/source/{id}/streaming", put(set_streaming))
        .route("/v1/source/{id}/edge", get(source_edge).delete(release_source_edge))
        .route("/v1/source/{id}/live", get(live_summary))
        .route("/v1/source/{id}/recording", post(start_recording).get(list_source_recordings))
        .route("/v1/recording", get(list_recordings))
        .route("/v1/recording/{id}", get(get_recording).delete(delete_recording))
        .route("/v1/recording/{id}/stop", post(stop_recording))
        .route("/v1/recording/{id}/segment", get(recording_segments))
        .route("/v1/playback-url", get(playback_url))
}

const MAX_TEXT_LEN: usize = 4096;

fn validate_source_name(name: &str) -> ApiResult<()> {
    model::validate_source_name(name).map_err(ApiError::bad_request)
}

fn validate_text(field: &str, text: &str) -> ApiResult<()> {
    if text.len() > MAX_TEXT_LEN {
        return Err(ApiError::bad_request(format!("{field} is longer than {MAX_TEXT_LEN} bytes")));
    }
    Ok(())
}

fn parse_id(id: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(id).map_err(|_| ApiError::bad_request(format!("{id:?} is not a source id (a UUID)")))
}

fn validate_recording_id(id: &str) -> ApiResult<&str> {
    ulid::Ulid::from_string(id).map_err(|_| ApiError::bad_request(format!("{id:?} is not a recording id (a ULID)")))?;
    Ok(id)
}

#[tracing::instrument(skip_all, fields(name = %body.name))]
async fn create_source(State(state): State<AppState>, Json(body): Json<NewSource>) -> ApiResult<Reply<SourceReply>> {
    validate_source_name(&body.name)?;
    if !(1..=3600).contains(&body.segment_len) {
        return Err(ApiError::bad_request("segment_len must be between 1 and 3600 seconds"));
    }
    let description = body.description.unwrap_or_default();
    validate_text("description", &description)?;
    let source = state.db.create_source(&body.name, body.segment_len, &description).await?;
    tracing::info!(id = %source.id, "source created");
    Ok(Reply(SourceReply { source }))
}

#[derive(Debug, Deserialize)]
struct SourceFilter {
    source_name: Option<String>,
}

async fn list_sources(State(state): State<AppState>, Query(q): Query<SourceFilter>) -> ApiResult<Reply<SourcesReply>> {
    let sources = state.db.list_sources(q.source_name.as_deref()).await?;
    Ok(Reply(SourcesReply { sources }))
}

async fn get_source(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Reply<SourceReply>> {
    let source = state.db.get_source(parse_id(&id)?).await?;
    Ok(Reply(SourceReply { source }))
}

#[tracing::instrument(skip(state))]
async fn delete_source(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Reply<Map<String, Value>>> {
    let id = parse_id(&id)?;
    let source = state.db.get_source(id).await?;
    // Tell the edge to stop uploading for the source's recordings before they vanish.
    for recording in state.db.list_recordings(Some(id), true).await? {
        let recording = state.db.stop_recording(&recording.id).await?;
        if let Err(err) = state.edges.stop_recording(&source, &recording).await {
            tracing::warn!(%err, recording = %recording.id, "edge did not confirm stopping a recording of a deleted source");
        }
    }
    state.db.delete_source(id).await?;
    tracing::info!(%id, name = %source.name, "source deleted");
    Ok(ok())
}

#[derive(Debug, Deserialize)]
struct NewName {
    new_name: String,
}

async fn rename_source(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<NewName>,
) -> ApiResult<Reply<SourceReply>> {
    let id = parse_id(&id)?;
    validate_source_name(&q.new_name)?;
    let source = state.db.rename_source(id, &q.new_name).await?;
    Ok(Reply(SourceReply { source }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDescription {
    description: String,
}

async fn set_description(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<NewDescription>,
) -> ApiResult<Reply<SourceReply>> {
    let id = parse_id(&id)?;
    validate_text("description", &body.description)?;
    let source = state.db.set_description(id, &body.description).await?;
    Ok(Reply(SourceReply { source }))
}

#[derive(Debug, Deserialize)]
struct NewState {
    new_state: String,
}

/// Saves the wanted streaming state, then tells a reachable edge and waits for it to confirm. An unreachable
/// edge gets the state with its next status report.
#[tracing::instrument(skip(state, q), fields(new_state = %q.new_state))]
async fn set_streaming(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<NewState>,
) -> ApiResult<Reply<SourceReply>> {
    let id = parse_id(&id)?;
    let wanted = match q.new_state.as_str() {
        "true" => true,
        "false" => false,
        other => {
            return Err(ApiError::bad_request(format!("new_state must be true or false, not {other:?}")));
        }
    };
    let source = state.db.set_streaming(id, wanted).await?;
    match state.edges.change_stream_state(&source).await {
        Ok(delivery) => {
            tracing::info!(source = %id, streaming = wanted, ?delivery, "streaming state changed");
            Ok(Reply(SourceReply { source }))
        }
        Err(err) => Err(command_error(err, "the wanted state is saved and is sent again when the edge next reports")),
    }
}

fn start_time(epoch: Option<i64>) -> ApiResult<DateTime<Utc>> {
    let now = Utc::now();
    let Some(epoch) = epoch else { return Ok(now) };
    let ts = Utc
        .timestamp_opt(epoch, 0)
        .single()
        .filter(|ts| epoch > 0 && now.checked_add_signed(TimeDelta::days(1)).is_some_and(|tomorrow| *ts <= tomorrow))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "start_time_epoch {epoch} is not a time between 1970 and tomorrow, in seconds since the Unix epoch"
            ))
        })?;
    Ok(ts)
}

/// Starts a recording. A reachable edge must confirm (else nothing is kept and the call can be retried); an
/// unreachable edge starts it when it next reports.
#[tracing::instrument(skip(state, body))]
async fn start_recording(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body,
) -> ApiResult<Reply<RecordingReply>> {
    let id = parse_id(&id)?;
    // An empty body means "now, no alias", as `curl -X POST` sends it.
    let body: NewRecording = if body.iter().all(u8::is_ascii_whitespace) {
        NewRecording::default()
    } else {
        serde_json::from_slice(&body).map_err(|err| ApiError::bad_request(format!("invalid recording JSON: {err}")))?
    };
    let start = start_time(body.start_time_epoch)?;
    if let Some(alias) = &body.alias {
        validate_source_name(alias).map_err(|_| {
            ApiError::bad_request(format!("invalid alias {alias:?}: use letters, digits, '-', '_' or '.'"))
        })?;
    }
    if let Some(description) = &body.description {
        validate_text("description", description)?;
    }
    let source = state.db.get_source(id).await?;
    let recording = state.db.create_recording(id, body.alias.as_deref(), body.description.as_deref(), start).await?;
    match state.edges.start_recording(&source, &recording).await {
        Ok(delivery) => {
            tracing::info!(recording = %recording.id, ?delivery, "recording started");
            state.broadcast(Message::RecordingStarted { recording: recording.clone() });
            Ok(Reply(RecordingReply { recording }))
        }
        Err(err) => {
            if let Err(cleanup) = state.db.delete_recording(&recording.id).await {
                tracing::error!(%cleanup, recording = %recording.id, "could not remove an unconfirmed recording");
            }
            Err(command_error(err, "the recording was not started; try again"))
        }
    }
}

#[derive(Debug, serde::Serialize)]
struct LiveReply {
    live: LiveSummary,
}

/// How many segments the source's live playlist lists now and when the newest arrived.
async fn live_summary(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Reply<LiveReply>> {
    let source = state.db.get_source(parse_id(&id)?).await?;
    let window = state.settings.live_window(f64::from(source.segment_length));
    let live = state.db.live_summary(source.id, i64::from(state.settings.live_segments), window).await?;
    Ok(Reply(LiveReply { live }))
}

#[derive(Debug, Deserialize)]
struct ActiveFilter {
    #[serde(default)]
    only_active: Option<String>,
}

fn only_active(q: &ActiveFilter) -> ApiResult<bool> {
    match q.only_active.as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!("only_active must be true or false, not {other:?}"))),
    }
}

async fn list_source_recordings(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ActiveFilter>,
) -> ApiResult<Reply<RecordingsReply>> {
    let id = parse_id(&id)?;
    let only_active = only_active(&q)?;
    state.db.get_source(id).await?;
    let recordings = state.db.list_recordings(Some(id), only_active).await?;
    Ok(Reply(RecordingsReply { recordings }))
}

async fn list_recordings(
    State(state): State<AppState>,
    Query(q): Query<ActiveFilter>,
) -> ApiResult<Reply<RecordingsReply>> {
    let recordings = state.db.list_recordings(None, only_active(&q)?).await?;
    Ok(Reply(RecordingsReply { recordings }))
}

async fn get_recording(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Reply<RecordingReply>> {
    let recording = state.db.get_recording(validate_recording_id(&id)?).await?;
    Ok(Reply(RecordingReply { recording }))
}

/// Stops a recording. The stop is saved first and is final; an edge that misses the command stops when its next
/// status reply no longer lists the recording.
#[tracing::instrument(skip(state))]
async fn stop_recording(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Reply<RecordingReply>> {
    let recording = state.db.stop_recording(validate_recording_id(&id)?).await?;
    notify_stopped(&state, &recording).await;
    Ok(Reply(RecordingReply { recording }))
}

async fn notify_stopped(state: &AppState, recording: &Recording) {
    match state.db.get_source(recording.source).await {
        Ok(source) => match state.edges.stop_recording(&source, recording).await {
            Ok(delivery) => {
                tracing::info!(recording = %recording.id, ?delivery, "recording stopped")
            }
            Err(err) => {
                tracing::warn!(%err, recording = %recording.id, "edge did not confirm the stop; it stops at its next report")
            }
        },
        Err(err) => {
            tracing::warn!(%err, recording = %recording.id, "source of a stopped recording not found")
        }
    }
    state.broadcast(Message::RecordingStopped { recording: recording.clone() });
}

/// Deletes a recording (stopping it first if active). Its objects stay in the object store.
#[tracing::instrument(skip(state))]
async fn delete_recording(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Reply<Map<String, Value>>> {
    let id = validate_recording_id(&id)?;
    let recording = state.db.get_recording(id).await?;
    if recording.active {
        let stopped = state.db.stop_recording(id).await?;
        notify_stopped(&state, &stopped).await;
    }
    state.db.delete_recording(id).await?;
    tracing::info!(recording = %id, "recording deleted");
    Ok(ok())
}

async fn recording_segments(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Reply<SegmentsReply>> {
    let id = validate_recording_id(&id)?;
    state.db.get_recording(id).await?;
    let segments = state.db.recording_segments(id).await?;
    Ok(Reply(SegmentsReply { segments }))
}

#[derive(Debug, serde::Serialize)]
struct SourceEdgeReply {
    /// The edge whose credentials the source is bound to; `null` until an edge with its own token reports it.
    edge_id: Option<String>,
}

/// Which edge a source is bound to.
async fn source_edge(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Reply<SourceEdgeReply>> {
    let id = parse_id(&id)?;
    state.db.get_source(id).await?;
    Ok(Reply(SourceEdgeReply { edge_id: state.db.source_owner(id).await? }))
}

/// Unbinds a source from its edge (the camera moved to another edge): the next edge reporting it owns it.
/// Replicas may keep the old binding for a few seconds.
#[tracing::instrument(skip(state))]
async fn release_source_edge(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Reply<SourceEdgeReply>> {
    let id = parse_id(&id)?;
    state.db.get_source(id).await?;
    let released = state.db.release_source(id).await?;
    tracing::info!(source = %id, released, "source released from its edge");
    Ok(Reply(SourceEdgeReply { edge_id: None }))
}

#[derive(Debug, Deserialize)]
struct PlaybackUrlQuery {
    path: String,
    ttl_secs: Option<u64>,
}

#[derive(Debug, serde::Serialize)]
struct PlaybackUrlReply {
    /// The path with `exp` and `sig` when signing is on; the path itself when it is off.
    url: String,
    signed: bool,
    /// Seconds since the epoch (signed URLs only).
    expires: Option<i64>,
}

/// Longest life of a minted playback URL: a week.
const MAX_PLAYBACK_TTL_SECS: u64 = 7 * 24 * 3600;

/// Mints a playback URL for a VOD path (`/v1/vod/live/<id>/vid.m3u8`...), valid `ttl_secs` (default an hour).
async fn playback_url(
    State(state): State<AppState>,
    Query(q): Query<PlaybackUrlQuery>,
) -> ApiResult<Reply<PlaybackUrlReply>> {
    if !q.path.starts_with("/v1/vod/") || q.path.contains(['?', '#']) || q.path.split('/').any(|p| p == "..") {
        return Err(ApiError::bad_request("path must be a VOD API path such as /v1/vod/live/<source id>/vid.m3u8"));
    }
    let ttl = q.ttl_secs.unwrap_or(3600);
    if !(1..=MAX_PLAYBACK_TTL_SECS).contains(&ttl) {
        return Err(ApiError::bad_request(format!("ttl_secs must be between 1 and {MAX_PLAYBACK_TTL_SECS}")));
    }
    let Some(key) = &state.settings.playback_signing_key else {
        return Ok(Reply(PlaybackUrlReply { url: q.path, signed: false, expires: None }));
    };
    let signer = super::signed::PlaybackSigner::new(key.expose().as_bytes());
    let (url, expires) = signer.signed_path(&q.path, std::time::Duration::from_secs(ttl));
    Ok(Reply(PlaybackUrlReply { url, signed: true, expires: Some(expires) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_defaults_to_now_and_refuses_nonsense() {
        let now = Utc::now();
        assert!((start_time(None).unwrap() - now).num_seconds().abs() < 2);
        assert_eq!(start_time(Some(1_704_596_000)).unwrap().timestamp(), 1_704_596_000);
        assert!(start_time(Some(0)).is_err());
        assert!(start_time(Some(-5)).is_err());
        assert!(start_time(Some(now.timestamp() + 3 * 86_400)).is_err());
        assert!(start_time(Some(i64::MAX)).is_err());
    }
}
