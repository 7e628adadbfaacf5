//! Management API (`:8080`): sources, streaming, recordings.

use axum::{
    Router,
    extract::State,
    routing::{get, post, put},
};
use livemix_common::{
    ApiError, ApiResult,
    api::{Body, ErrorReply, Json, Path, Query, Reply},
    management_api::{
        CoverageReply, DeletionReply, EdgeBinding, GcReply, HoldUpdate, ManifestReply, NewRecording, NewSource,
        RecordingModeUpdate, RecordingReply, RecordingsPolicy, RecordingsReply, RetentionReply, SegmentsReply,
        SourceEdgeReply, SourceReply, SourcesReply, StorageReply, StorageSummary, UsageReply, VerifyReply,
    },
    model::{RecordingMode, Retention},
};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{db::LiveSummary, domain::ranges::RangeQuery, state::AppState};

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
        .route("/v1/source/{id}/recording-mode", put(set_recording_mode))
        .route("/v1/source/{id}/coverage", get(source_coverage))
        .route("/v1/source/{id}/storage", get(source_storage))
        .route("/v1/recording", get(list_recordings))
        .route("/v1/recording/{id}", get(get_recording).delete(delete_recording))
        .route("/v1/recording/{id}/stop", post(stop_recording))
        .route("/v1/recording/{id}/hold", put(set_hold))
        .route("/v1/recording/{id}/storage", get(recording_storage))
        .route("/v1/recording/{id}/coverage", get(recording_coverage))
        .route("/v1/recording/{id}/manifest", get(recording_manifest))
        .route("/v1/recording/{id}/verify", post(verify_recording))
        .route("/v1/storage", get(storage_summary))
        .route("/v1/storage/gc", post(collect_garbage))
        .route("/v1/storage/retention", post(run_retention))
        .route("/v1/storage/deletions", post(run_deletions))
        .route("/v1/recording/{id}/segment", get(recording_segments))
        .route("/v1/playback-url", get(playback_url))
}

/// The management API's operations (their `#[utoipa::path]`s), for [`crate::openapi`].
#[derive(utoipa::OpenApi)]
#[openapi(
    components(schemas(RecordingsPolicy)),
    paths(
        create_source,
        set_recording_mode,
        source_coverage,
        list_sources,
        get_source,
        delete_source,
        set_retention,
        source_storage,
        rename_source,
        set_description,
        set_streaming,
        start_recording,
        live_summary,
        list_source_recordings,
        list_recordings,
        get_recording,
        stop_recording,
        delete_recording,
        set_hold,
        recording_storage,
        recording_coverage,
        recording_manifest,
        verify_recording,
        recording_segments,
        storage_summary,
        collect_garbage,
        run_retention,
        run_deletions,
        source_edge,
        bind_source_edge,
        release_source_edge,
        playback_url
    )
)]
pub(crate) struct Operations;

fn parse_id(id: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(id).map_err(|_| ApiError::bad_request(format!("{id:?} is not a source id (a UUID)")))
}

/// `true`/`false` query values (absent: `default`).
fn parse_flag(name: &str, value: Option<&str>, default: bool) -> ApiResult<bool> {
    match value {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(ApiError::bad_request(format!("{name} must be true or false, not {other:?}"))),
    }
}

