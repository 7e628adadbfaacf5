//! VOD API (`:8081`): live and recording playlists and their segments, for any HLS player.
//!
//! Served from this replica's memory wherever it can be (see `crate::segments` and `crate::live_playlists`),
//! with the validators and cache headers CDNs and players understand (`crate::api::conditional`).

use axum::http::{Extensions, StatusCode, Version};
use axum::{
    Router,
    body::Body,
    extract::State,
    http::{HeaderMap, HeaderValue, header},
    response::Response,
    routing::get,
};
use livemix_common::{
    ApiError, ApiResult,
    api::{M3U8_CONTENT_TYPE, Path, Query, TS_CONTENT_TYPE},
    model::{Segment, validate_segment_name},
};
use tower_http::{
    compression::{
        CompressionLayer,
        predicate::{Predicate, SizeAbove},
    },
    cors::CorsLayer,
};
use uuid::Uuid;

use crate::{
    api::conditional::{Representation, reply},
    domain::ranges::RangeQuery,
    live_playlists::LivePlaylist,
    segments::SegmentBytes,
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
    super::app("vod", routes(), super::Access::Players, state)
        // Long playlists (a day of a time range is megabytes of text) go gzipped to players that ask; segments,
        // already compressed video, and short live playlists go as they are.
        .layer(CompressionLayer::new().gzip(true).compress_when(SizeAbove::new(COMPRESS_ABOVE_BYTES).and(
            |_: StatusCode, _: Version, headers: &HeaderMap, _: &Extensions| {
                headers
                    .get(header::CONTENT_TYPE)
                    .is_some_and(|t| t.as_bytes().starts_with(M3U8_CONTENT_TYPE.as_bytes()))
            },
        )))
        .layer(CorsLayer::permissive())
}

/// Playlists shorter than this go uncompressed: a live window is a few hundred bytes.
const COMPRESS_ABOVE_BYTES: u64 = 16 * 1024;

fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/vod/live/{source_id}/{file}", get(live))
        .route("/v1/vod/recording/{recording_id}/{file}", get(recording))
        .route("/v1/vod/source/{source_id}/{file}", get(time_range))
}

/// The VOD API's operations, for [`crate::openapi`].
#[derive(utoipa::OpenApi)]
#[openapi(paths(live, recording, time_range))]
pub(crate) struct Operations;

/// The export files of a recording or a time range.
pub const EXPORT_MP4: &str = "export.mp4";
pub const EXPORT_TS: &str = "export.ts";

/// `Cache-Control` of a time-range playlist that may still grow (it ends within the last few minutes).
const RANGE_PLAYLIST_CACHE: &str = "public, max-age=2";
/// ... and of one that ended minutes ago.
const SETTLED_RANGE_PLAYLIST_CACHE: &str = "public, max-age=60";

fn segment_name(file: &str) -> ApiResult<&str> {
    validate_segment_name(file).map_err(ApiError::bad_request)?;
    Ok(file)
}

fn segment_reply(request: &HeaderMap, body: &SegmentBytes, cache_control: &'static str) -> Response {
    let rep = Representation {
        etag: &body.etag,
        content_type: TS_CONTENT_TYPE,
        cache_control: HeaderValue::from_static(cache_control),
        ranges: true,
    };
    reply(request, &body.data, &rep)
}

#[utoipa::path(
    get,
    path = "/v1/vod/live/{source_id}/{file}",
    tag = "vod",
    summary = "A source's live playlist (the newest segments) or one of its segments.",
    params(
        ("source_id" = Uuid, Path, description = "The source's id"),
        ("file" = String, Path, description = "`vid.m3u8` or the name of a segment it lists (1 to 255 letters, digits, `-`, `_`, `.`, `~`, `+` or `=`, never `..`)", example = "vid.m3u8", pattern = r"^(?!.*\.\.)[A-Za-z0-9._~+=-]{1,255}$"),
        ("Range" = Option<String>, Header, description = "A byte range of a segment (`bytes=0-1023`); answered with 206 or 416"),
        ("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier reply; answered with 304 while it holds")
    ),
    responses(
        (status = 200, description = "A playlist (`vid.m3u8`), a segment", content(
            (String = "application/vnd.apple.mpegurl"),
            (crate::openapi::Binary = "video/mp2t")
        )),
        (status = 206, description = "The asked byte range of a segment", content((crate::openapi::Binary = "video/mp2t"))),
        (status = 304, description = "Not modified since the ETag given in `If-None-Match`"),
        (status = 416, description = "The asked byte range lies outside the segment")
    )
)]
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
    let body = state.live().segment(source_id, segment_name(&file)?).await?;
    Ok(segment_reply(&request, &body, LIVE_SEGMENT_CACHE))
}

