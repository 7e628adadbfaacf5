//! VOD API (`:8081`): live and recording playlists and their segments, for any HLS player.

use axum::{Router, extract::State, http::StatusCode, response::Response, routing::get};
use livemix_common::{
    ApiError, ApiResult,
    api::{Path, playlist_response, segment_response},
    model::validate_segment_name,
};
use tower_http::cors::CorsLayer;
use uuid::Uuid;

use crate::{api::error::server_fault, playlist, segments::live_key, state::AppState};

pub const PLAYLIST: &str = "vid.m3u8";

/// The VOD API: public, or signed URLs only when a playback signing key is set.
pub fn app(state: AppState) -> Router {
    // Outermost, so browser players (hls.js on other origins, the web console) get CORS headers on every reply,
    // errors included, and preflights are answered before routing (which would refuse OPTIONS with a 405).
    super::app("vod", routes(), super::Access::Players, state).layer(CorsLayer::permissive())
}

fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/vod/live/{source_id}/{file}", get(live))
        .route("/v1/vod/recording/{recording_id}/{file}", get(recording))
}

fn segment_name(file: &str) -> ApiResult<&str> {
    validate_segment_name(file).map_err(ApiError::bad_request)?;
    Ok(file)
}

async fn live(State(state): State<AppState>, Path((source_id, file)): Path<(String, String)>) -> ApiResult<Response> {
    let source_id = Uuid::parse_str(&source_id)
        .map_err(|_| ApiError::bad_request(format!("{source_id:?} is not a source id (a UUID)")))?;
    if file == PLAYLIST {
        return live_playlist_for(&state, source_id).await;
    }
    let name = segment_name(&file)?;
    match state.cache.get(&live_key(source_id, name)).await {
        Ok(Some(data)) => Ok(segment_response(data)),
        Ok(None) => {
            Err(ApiError::not_found(format!("live segment {name} of source {source_id} is not (or no longer) cached")))
        }
        Err(err) => Err(server_fault(StatusCode::SERVICE_UNAVAILABLE, "the segment cache", &err)),
    }
}

async fn live_playlist_for(state: &AppState, source_id: Uuid) -> ApiResult<Response> {
    let source = state.db.get_source(source_id).await?;
    let window = state.settings.live_window(f64::from(source.segment_length));
    let segments = state.db.newest_live_segments(source_id, i64::from(state.settings.live_segments), window).await?;
    let text = playlist::live(&segments).ok_or_else(|| {
        ApiError::not_found(format!(
            "source {} has no live segments yet: is streaming on and its edge receiving video?",
            source.name
        ))
    })?;
    Ok(playlist_response(text))
}

async fn recording(
    State(state): State<AppState>,
    Path((recording_id, file)): Path<(String, String)>,
) -> ApiResult<Response> {
    ulid::Ulid::from_string(&recording_id)
        .map_err(|_| ApiError::bad_request(format!("{recording_id:?} is not a recording id (a ULID)")))?;
    let prime = state.settings.prime_segments;
    if file == PLAYLIST {
        let recording = state.db.get_recording(&recording_id).await?;
        let segments = state.db.recording_segments(&recording.id).await?;
        state.loader.prime(segments.iter().take(prime).map(|s| s.uri.clone()).collect());
        return Ok(playlist_response(playlist::recording(&segments)));
    }
    let name = segment_name(&file)?;
    let wanted = playlist::parse_served_name(name);
    let following = i64::try_from(prime).unwrap_or(i64::MAX);
    let window = state.db.recording_segment_and_next(&recording_id, wanted, following).await?;
    let Some((segment, next)) = window.split_first().filter(|(first, _)| playlist::served_name(first) == name) else {
        // Say which of the two is missing.
        let recording = state.db.get_recording(&recording_id).await?;
        return Err(ApiError::not_found(format!("recording {} has no segment {name}", recording.id)));
    };
    let data = state.loader.get(&segment.uri).await?;
    state.loader.prime(next.iter().map(|s| s.uri.clone()).collect());
    Ok(segment_response(data))
}