#[utoipa::path(
    post,
    path = "/v1/source",
    tag = "sources",
    summary = "Registers a source (409 if the name exists).",
    request_body(content = NewSource, example = json!({"name": "cam-1", "segment_len": 4, "description": "Gate"})),
    responses((status = 200, description = "The named object beside `success` and `request_id`", body = SourceReply, links(("GetSource" = (operation_id = "get_source", parameters(("id" = "$response.body#/source/id")))), ("StartRecording" = (operation_id = "start_recording", parameters(("id" = "$response.body#/source/id")))), ("ListSourceRecordings" = (operation_id = "list_source_recordings", parameters(("id" = "$response.body#/source/id")))), ("SourceCoverage" = (operation_id = "source_coverage", parameters(("id" = "$response.body#/source/id")))), ("SetRetention" = (operation_id = "set_retention", parameters(("id" = "$response.body#/source/id")))), ("SetDescription" = (operation_id = "set_description", parameters(("id" = "$response.body#/source/id")))), ("SetRecordingMode" = (operation_id = "set_recording_mode", parameters(("id" = "$response.body#/source/id")))), ("SourceStorage" = (operation_id = "source_storage", parameters(("id" = "$response.body#/source/id")))), ("LiveSummary" = (operation_id = "live_summary", parameters(("id" = "$response.body#/source/id")))), ("DeleteSource" = (operation_id = "delete_source", parameters(("id" = "$response.body#/source/id")))), ("SourceEdge" = (operation_id = "source_edge", parameters(("id" = "$response.body#/source/id")))), ("BindSourceEdge" = (operation_id = "bind_source_edge", parameters(("id" = "$response.body#/source/id")))), ("ReleaseSourceEdge" = (operation_id = "release_source_edge", parameters(("id" = "$response.body#/source/id")))), ("RenameSource" = (operation_id = "rename_source", parameters(("id" = "$response.body#/source/id")))), ("SetStreaming" = (operation_id = "set_streaming", parameters(("id" = "$response.body#/source/id")))))), (status = 409, description = "A source of this name exists", body = ErrorReply))
)]
async fn create_source(State(state): State<AppState>, Json(body): Json<NewSource>) -> ApiResult<Reply<SourceReply>> {
    let source = state.sources().create(body).await?;
    if source.recording == RecordingMode::Continuous {
        // The source is registered either way: its edge's next report starts a recording this could not.
        if let Err(err) = state.recordings().follow_mode(&source).await {
            tracing::warn!(%err, source = %source.id, "continuous recording not started yet; the edge's next report starts it");
        }
    }
    Ok(Reply(SourceReply { source }))
}

/// Switches a source between continuous and on-demand recording.
#[utoipa::path(
    put,
    path = "/v1/source/{id}/recording-mode",
    tag = "sources",
    summary = "Switches a source between continuous and on-demand recording.",
    params(("id" = Uuid, Path, description = "The source's id")),
    request_body(content = RecordingModeUpdate, example = json!({"recording": "continuous"})),
    responses((status = 200, description = "The named object beside `success` and `request_id`", body = SourceReply))
)]
async fn set_recording_mode(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<RecordingModeUpdate>,
) -> ApiResult<Reply<SourceReply>> {
    Ok(Reply(SourceReply { source: state.recordings().set_mode(parse_id(&id)?, body.recording).await? }))
}

/// What was recorded of a source between `start` and `end` (RFC 3339 or epoch seconds): spans and gaps.
#[utoipa::path(
    get,
    path = "/v1/source/{id}/coverage",
    tag = "sources",
    summary = "What was recorded of a source between `start` and `end`: spans and gaps.",
    params(("id" = Uuid, Path, description = "The source's id"), ("start" = String, Query, description = "Start of the range: RFC 3339 or seconds since the Unix epoch", example = "2026-12-01T10:00:00Z"), ("end" = String, Query, description = "End of the range: RFC 3339 or seconds since the Unix epoch", example = "2026-12-01T11:00:00Z")),
    responses((status = 200, description = "The named object beside `success` and `request_id`", body = CoverageReply))
)]
async fn source_coverage(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(range): Query<RangeQuery>,
) -> ApiResult<Reply<CoverageReply>> {
    let ranges = state.ranges();
    let range = ranges.range(&range)?;
    Ok(Reply(CoverageReply { coverage: ranges.coverage(parse_id(&id)?, range).await? }))
}

#[derive(Debug, Deserialize)]
struct SourceFilter {
    source_name: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/source",
    tag = "sources",
    summary = "Lists sources, or finds one by name.",
    params(("source_name" = Option<String>, Query, description = "Only the source of this name: 1 to 253 letters, digits, `-`, `_` or `.`; not only dots, never `..`", example = "cam-1", pattern = r"^(?!\.+$)(?!.*\.\.)[A-Za-z0-9._-]{1,253}$")),
    responses((status = 200, description = "The named object beside `success` and `request_id`", body = SourcesReply))
)]
async fn list_sources(State(state): State<AppState>, Query(q): Query<SourceFilter>) -> ApiResult<Reply<SourcesReply>> {
    // Not a name a source can have: refused before it reaches the database (which refuses a NUL in text).
    if let Some(name) = &q.source_name {
        livemix_common::model::validate_source_name(name).map_err(ApiError::bad_request)?;
    }
    Ok(Reply(SourcesReply { sources: state.sources().list(q.source_name.as_deref()).await? }))
}

