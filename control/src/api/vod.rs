//! VOD API (`:8081`): live and recording playlists and their segments, for any HLS player.
//!
//! Served from this replica's memory wherever it can be (see `crate::segments` and `crate::live_playlists`),
//! with the validators and cache headers CDNs and players understand (`crate::api::conditional`).

use std::sync::Arc;

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode},
    response::Response,
    routing::get,
};
use livemix_common::{
    ApiError, ApiResult,
    api::{M3U8_CONTENT_TYPE, Path, TS_CONTENT_TYPE},
    model::validate_segment_name,
};
use tower_http::cors::CorsLayer;
use uuid::Uuid;

use crate::{
    api::{
        conditional::{Representation, reply},
        error::{server_fault, shared_db_error},
    },
    db::DbError,
    live_playlists::{LivePlaylist, Rendered},
    playlist,
    recording_playlists::RenderedRecording,
    segments::Body,
    state::AppState,
};

pub const PLAYLIST: &str = "vid.m3u8";

/// `Cache-Control` of a live segment. Its bytes never change while its name can be listed: a restarted encoder
/// reuses a name only after a minute (`db::RETRY_WINDOW`), far longer than any cache may keep it under this.
const LIVE_SEGMENT_CACHE: &str = "public, max-age=30, immutable";
/// `Cache-Control` of a recorded segment: its served name is unique for good (`{run}-{seq}.ts`).
const RECORDED_SEGMENT_CACHE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of a segment from an edge that predates segment ids: such an edge rewrote an object under the
/// same name when its encoder restarted.
const LEGACY_SEGMENT_CACHE: &str = "public, max-age=300";
/// `Cache-Control` of a recording playlist: it grows while the recording is active.
const RECORDING_PLAYLIST_CACHE: &str = "public, max-age=1";

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

fn segment_reply(request: &HeaderMap, body: &Body, cache_control: &'static str) -> Response {
    let rep = Representation {
        etag: &body.etag,
        content_type: TS_CONTENT_TYPE,
        cache_control: HeaderValue::from_static(cache_control),
        ranges: true,
    };
    reply(request, &body.data, &rep)
}

async fn live(
    State(state): State<AppState>,
    Path((source_id, file)): Path<(String, String)>,
    request: HeaderMap,
) -> ApiResult<Response> {
    let source_id = Uuid::parse_str(&source_id)
        .map_err(|_| ApiError::bad_request(format!("{source_id:?} is not a source id (a UUID)")))?;
    if file == PLAYLIST {
        return live_playlist_for(&state, source_id, &request).await;
    }
    let name = segment_name(&file)?;
    if !live_listed(&state, source_id, name).await? {
        return Err(ApiError::not_found(format!("source {source_id} lists no live segment {name}")));
    }
    match state.hot.live(&state.cache, source_id, name).await {
        Ok(Some(body)) => Ok(segment_reply(&request, &body, LIVE_SEGMENT_CACHE)),
        Ok(None) => {
            Err(ApiError::not_found(format!("live segment {name} of source {source_id} is not (or no longer) cached")))
        }
        Err(err) => Err(server_fault(StatusCode::SERVICE_UNAVAILABLE, "the segment cache", &*err)),
    }
}

/// Whether players may get live segment `name`: this replica's playlist lists it, or (the playlist here lags the
/// database, or the player is a little behind) the live index does. Bytes an edge sent for a segment that was
/// refused are never listed, so never served.
async fn live_listed(state: &AppState, source_id: Uuid, name: &str) -> ApiResult<bool> {
    let playlist = state.playlists.get(source_id, render_live(state, source_id)).await;
    if let Ok(LivePlaylist::Ready(rendered)) = &playlist
        && rendered.lists(name)
    {
        return Ok(true);
    }
    Ok(state.db.is_live_listed(source_id, name).await?)
}

async fn live_playlist_for(state: &AppState, source_id: Uuid, request: &HeaderMap) -> ApiResult<Response> {
    let playlist = state.playlists.get(source_id, render_live(state, source_id)).await.map_err(shared_db_error)?;
    match playlist {
        LivePlaylist::Ready(rendered) => {
            let rep = Representation {
                etag: &rendered.etag,
                content_type: M3U8_CONTENT_TYPE,
                cache_control: HeaderValue::from_str(&format!("public, max-age={}", rendered.max_age_secs()))
                    .unwrap_or_else(|_| HeaderValue::from_static("no-cache")),
                ranges: false,
            };
            Ok(reply(request, &rendered.text, &rep))
        }
        LivePlaylist::Empty { name, .. } => Err(ApiError::not_found(format!(
            "source {name} has no live segments yet: is streaming on and its edge receiving video?"
        ))),
    }
}

/// The live playlist of a source as the database has it now.
async fn render_live(state: &AppState, source_id: Uuid) -> Result<LivePlaylist, DbError> {
    let source = state.db.get_source(source_id).await?;
    let window = state.settings.live_window(f64::from(source.segment_length));
    let segments = state.db.newest_live_segments(source_id, i64::from(state.settings.live_segments), window).await?;
    Ok(match playlist::live(&segments) {
        Some(text) => {
            let names = segments.iter().map(|s| s.name.as_str().into());
            LivePlaylist::Ready(Arc::new(Rendered::new(text, playlist::live_target_duration(&segments), names)))
        }
        None => LivePlaylist::Empty {
            name: source.name.into(),
            segment_secs: u32::try_from(source.segment_length).unwrap_or(1),
        },
    })
}

/// A recording's playlist as the database has it now.
async fn render_recording(state: &AppState, id: &str, prime: usize) -> Result<Arc<RenderedRecording>, DbError> {
    let recording = state.db.get_recording(id).await?;
    let segments = state.db.recording_segments(&recording.id).await?;
    let first_uris = segments.iter().take(prime).map(|s| s.uri.clone()).collect();
    Ok(Arc::new(RenderedRecording::new(playlist::recording(&segments), first_uris, recording.active)))
}

async fn recording(
    State(state): State<AppState>,
    Path((recording_id, file)): Path<(String, String)>,
    request: HeaderMap,
) -> ApiResult<Response> {
    ulid::Ulid::from_string(&recording_id)
        .map_err(|_| ApiError::bad_request(format!("{recording_id:?} is not a recording id (a ULID)")))?;
    let prime = state.settings.prime_segments;
    if file == PLAYLIST {
        let render = render_recording(&state, &recording_id, prime);
        let rendered = state.recording_playlists.get(&recording_id, render).await.map_err(shared_db_error)?;
        state.loader.prime(rendered.first_uris.clone());
        let rep = Representation {
            etag: &rendered.etag,
            content_type: M3U8_CONTENT_TYPE,
            cache_control: HeaderValue::from_static(RECORDING_PLAYLIST_CACHE),
            ranges: false,
        };
        return Ok(reply(&request, &rendered.text, &rep));
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
    let body = state.loader.get(&segment.uri).await?;
    state.loader.prime(next.iter().map(|s| s.uri.clone()).collect());
    let cache_control = if segment.run.is_some() { RECORDED_SEGMENT_CACHE } else { LEGACY_SEGMENT_CACHE };
    Ok(segment_reply(&request, &body, cache_control))
}
