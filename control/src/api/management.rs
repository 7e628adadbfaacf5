//! Management API (`:8080`): sources, streaming, recordings.

use axum::{
    Router,
    extract::State,
    routing::{get, post, put},
};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use livemix_common::{
    ApiError, ApiResult,
    api::{Body, Json, Path, Query, Reply, reason},
    management_api::{
        DeletionReply, EdgeBinding, GcReply, HoldUpdate, NewRecording, NewSource, RecordingReply, RecordingsPolicy,
        RecordingsReply, RetentionReply, SegmentsReply, SourceEdgeReply, SourceReply, SourcesReply, StorageReply,
        StorageSummary, UsageReply,
    },
    messages::Message,
    model::{self, Recording, Retention, validate_edge_id},
};
use serde::Deserialize;
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
        .route("/v1/source/{id}/edge", get(source_edge).put(bind_source_edge).delete(release_source_edge))
        .route("/v1/source/{id}/live", get(live_summary))
        .route("/v1/source/{id}/recording", post(start_recording).get(list_source_recordings))
        .route("/v1/source/{id}/retention", put(set_retention))
        .route("/v1/source/{id}/storage", get(source_storage))
        .route("/v1/recording", get(list_recordings))
        .route("/v1/recording/{id}", get(get_recording).delete(delete_recording))
        .route("/v1/recording/{id}/stop", post(stop_recording))
        .route("/v1/recording/{id}/hold", put(set_hold))
        .route("/v1/recording/{id}/storage", get(recording_storage))
        .route("/v1/storage", get(storage_summary))
        .route("/v1/storage/gc", post(collect_garbage))
        .route("/v1/storage/retention", post(run_retention))
        .route("/v1/storage/deletions", post(run_deletions))
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
async fn create_source(
    State(state): State<AppState>,
    Json(mut body): Json<NewSource>,
) -> ApiResult<Reply<SourceReply>> {
    validate_source_name(&body.name)?;
    if !(1..=3600).contains(&body.segment_len) {
        return Err(ApiError::bad_request("segment_len must be between 1 and 3600 seconds"));
    }
    validate_text("description", body.description.as_deref().unwrap_or_default())?;
    if let Some(owner) = &body.owner {
        validate_text("owner", owner)?;
    }
    if let Some(retention) = &body.retention {
        retention.validate().map_err(ApiError::bad_request)?;
    }
    if let Some(edge) = &body.edge {
        validate_edge_id(edge).map_err(ApiError::bad_request)?;
    }
    body.edge = body.edge.or_else(|| state.settings.default_edge.clone());
    let source = state.db.create_source(&body).await?;
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

#[derive(Debug, Deserialize)]
struct DeleteSourceQuery {
    recordings: Option<String>,
}

/// Deletes a source. A source with recordings needs `?recordings=retain` (they stay listable and playable) or
/// `?recordings=delete` (they go, objects included); without it the delete is refused, so no routine delete
/// destroys evidence. Active recordings are stopped first, and the edge told.
#[tracing::instrument(skip(state))]
async fn delete_source(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<DeleteSourceQuery>,
) -> ApiResult<Reply<DeletionReply>> {
    let id = parse_id(&id)?;
    let policy = match q.recordings.as_deref() {
        None => None,
        Some("retain") => Some(RecordingsPolicy::Retain),
        Some("delete") => Some(RecordingsPolicy::Delete),
        Some(other) => {
            return Err(ApiError::bad_request(format!("recordings must be retain or delete, not {other:?}")));
        }
    };
    let source = state.db.get_source(id).await?;
    let recordings = state.db.list_recordings(Some(id), false).await?;
    let held = recordings.iter().filter(|r| r.hold).count();
    // Refused before anything changes (the database checks again, atomically).
    if let Some(refusal) = crate::db::lifecycle::source_delete_refusal(&source.name, recordings.len(), held, policy) {
        let why = if policy.is_none() { reason::HAS_RECORDINGS } else { reason::ON_HOLD };
        return Err(ApiError::conflict(refusal).with_reason(why));
    }
    // Tell the edge to stop uploading for the source's recordings before the source goes.
    for recording in recordings.iter().filter(|r| r.active) {
        let recording = state.db.stop_recording(&recording.id).await?;
        if let Err(err) = state.edges.stop_recording(&source, &recording).await {
            tracing::warn!(%err, recording = %recording.id, "edge did not confirm stopping a recording of a deleted source");
        }
    }
    let deleted = state.lifecycle.delete_source(id, policy).await?;
    tracing::info!(%id, name = %source.name, "source deleted");
    Ok(Reply(DeletionReply { deleted }))
}

/// Sets the source's own retention; a limit left out (or `null`) follows the control node's default.
#[tracing::instrument(skip(state))]
async fn set_retention(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(retention): Json<Retention>,
) -> ApiResult<Reply<SourceReply>> {
    let id = parse_id(&id)?;
    retention.validate().map_err(ApiError::bad_request)?;
    let source = state.db.set_retention(id, retention).await?;
    tracing::info!(source = %id, ?retention, "retention set");
    // A lower cap applies now, not at the next pass.
    state.lifecycle.enforce_cap(id).await?;
    Ok(Reply(SourceReply { source }))
}

/// What the source stores (also after it was deleted with its recordings retained: the id still answers here).
async fn source_storage(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Reply<UsageReply>> {
    let id = parse_id(&id)?;
    let storage = state.lifecycle.source_usage(id).await?;
    if storage.segments == 0 {
        // Unknown ids are a 404, not an empty source.
        state.db.get_source(id).await?;
    }
    Ok(Reply(UsageReply { storage }))
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
            if let Err(cleanup) =
                state.db.delete_recording(&recording.id, crate::db::lifecycle::DeletionReason::User).await
            {
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

/// Deletes a recording (stopping it first if active) and, once no other recording needs them, its objects. A
/// recording on hold is refused.
#[tracing::instrument(skip(state))]
async fn delete_recording(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Reply<DeletionReply>> {
    let id = validate_recording_id(&id)?;
    let recording = state.db.get_recording(id).await?;
    if recording.hold {
        return Err(ApiError::conflict(crate::db::lifecycle::hold_refusal(id)).with_reason(reason::ON_HOLD));
    }
    if recording.active {
        let stopped = state.db.stop_recording(id).await?;
        notify_stopped(&state, &stopped).await;
    }
    let deleted = state.lifecycle.delete_recording(id).await?;
    state.recording_playlists.invalidate(id).await;
    Ok(Reply(DeletionReply { deleted }))
}

/// Puts a recording on hold (legal hold: no automatic deletion, deletes refused) or lifts the hold.
#[tracing::instrument(skip(state))]
async fn set_hold(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<HoldUpdate>,
) -> ApiResult<Reply<RecordingReply>> {
    let recording = state.db.set_hold(validate_recording_id(&id)?, body.hold).await?;
    tracing::info!(recording = %recording.id, hold = body.hold, "hold set");
    Ok(Reply(RecordingReply { recording }))
}

/// What the recording stores and when retention deletes it.
async fn recording_storage(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Reply<UsageReply>> {
    let recording = state.db.get_recording(validate_recording_id(&id)?).await?;
    let storage = state.lifecycle.recording_usage(&recording).await?;
    Ok(Reply(UsageReply { storage }))
}

/// The whole store as the control node accounts for it.
async fn storage_summary(State(state): State<AppState>) -> ApiResult<Reply<StorageReply>> {
    let (bytes, segments, pending_deletions) = state.db.storage_totals().await?;
    let storage =
        StorageSummary { bytes, segments, pending_deletions, default_retention: state.lifecycle.default_retention() };
    Ok(Reply(StorageReply { storage }))
}

#[derive(Debug, Deserialize)]
struct GcQuery {
    dry_run: Option<String>,
    grace_secs: Option<String>,
    prefix: Option<String>,
}

/// Garbage collection now: `dry_run` (default `true`) only lists; `grace_secs` (default the configured grace)
/// spares younger objects; `prefix` narrows the scan to part of the recordings prefix (e.g. one source's).
#[tracing::instrument(skip(state))]
async fn collect_garbage(State(state): State<AppState>, Query(q): Query<GcQuery>) -> ApiResult<Reply<GcReply>> {
    let dry_run = match q.dry_run.as_deref() {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => return Err(ApiError::bad_request(format!("dry_run must be true or false, not {other:?}"))),
    };
    let grace = match q.grace_secs.as_deref() {
        None => state.lifecycle.settings().gc_grace_secs,
        Some(text) => text.parse::<u64>().ok().filter(|secs| *secs <= 100 * 366 * 86_400).ok_or_else(|| {
            ApiError::bad_request(format!(
                "grace_secs must be a whole number of seconds (0 to 100 years), not {text:?}"
            ))
        })?,
    };
    let root = state.lifecycle.gc_prefix();
    let prefix = q.prefix.unwrap_or_else(|| root.clone());
    if !prefix.starts_with(&root) || prefix.split('/').any(|part| part == "..") || prefix.len() > 1024 {
        return Err(ApiError::bad_request(format!("prefix must lie under the recordings prefix {root:?}")));
    }
    let gc = state.lifecycle.collect_garbage(&prefix, std::time::Duration::from_secs(grace), dry_run).await?;
    Ok(Reply(GcReply { gc }))
}

/// A retention pass now (the timer runs one every `--retention-interval-secs`); empty when another replica is
/// running one.
async fn run_retention(State(state): State<AppState>) -> ApiResult<Reply<RetentionReply>> {
    let retention = state.lifecycle.retention_pass().await?;
    Ok(Reply(RetentionReply { retention }))
}

#[derive(Debug, serde::Serialize)]
struct DeletionsRun {
    /// Objects tried in this turn (0 also when another replica holds the worker's lock).
    tried: usize,
    pending: i64,
}

#[derive(Debug, serde::Serialize)]
struct DeletionsReply {
    deletions: DeletionsRun,
}

/// Carries out due object deletions now instead of at the worker's next look.
async fn run_deletions(State(state): State<AppState>) -> ApiResult<Reply<DeletionsReply>> {
    let tried = state.lifecycle.delete_due().await?;
    let (_, _, pending) = state.db.storage_totals().await?;
    Ok(Reply(DeletionsReply { deletions: DeletionsRun { tried, pending } }))
}

async fn recording_segments(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Reply<SegmentsReply>> {
    let id = validate_recording_id(&id)?;
    state.db.get_recording(id).await?;
    let segments = state.db.recording_segments(id).await?;
    Ok(Reply(SegmentsReply { segments }))
}

/// Which edge a source is bound to.
async fn source_edge(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Reply<SourceEdgeReply>> {
    let id = parse_id(&id)?;
    state.db.get_source(id).await?;
    Ok(Reply(SourceEdgeReply { edge_id: state.db.source_owner(id).await? }))
}

/// Binds a source to the edge that serves it (or moves it to another): from then on only that edge's credentials
/// may report, look up or forward it. Replicas may keep the old binding for a few seconds.
#[tracing::instrument(skip(state, body), fields(edge = %body.edge_id))]
async fn bind_source_edge(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<EdgeBinding>,
) -> ApiResult<Reply<SourceEdgeReply>> {
    let id = parse_id(&id)?;
    validate_edge_id(&body.edge_id).map_err(ApiError::bad_request)?;
    state.db.bind_source(id, &body.edge_id).await?;
    state.bindings.forget(id).await;
    tracing::info!(source = %id, "source bound to its edge");
    Ok(Reply(SourceEdgeReply { edge_id: Some(body.edge_id) }))
}

/// Unbinds a source from its edge: no per-edge credential may act for it until it is bound again.
/// Replicas may keep the old binding for a few seconds.
#[tracing::instrument(skip(state))]
async fn release_source_edge(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Reply<SourceEdgeReply>> {
    let id = parse_id(&id)?;
    state.db.get_source(id).await?;
    let released = state.db.release_source(id).await?;
    state.bindings.forget(id).await;
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