#[utoipa::path(
    get,
    path = "/v1/source/{id}",
    tag = "sources",
    summary = "One source.",
    params(("id" = Uuid, Path, description = "The source's id")),
    responses((status = 200, description = "The named object beside `success` and `request_id`", body = SourceReply))
)]
async fn get_source(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Reply<SourceReply>> {
    Ok(Reply(SourceReply { source: state.sources().get(parse_id(&id)?).await? }))
}

#[derive(Debug, Deserialize)]
struct DeleteSourceQuery {
    recordings: Option<String>,
}

/// Deletes a source; one with recordings needs `?recordings=retain` or `?recordings=delete`.
#[utoipa::path(
    delete,
    path = "/v1/source/{id}",
    tag = "sources",
    summary = "Deletes a source; one with recordings needs `recordings=retain` or `recordings=delete` (409 `has_recordings` without).",
    params(("id" = Uuid, Path, description = "The source's id"), ("recordings" = Option<RecordingsPolicy>, Query, description = "What becomes of the source's recordings (required when it has any)", example = "retain")),
    responses((status = 200, description = "The named object beside `success` and `request_id`", body = DeletionReply), (status = 409, description = "`has_recordings`: say `recordings=retain` or `recordings=delete`; `on_hold`: a recording is held", body = ErrorReply))
)]
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
    Ok(Reply(DeletionReply { deleted: state.sources().delete(id, policy).await? }))
}

/// Sets the source's own retention; a limit left out (or `null`) follows the control node's default.
#[utoipa::path(
    put,
    path = "/v1/source/{id}/retention",
    tag = "sources",
    summary = "Sets the source's own retention; a limit left out (or null) follows the control node's default.",
    params(("id" = Uuid, Path, description = "The source's id")),
    request_body(content = Retention, example = json!({"max_age_secs": 86400, "max_bytes": 5000000000u64})),
    responses((status = 200, description = "The named object beside `success` and `request_id`", body = SourceReply))
)]
async fn set_retention(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(retention): Json<Retention>,
) -> ApiResult<Reply<SourceReply>> {
    Ok(Reply(SourceReply { source: state.sources().set_retention(parse_id(&id)?, retention).await? }))
}

/// What the source stores (also after it was deleted with its recordings retained: the id still answers here).
#[utoipa::path(
    get,
    path = "/v1/source/{id}/storage",
    tag = "storage",
    summary = "What the source stores (also after it was deleted with its recordings retained).",
    params(("id" = Uuid, Path, description = "The source's id")),
    responses((status = 200, description = "The named object beside `success` and `request_id`", body = UsageReply))
)]
async fn source_storage(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Reply<UsageReply>> {
    Ok(Reply(UsageReply { storage: state.sources().storage(parse_id(&id)?).await? }))
}

#[derive(Debug, Deserialize)]
struct NewName {
    new_name: String,
}

#[utoipa::path(
    put,
    path = "/v1/source/{id}/name",
    tag = "sources",
    summary = "Renames a source.",
    params(("id" = Uuid, Path, description = "The source's id"), ("new_name" = String, Query, description = "The new name: 1 to 253 letters, digits, `-`, `_` or `.`; not only dots, never `..`", example = "cam-2", pattern = r"^(?!\.+$)(?!.*\.\.)[A-Za-z0-9._-]{1,253}$")),
    responses((status = 200, description = "The named object beside `success` and `request_id`", body = SourceReply), (status = 409, description = "A source of this name exists", body = ErrorReply))
)]
async fn rename_source(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<NewName>,
) -> ApiResult<Reply<SourceReply>> {
    Ok(Reply(SourceReply { source: state.sources().rename(parse_id(&id)?, &q.new_name).await? }))
}

/// `PUT /v1/source/{id}/description` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewDescription {
    #[schema(max_length = 4096)]
    description: String,
}

