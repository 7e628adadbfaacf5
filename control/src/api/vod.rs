//! VOD API (`:8081`): live and recording playlists and their segments, for any HLS player.

use axum::{Router, extract::State, response::Response, routing::get};
use livemix_common::{
    ApiError, ApiResult,
    api::{Path, playlist_response, segment_response},
    hls::{ServedSegment, live_playlist, vod_playlist},
    model::validate_segment_name,
};
use tower_http::cors::CorsLayer;
use uuid::Uuid;

use crate::{
    segments::{LoadError, live_key},
    state::AppState,
};

pub const PLAYLIST: &str = "vid.m3u8";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/vod/live/{source_id}/{file}", get(live))
        .route("/v1/vod/recording/{recording_id}/{file}", get(recording))
        // Browser players (hls.js) fetch from other origins.
        .layer(CorsLayer::permissive())
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
        Err(err) => Err(ApiError::unavailable(format!("segment cache: {err}"))),
    }
}

async fn live_playlist_for(state: &AppState, source_id: Uuid) -> ApiResult<Response> {
    let source = state.db.get_source(source_id).await?;
    let window = state.settings.live_window(f64::from(source.segment_length));
    let segments = state.db.newest_live_segments(source_id, i64::from(state.settings.live_segments), window).await?;
    let Some(first) = segments.first() else {
        return Err(ApiError::not_found(format!(
            "source {} has no live segments yet: is streaming on and its edge receiving video?",
            source.name
        )));
    };
    let media_sequence = u64::try_from(first.media_seq).unwrap_or(0);
    // DISCONTINUITY-SEQUENCE counts the discontinuities before the first listed segment.
    let disc_sequence = u64::try_from(first.disc_seq - i64::from(first.discontinuity)).unwrap_or(0);
    let served: Vec<ServedSegment> = segments
        .iter()
        .map(|s| ServedSegment {
            uri: s.name.clone(),
            duration_secs: s.length_ms as f64 / 1000.0,
            discontinuity: s.discontinuity,
        })
        .collect();
    Ok(playlist_response(live_playlist(&served, media_sequence, disc_sequence)))
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
        let mut previous_end = None;
        let served: Vec<ServedSegment> = segments
            .iter()
            .map(|s| {
                // A gap in the recording (edge offline, network blip) plays as a discontinuity.
                let gap = previous_end.is_some_and(|end: chrono::DateTime<chrono::Utc>| {
                    (s.start_ts - end).num_milliseconds().abs() > (s.length_ms / 2).max(1000)
                });
                previous_end = Some(s.end_ts);
                ServedSegment { uri: s.name.clone(), duration_secs: s.length_ms as f64 / 1000.0, discontinuity: gap }
            })
            .collect();
        return Ok(playlist_response(vod_playlist(&served)));
    }
    let name = segment_name(&file)?;
    let window = state.db.recording_segment_and_next(&recording_id, name, prime as i64).await?;
    let Some((segment, next)) = window.split_first().filter(|(first, _)| first.name == name) else {
        // Say which of the two is missing.
        let recording = state.db.get_recording(&recording_id).await?;
        return Err(ApiError::not_found(format!("recording {} has no segment {name}", recording.id)));
    };
    let data = state.loader.get(&segment.uri).await.map_err(|err| match err {
        LoadError::Missing(_) => ApiError::not_found(err.to_string()),
        LoadError::Store(_) => ApiError::unavailable(err.to_string()),
    })?;
    state.loader.prime(next.iter().map(|s| s.uri.clone()).collect());
    Ok(segment_response(data))
}