async fn live_playlist_for(state: &AppState, source_id: Uuid, request: &HeaderMap) -> ApiResult<Response> {
    match state.live().playlist(source_id).await? {
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

#[utoipa::path(
    get,
    path = "/v1/vod/recording/{recording_id}/{file}",
    tag = "vod",
    summary = "A recording's playlist, its segments, or its export as MP4 or MPEG-TS.",
    params(
        ("recording_id" = String, Path, description = "The recording's id (a ULID)", pattern = r"^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$"),
        ("file" = String, Path, description = "`vid.m3u8`, a segment it lists (1 to 255 letters, digits, `-`, `_`, `.`, `~`, `+` or `=`, never `..`), `export.mp4` or `export.ts`", example = "vid.m3u8", pattern = r"^(?!.*\.\.)[A-Za-z0-9._~+=-]{1,255}$"),
        ("Range" = Option<String>, Header, description = "A byte range of a segment (`bytes=0-1023`); answered with 206 or 416"),
        ("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier reply; answered with 304 while it holds")
    ),
    responses(
        (status = 200, description = "A playlist (`vid.m3u8`), a segment, or an export download", content(
            (String = "application/vnd.apple.mpegurl"),
            (crate::openapi::Binary = "video/mp2t"),
            (crate::openapi::Binary = "video/mp4")
        )),
        (status = 206, description = "The asked byte range of a segment", content((crate::openapi::Binary = "video/mp2t"))),
        (status = 304, description = "Not modified since the ETag given in `If-None-Match`"),
        (status = 416, description = "The asked byte range lies outside the segment")
    )
)]
async fn recording(
    State(state): State<AppState>,
    Path((recording_id, file)): Path<(String, String)>,
    request: HeaderMap,
) -> ApiResult<Response> {
    if file == EXPORT_MP4 || file == EXPORT_TS {
        let (recording, segments) = state.recordings().export_segments(&recording_id).await?;
        let name = format!("{}-{}", recording.source_name.as_deref().unwrap_or("recording"), recording.id);
        return export(&state, &file, &name, segments).await;
    }
    if file == PLAYLIST {
        let rendered = state.recordings().playlist(&recording_id).await?;
        let rep = Representation {
            etag: &rendered.etag,
            content_type: M3U8_CONTENT_TYPE,
            cache_control: HeaderValue::from_static(RECORDING_PLAYLIST_CACHE),
            ranges: false,
        };
        return Ok(reply(&request, &rendered.text, &rep));
    }
    let (body, unique_name) = state.recordings().segment(&recording_id, segment_name(&file)?).await?;
    let cache_control = if unique_name { RECORDED_SEGMENT_CACHE } else { LEGACY_SEGMENT_CACHE };
    Ok(segment_reply(&request, &body, cache_control))
}