#[utoipa::path(
    put,
    path = "/v1/source/{id}/description",
    tag = "sources",
    summary = "Sets a source's description.",
    params(("id" = Uuid, Path, description = "The source's id")),
    request_body(content = NewDescription, example = json!({"description": "Gate, north side"})),
    responses((status = 200, description = "The named object beside `success` and `request_id`", body = SourceReply))
)]
async fn set_description(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<NewDescription>,
) -> ApiResult<Reply<SourceReply>> {
    Ok(Reply(SourceReply { source: state.sources().describe(parse_id(&id)?, &body.description).await? }))
}

#[derive(Debug, Deserialize)]
struct NewState {
    new_state: String,
}

/// Saves the wanted streaming state and tells a reachable edge (an unreachable one gets it at its next report).
#[utoipa::path(
    put,
    path = "/v1/source/{id}/streaming",
    tag = "sources",
    summary = "Switches forwarding of live segments on or off; saved first, then confirmed by a reachable edge (504 when it does not confirm in time).",
    params(("id" = Uuid, Path, description = "The source's id"), ("new_state" = bool, Query, description = "`true` or `false`; anything else is 400", example = true)),
    responses((status = 200, description = "The named object beside `success` and `request_id`", body = SourceReply), (status = 504, description = "The edge did not confirm in time; the saved state reaches it with its next report", body = ErrorReply))
)]
async fn set_streaming(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<NewState>,
) -> ApiResult<Reply<SourceReply>> {
    let id = parse_id(&id)?;
    let wanted = match q.new_state.as_str() {
        "true" => true,
        "false" => false,
        other => return Err(ApiError::bad_request(format!("new_state must be true or false, not {other:?}"))),
    };
    Ok(Reply(SourceReply { source: state.sources().set_streaming(id, wanted).await? }))
}

/// Starts a recording; an empty body means "now, no alias", as `curl -X POST` sends it.
#[utoipa::path(
    post,
    path = "/v1/source/{id}/recording",
    tag = "recordings",
    summary = "Starts a recording; every field is optional and an empty body means now, no alias. 504 when a reachable edge does not confirm in time.",
    params(("id" = Uuid, Path, description = "The source's id")),
    request_body(content = Option<NewRecording>, description = "Optional: an empty body means now, no alias", example = json!({"alias": "dock-incident", "description": "y", "start_time_epoch": 1764070000})),
    responses((status = 200, description = "The named object beside `success` and `request_id`", body = RecordingReply, links(("GetRecording" = (operation_id = "get_recording", parameters(("id" = "$response.body#/recording/id")))), ("RecordingCoverage" = (operation_id = "recording_coverage", parameters(("id" = "$response.body#/recording/id")))), ("RecordingManifest" = (operation_id = "recording_manifest", parameters(("id" = "$response.body#/recording/id")))), ("RecordingSegments" = (operation_id = "recording_segments", parameters(("id" = "$response.body#/recording/id")))), ("RecordingStorage" = (operation_id = "recording_storage", parameters(("id" = "$response.body#/recording/id")))), ("SetHold" = (operation_id = "set_hold", parameters(("id" = "$response.body#/recording/id")))), ("VerifyRecording" = (operation_id = "verify_recording", parameters(("id" = "$response.body#/recording/id")))), ("StopRecording" = (operation_id = "stop_recording", parameters(("id" = "$response.body#/recording/id")))), ("DeleteRecording" = (operation_id = "delete_recording", parameters(("id" = "$response.body#/recording/id")))))), (status = 409, description = "A recording with this alias exists", body = ErrorReply), (status = 504, description = "The edge did not confirm in time; nothing is kept", body = ErrorReply))
)]
async fn start_recording(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body,
) -> ApiResult<Reply<RecordingReply>> {
    let id = parse_id(&id)?;
    let body: NewRecording = if body.iter().all(u8::is_ascii_whitespace) {
        NewRecording::default()
    } else {
        serde_json::from_slice(&body).map_err(|err| ApiError::bad_request(format!("invalid recording JSON: {err}")))?
    };
    Ok(Reply(RecordingReply { recording: state.recordings().start(id, body).await? }))
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub(crate) struct LiveReply {
    live: LiveSummary,
}

/// Written by hand: [`LiveSummary`] lives in the database layer, which does not depend on utoipa; a test checks
/// that its serialized fields are the ones named here.
impl utoipa::PartialSchema for LiveSummary {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::{
            ObjectBuilder,
            schema::{KnownFormat, SchemaFormat, Type},
        };
        ObjectBuilder::new()
            .description(Some("What a source's live stream looks like now."))
            .property(
                "segments",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                    .description(Some("Segments a player gets in the live playlist now (0: nothing to play).")),
            )
            .required("segments")
            .property(
                "last_segment_at",
                ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::SchemaType::from_iter([Type::String, Type::Null]))
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                    .description(Some(
                        "When the newest live segment arrived, by the control node's clock; `null` before the first one.",
                    )),
            )
            .required("last_segment_at")
            .into()
    }
}

impl ToSchema for LiveSummary {}

/// How many segments the source's live playlist lists now and when the newest arrived.
#[utoipa::path(
    get,
    path = "/v1/source/{id}/live",
    tag = "sources",
    summary = "How many segments the live playlist lists now and when the newest arrived.",
    params(("id" = Uuid, Path, description = "The source's id")),
    responses((status = 200, description = "The named object beside `success` and `request_id`", body = LiveReply))
)]
async fn live_summary(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Reply<LiveReply>> {
    Ok(Reply(LiveReply { live: state.live().summary(parse_id(&id)?).await? }))
}

#[derive(Debug, Deserialize)]
struct ActiveFilter {
    #[serde(default)]
    only_active: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/source/{id}/recording",
    tag = "recordings",
    summary = "A source's recordings.",
    params(("id" = Uuid, Path, description = "The source's id"), ("only_active" = Option<bool>, Query, description = "Only active recordings (default false)")),
    responses((status = 200, description = "The named object beside `success` and `request_id`", body = RecordingsReply))
)]
async fn list_source_recordings(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ActiveFilter>,
) -> ApiResult<Reply<RecordingsReply>> {
    let id = parse_id(&id)?;
    let only_active = parse_flag("only_active", q.only_active.as_deref(), false)?;
    Ok(Reply(RecordingsReply { recordings: state.recordings().list(Some(id), only_active).await? }))
}

#[utoipa::path(
    get,
    path = "/v1/recording",
    tag = "recordings",
    summary = "Every recording.",
    params(("only_active" = Option<bool>, Query, description = "Only active recordings (default false)")),
    responses((status = 200, description = "The named object beside `success` and `request_id`", body = RecordingsReply))
)]
async fn list_recordings(
    State(state): State<AppState>,
    Query(q): Query<ActiveFilter>,
) -> ApiResult<Reply<RecordingsReply>> {
    let only_active = parse_flag("only_active", q.only_active.as_deref(), false)?;
    Ok(Reply(RecordingsReply { recordings: state.recordings().list(None, only_active).await? }))
}