/// Any time range of a source (`?start=&end=`, RFC 3339 or epoch seconds): its playlist, its exports, and the
/// segments the playlist lists.
#[utoipa::path(
    get,
    path = "/v1/vod/source/{source_id}/{file}",
    tag = "vod",
    summary = "Any time range of a source: its playlist, the segments it lists, its export as MP4 or MPEG-TS.",
    params(
        ("source_id" = Uuid, Path, description = "The source's id"),
        ("file" = String, Path, description = "`vid.m3u8`, a segment it lists (1 to 255 letters, digits, `-`, `_`, `.`, `~`, `+` or `=`, never `..`), `export.mp4` or `export.ts`", example = "vid.m3u8", pattern = r"^(?!.*\.\.)[A-Za-z0-9._~+=-]{1,255}$"),
        ("start" = Option<String>, Query, description = "Start of the range (playlist and exports): RFC 3339 or seconds since the Unix epoch", example = "2026-12-01T10:00:00Z"),
        ("end" = Option<String>, Query, description = "End of the range (playlist and exports): RFC 3339 or seconds since the Unix epoch", example = "2026-12-01T11:00:00Z"),
        ("Range" = Option<String>, Header, description = "A byte range of a segment (`bytes=0-1023`); answered with 206 or 416"),
        ("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier reply; answered with 304 while it holds")
    ),
    responses(
        (status = 200, description = "A playlist (`vid.m3u8`), a segment, or an export download", content(
            (String = "application/vnd.apple.mpegurl"),
            (crate::openapi::Binary = "video/mp2t"),
            (crate::openapi::Binary = "video/mp4")
        )),
        (status = 206, description = "The asked byte range of a segment", content((crate::openapi::Binary = "video/mp2t"))),
        (status = 304, description = "Not modified since the ETag given in `If-None-Match`"),
        (status = 416, description = "The asked byte range lies outside the segment")
    )
)]
async fn time_range(
    State(state): State<AppState>,
    Path((source_id, file)): Path<(String, String)>,
    Query(range): Query<RangeQuery>,
    request: HeaderMap,
) -> ApiResult<Response> {
    let source = Uuid::parse_str(&source_id)
        .map_err(|_| ApiError::bad_request(format!("{source_id:?} is not a source id (a UUID)")))?;
    let ranges = state.ranges();
    if file == PLAYLIST || file == EXPORT_MP4 || file == EXPORT_TS {
        let range = ranges.range(&range)?;
        if file == PLAYLIST {
            let text = bytes::Bytes::from(ranges.playlist(source, range).await?);
            let etag = crate::segments::etag_of(&text);
            // A range that ended a while ago only changes if retention deletes from it or a late report fills it.
            let settled = range.end < chrono::Utc::now() - chrono::TimeDelta::minutes(5);
            let rep = Representation {
                etag: &etag,
                content_type: M3U8_CONTENT_TYPE,
                cache_control: HeaderValue::from_static(if settled {
                    SETTLED_RANGE_PLAYLIST_CACHE
                } else {
                    RANGE_PLAYLIST_CACHE
                }),
                ranges: false,
            };
            return Ok(reply(&request, &text, &rep));
        }
        let segments = ranges.recorded(source, range).await?;
        let name = format!("{source}-{}-{}", range.start.format("%Y%m%dT%H%M%SZ"), range.end.format("%Y%m%dT%H%M%SZ"));
        return export(&state, &file, &name, segments).await;
    }
    let (body, unique_name) = ranges.segment(source, segment_name(&file)?).await?;
    let cache_control = if unique_name { RECORDED_SEGMENT_CACHE } else { LEGACY_SEGMENT_CACHE };
    Ok(segment_reply(&request, &body, cache_control))
}

/// An export download, `name` its file name without the extension.
async fn export(state: &AppState, file: &str, name: &str, segments: Vec<Segment>) -> ApiResult<Response> {
    let exporter = state.exporter();
    let safe: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect();
    let mut builder = Response::builder()
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::CONTENT_DISPOSITION, format!("attachment; filename=\"{safe}.{}\"", extension(file)));
    let body = if file == EXPORT_MP4 {
        builder = builder.header(header::CONTENT_TYPE, "video/mp4");
        exporter.mp4(segments).await?
    } else {
        let (length, body) = exporter.ts(segments);
        builder = builder.header(header::CONTENT_TYPE, TS_CONTENT_TYPE).header(header::CONTENT_LENGTH, length);
        body
    };
    builder.body(Body::from_stream(body)).map_err(|err| ApiError::internal(format!("building an export reply: {err}")))
}

fn extension(file: &str) -> &str {
    file.rsplit_once('.').map_or(file, |(_, ext)| ext)
}