#[utoipa::path(
    get,
    path = "/v1/recording/{id}",
    tag = "recordings",
    summary = "One recording.",
    params(("id" = String, Path, description = "The recording's id (a ULID)", pattern = r"^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")),
    responses((status = 200, description = "The named object beside `success` and `request_id`", body = RecordingReply))
)]
async fn get_recording(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Reply<RecordingReply>> {
    Ok(Reply(RecordingReply { recording: state.recordings().get(&id).await? }))
}

#[utoipa::path(
    post,
    path = "/v1/recording/{id}/stop",
    tag = "recordings",
    summary = "Stops a recording.",
    params(("id" = String, Path, description = "The recording's id (a ULID)", pattern = r"^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")),
    responses((status = 200, description = "The named object beside `success` and `request_id`", body = RecordingReply), (status = 409, description = "`continuous`: a continuous recording stops only by switching its source to on-demand recording", body = ErrorReply), (status = 504, description = "The edge did not confirm in time", body = ErrorReply))
)]
async fn stop_recording(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Reply<RecordingReply>> {
    Ok(Reply(RecordingReply { recording: state.recordings().stop(&id).await? }))
}

#[utoipa::path(
    delete,
    path = "/v1/recording/{id}",
    tag = "recordings",
    summary = "Deletes a recording and queues its objects for deletion.",
    params(("id" = String, Path, description = "The recording's id (a ULID)", pattern = r"^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")),
    responses((status = 200, description = "The named object beside `success` and `request_id`", body = DeletionReply), (status = 409, description = "`on_hold`: lift the hold first; `continuous`: switch the source to on-demand recording first", body = ErrorReply))
)]
async fn delete_recording(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Reply<DeletionReply>> {
    Ok(Reply(DeletionReply { deleted: state.recordings().delete(&id).await? }))
}

/// Puts a recording on hold (legal hold: no automatic deletion, deletes refused) or lifts the hold.
#[utoipa::path(
    put,
    path = "/v1/recording/{id}/hold",
    tag = "recordings",
    summary = "Puts a recording on legal hold (no automatic deletion, deletes refused) or lifts the hold.",
    params(("id" = String, Path, description = "The recording's id (a ULID)", pattern = r"^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")),
    request_body(content = HoldUpdate, example = json!({"hold": true})),
    responses((status = 200, description = "The named object beside `success` and `request_id`", body = RecordingReply))
)]
async fn set_hold(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<HoldUpdate>,
) -> ApiResult<Reply<RecordingReply>> {
    Ok(Reply(RecordingReply { recording: state.recordings().set_hold(&id, body.hold).await? }))
}

/// What the recording stores and when retention deletes it.
#[utoipa::path(
    get,
    path = "/v1/recording/{id}/storage",
    tag = "storage",
    summary = "What the recording stores and when retention deletes it.",
    params(("id" = String, Path, description = "The recording's id (a ULID)", pattern = r"^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")),
    responses((status = 200, description = "The named object beside `success` and `request_id`", body = UsageReply))
)]
async fn recording_storage(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Reply<UsageReply>> {
    Ok(Reply(UsageReply { storage: state.recordings().storage(&id).await? }))
}

#[utoipa::path(
    get,
    path = "/v1/recording/{id}/coverage",
    tag = "recordings",
    summary = "What a recording covers: spans and gaps.",
    params(("id" = String, Path, description = "The recording's id (a ULID)", pattern = r"^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")),
    responses((status = 200, description = "The named object beside `success` and `request_id`", body = CoverageReply))
)]
async fn recording_coverage(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Reply<CoverageReply>> {
    Ok(Reply(CoverageReply { coverage: state.recordings().coverage(&id).await? }))
}

/// Every segment's key, size, offset and SHA-256, signed with the playback key when one is set.
#[utoipa::path(
    get,
    path = "/v1/recording/{id}/manifest",
    tag = "recordings",
    summary = "Every segment's key, size, offset and SHA-256, signed with the playback key when one is set.",
    params(("id" = String, Path, description = "The recording's id (a ULID)", pattern = r"^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")),
    responses((status = 200, description = "The named object beside `success` and `request_id`", body = ManifestReply))
)]
async fn recording_manifest(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Reply<ManifestReply>> {
    Ok(Reply(ManifestReply { manifest: state.evidence().manifest(&id).await? }))
}

/// Reads every object of the recording back and reports what no longer matches.
#[utoipa::path(
    post,
    path = "/v1/recording/{id}/verify",
    tag = "recordings",
    summary = "Reads every object of the recording back and reports what no longer matches.",
    params(("id" = String, Path, description = "The recording's id (a ULID)", pattern = r"^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")),
    responses((status = 200, description = "The named object beside `success` and `request_id`", body = VerifyReply))
)]
async fn verify_recording(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Reply<VerifyReply>> {
    Ok(Reply(VerifyReply { verification: state.evidence().verify(&id).await? }))
}

#[utoipa::path(
    get,
    path = "/v1/recording/{id}/segment",
    tag = "recordings",
    summary = "A recording's segments.",
    params(("id" = String, Path, description = "The recording's id (a ULID)", pattern = r"^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")),
    responses((status = 200, description = "The named object beside `success` and `request_id`", body = SegmentsReply))
)]
async fn recording_segments(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Reply<SegmentsReply>> {
    Ok(Reply(SegmentsReply { segments: state.recordings().segments(&id).await? }))
}

/// The whole store as the control node accounts for it.
#[utoipa::path(
    get,
    path = "/v1/storage",
    tag = "storage",
    summary = "The whole store as the control node accounts for it: totals, pending deletions, default retention.",
    responses((status = 200, description = "The named object beside `success` and `request_id`", body = StorageReply))
)]
async fn storage_summary(State(state): State<AppState>) -> ApiResult<Reply<StorageReply>> {
    let lifecycle = state.lifecycle();
    let (bytes, segments, pending_deletions) = lifecycle.totals().await?;
    let storage =
        StorageSummary { bytes, segments, pending_deletions, default_retention: lifecycle.default_retention() };
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
#[utoipa::path(
    post,
    path = "/v1/storage/gc",
    tag = "storage",
    summary = "Garbage collection now: objects no segment refers to, and segments whose object is missing.",
    params(("dry_run" = Option<bool>, Query, description = "Only list (default true)", example = false), ("grace_secs" = Option<u64>, Query, description = "Spare objects younger than this, at most 100 years (default the configured grace)", example = 86400, maximum = 3_162_240_000.0), ("prefix" = Option<String>, Query, description = "Narrow the scan to part of the recordings prefix: under the object prefix (`recordings/`; the pattern assumes that default), at most 1024 bytes, no `..` segment", example = "recordings/", pattern = r"^recordings/(?!(?:.*/)?\.\.(?:/|$))[ -~]{0,1012}$")),
    responses((status = 200, description = "The named object beside `success` and `request_id`", body = GcReply))
)]
#[tracing::instrument(skip(state))]
async fn collect_garbage(State(state): State<AppState>, Query(q): Query<GcQuery>) -> ApiResult<Reply<GcReply>> {
    let dry_run = parse_flag("dry_run", q.dry_run.as_deref(), true)?;
    let grace = match q.grace_secs.as_deref() {
        None => state.lifecycle().settings().gc_grace_secs,
        Some(text) => text.parse::<u64>().ok().filter(|secs| *secs <= 100 * 366 * 86_400).ok_or_else(|| {
            ApiError::bad_request(format!(
                "grace_secs must be a whole number of seconds (0 to 100 years), not {text:?}"
            ))
        })?,
    };
    let root = state.lifecycle().gc_prefix();
    let prefix = q.prefix.unwrap_or_else(|| root.clone());
    if !prefix.starts_with(&root) || prefix.split('/').any(|part| part == "..") || prefix.len() > 1024 {
        return Err(ApiError::bad_request(format!("prefix must lie under the recordings prefix {root:?}")));
    }
    let gc = state.lifecycle().collect_garbage(&prefix, std::time::Duration::from_secs(grace), dry_run).await?;
    Ok(Reply(GcReply { gc }))
}

/// A retention pass now (the timer runs one every `--retention-interval-secs`); empty when another replica is
/// running one.
#[utoipa::path(
    post,
    path = "/v1/storage/retention",
    tag = "storage",
    summary = "A retention pass now; empty when another replica is running one.",
    responses((status = 200, description = "The named object beside `success` and `request_id`", body = RetentionReply))
)]
async fn run_retention(State(state): State<AppState>) -> ApiResult<Reply<RetentionReply>> {
    let retention = state.lifecycle().retention_pass().await?;
    Ok(Reply(RetentionReply { retention }))
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub(crate) struct DeletionsRun {
    /// Objects tried in this turn (0 also when another replica holds the worker's lock).
    tried: usize,
    pending: i64,
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub(crate) struct DeletionsReply {
    deletions: DeletionsRun,
}

/// Carries out due object deletions now instead of at the worker's next look.
#[utoipa::path(
    post,
    path = "/v1/storage/deletions",
    tag = "storage",
    summary = "Carries out due object deletions now.",
    responses((status = 200, description = "The named object beside `success` and `request_id`", body = DeletionsReply))
)]
async fn run_deletions(State(state): State<AppState>) -> ApiResult<Reply<DeletionsReply>> {
    let tried = state.lifecycle().delete_due().await?;
    let (_, _, pending) = state.lifecycle().totals().await?;
    Ok(Reply(DeletionsReply { deletions: DeletionsRun { tried, pending } }))
}

/// Which edge a source is bound to.
#[utoipa::path(
    get,
    path = "/v1/source/{id}/edge",
    tag = "sources",
    summary = "The edge a source is bound to.",
    params(("id" = Uuid, Path, description = "The source's id")),
    responses((status = 200, description = "The named object beside `success` and `request_id`", body = SourceEdgeReply))
)]
async fn source_edge(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Reply<SourceEdgeReply>> {
    Ok(Reply(SourceEdgeReply { edge_id: state.sources().edge(parse_id(&id)?).await? }))
}

/// Binds a source to the edge that serves it (or moves it to another): from then on only that edge's credentials
/// may report, look up or forward it. Replicas may keep the old binding for a few seconds.
#[utoipa::path(
    put,
    path = "/v1/source/{id}/edge",
    tag = "sources",
    summary = "Binds a source to the edge that serves it (or moves it).",
    params(("id" = Uuid, Path, description = "The source's id")),
    request_body(content = EdgeBinding, example = json!({"edge_id": "edge-lab-1"})),
    responses((status = 200, description = "The named object beside `success` and `request_id`", body = SourceEdgeReply))
)]
async fn bind_source_edge(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<EdgeBinding>,
) -> ApiResult<Reply<SourceEdgeReply>> {
    state.sources().bind(parse_id(&id)?, &body.edge_id).await?;
    Ok(Reply(SourceEdgeReply { edge_id: Some(body.edge_id) }))
}

/// Unbinds a source from its edge: no per-edge credential may act for it until it is bound again.
#[utoipa::path(
    delete,
    path = "/v1/source/{id}/edge",
    tag = "sources",
    summary = "Unbinds a source from its edge.",
    params(("id" = Uuid, Path, description = "The source's id")),
    responses((status = 200, description = "The named object beside `success` and `request_id`", body = SourceEdgeReply))
)]
async fn release_source_edge(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Reply<SourceEdgeReply>> {
    state.sources().release(parse_id(&id)?).await?;
    Ok(Reply(SourceEdgeReply { edge_id: None }))
}

#[derive(Debug, Deserialize)]
struct PlaybackUrlQuery {
    path: String,
    ttl_secs: Option<u64>,
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub(crate) struct PlaybackUrlReply {
    /// The path with `exp` and `sig` when signing is on; the path itself when it is off.
    url: String,
    signed: bool,
    /// Seconds since the epoch (signed URLs only).
    expires: Option<i64>,
}

/// Longest life of a minted playback URL: a week.
const MAX_PLAYBACK_TTL_SECS: u64 = 7 * 24 * 3600;

/// Mints a playback URL for a VOD path (`/v1/vod/live/<id>/vid.m3u8`...), valid `ttl_secs` (default an hour).
#[utoipa::path(
    get,
    path = "/v1/playback-url",
    tag = "playback",
    summary = "Mints a playback URL for a VOD path, signed when a playback signing key is set.",
    params(("path" = String, Query, description = "A VOD API path: under `/v1/vod/`, no query or fragment, no `..` segment", example = "/v1/vod/live/0b9f5c2e-3f0e-4a8e-9d3c-7c1d2e3f4a5b/vid.m3u8", pattern = r"^/v1/vod/(?!(?:.*/)?\.\.(?:/|$))[^?#]*$"), ("ttl_secs" = Option<u64>, Query, description = "Validity in seconds, 1 to a week (default an hour)", example = 3600, minimum = 1, maximum = 604_800)),
    responses((status = 200, description = "The named object beside `success` and `request_id`", body = PlaybackUrlReply))
)]
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
    let Some(key) = &state.settings().playback_signing_key else {
        return Ok(Reply(PlaybackUrlReply { url: q.path, signed: false, expires: None }));
    };
    let signer = super::signed::PlaybackSigner::new(key.expose().as_bytes());
    let (url, expires) = signer.signed_path(&q.path, std::time::Duration::from_secs(ttl));
    Ok(Reply(PlaybackUrlReply { url, signed: true, expires: Some(expires) }))
}
