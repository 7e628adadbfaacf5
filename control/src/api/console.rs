//! The web console (`/ui` on the management port): a page that lists sources and recordings, plays them with
//! hls.js and starts and stops streaming and recordings through the management API.
//!
//! Everything it needs is compiled into the binary (no CDN, works offline). The page and its assets need no
//! token: the page asks for the management token, keeps it in the browser's storage and sends it as
//! `Authorization: Bearer` on every API call, so it never appears in a URL, a log or this HTML.

use std::sync::LazyLock;

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::get,
};
use livemix_common::{
    ApiError, ApiResult,
    api::{Path, Query},
};
use serde::Deserialize;

use crate::state::AppState;

/// Where the console lives on the management port.
pub const PATH: &str = "/ui";

/// The VOD port browsers are sent to when neither `--public-vod-url` nor the listener says otherwise.
const DEFAULT_VOD_PORT: u16 = 8081;

const PAGE: &str = include_str!("../../assets/console.html");

/// A file the page loads, served from memory.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/console.js"),
    },
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/console.css"),
    },
    Asset {
        name: "hls.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/vendor/hls.min.js"),
    },
    Asset {
        name: "hls.js.LICENSE",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("../../assets/vendor/hls.js.LICENSE"),
    },
    Asset {
        name: "api.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/api.js"),
    },
    Asset { name: "api.css", content_type: "text/css; charset=utf-8", body: include_bytes!("../../assets/api.css") },
    Asset {
        name: "swagger-ui-bundle.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/vendor/swagger-ui-bundle.js"),
    },
    Asset {
        name: "swagger-ui.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/vendor/swagger-ui.css"),
    },
    Asset {
        name: "swagger-ui.LICENSE",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("../../assets/vendor/swagger-ui.LICENSE"),
    },
];

/// The API reference's page (`/ui/api`).
const API_PAGE: &str = include_str!("../../assets/api.html");

/// A fingerprint of every asset: the page links `?v=<it>`, so browsers may cache assets for good and still get
/// new ones after an upgrade.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    // FNV-1a: stable across builds and Rust versions (unlike `DefaultHasher`), and no dependency for it.
    let hash = ASSETS
        .iter()
        .flat_map(|a| a.name.as_bytes().iter().chain(a.body))
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3));
    format!("{hash:016x}")
});

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

/// The console's routes, open to all: the page asks for the token itself.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(PATH, get(page))
        .route("/ui/", get(to_page))
        .route("/ui/assets/{file}", get(asset))
        .route("/ui/api", get(api_page))
        .route("/ui/api/{document}", get(api_document))
}

/// The console's operations, for [`crate::openapi`].
#[derive(utoipa::OpenApi)]
#[openapi(paths(page, to_page, asset, api_page, api_document))]
pub(crate) struct Operations;

/// The browsable API reference: Swagger UI over the documents below.
#[utoipa::path(
    get,
    path = "/ui/api",
    tag = "console",
    summary = "The browsable API reference of the management, VOD and edge-facing APIs.",
    responses((status = 200, description = "The page", content_type = "text/html", body = String))
)]
async fn api_page() -> Response {
    let html = API_PAGE.replace("{{VERSION}}", &VERSION);
    // Swagger UI sets inline styles; scripts stay this origin's own.
    html_reply(
        html,
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
         font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    )
}

/// The OpenAPI document of one API, as generated from the code (`docs/openapi/` holds the same). Open like the
/// console's assets: it describes the API (as the repository does), it holds nothing of this deployment.
#[utoipa::path(
    get,
    path = "/ui/api/{document}",
    tag = "console",
    summary = "An API's OpenAPI document, for the API reference page.",
    params(("document" = String, Path, description = "`management.json`, `vod.json` or `edge.json`", example = "management.json")),
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object),
        (status = 404, description = "No such document", body = livemix_common::api::ErrorReply)
    )
)]
async fn api_document(Path(document): Path<String>) -> ApiResult<Response> {
    match document.strip_suffix(".json") {
        Some(service @ ("management" | "vod" | "edge")) => Ok(crate::openapi::reply(service)),
        _ => Err(ApiError::not_found(format!("no API document {document:?}: management.json, vod.json or edge.json"))),
    }
}

/// `/ui/` is the page too.
#[utoipa::path(
    get,
    path = "/ui/",
    tag = "console",
    summary = "Redirects to the console's page.",
    responses((status = 308, description = "To `/ui`"))
)]
async fn to_page() -> Redirect {
    Redirect::permanent(PATH)
}

/// The page, with the VOD API's address filled in and the asset fingerprint in its links.
#[utoipa::path(
    get,
    path = "/ui",
    tag = "console",
    summary = "The web console's page (it asks for the management token itself).",
    responses((status = 200, description = "The page", content_type = "text/html", body = String))
)]
async fn page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let vod = vod_base_url(&state, &headers);
    let html = PAGE.replace("{{VOD_URL}}", &escape_html(&vod)).replace("{{VERSION}}", &VERSION);
    // Only this origin's scripts run, so names an attacker gave a source cannot; video and playlists come from
    // the VOD API (hls.js plays through blob: URLs and may start a blob: worker).
    html_reply(
        html,
        &format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self' {vod}; media-src 'self' blob: {vod}; worker-src blob:; \
             base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        ),
    )
}

/// A page of the console, revalidated on every load, with this content security policy.
fn html_reply(html: String, csp: &str) -> Response {
    let mut response = (StatusCode::OK, html).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(REVALIDATE));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if let Ok(csp) = HeaderValue::from_str(csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    response
}

#[derive(Debug, Deserialize)]
struct AssetQuery {
    v: Option<String>,
}

/// An asset; cached for good when asked for by the current fingerprint, revalidated (ETag) otherwise.
#[utoipa::path(
    get,
    path = "/ui/assets/{file}",
    tag = "console",
    summary = "A script or style sheet of the console.",
    params(
        ("file" = String, Path, description = "The asset's name"),
        ("v" = Option<String>, Query, description = "The assets' fingerprint: cached for good when it is the current one")
    ),
    responses(
        (status = 200, description = "The asset", content_type = "application/javascript", body = String),
        (status = 304, description = "Not modified"),
        (status = 404, description = "No such asset", body = livemix_common::api::ErrorReply)
    )
)]
async fn asset(Path(file): Path<String>, Query(q): Query<AssetQuery>, headers: HeaderMap) -> ApiResult<Response> {
    let asset = ASSETS
        .iter()
        .find(|a| a.name == file)
        .ok_or_else(|| ApiError::not_found(format!("the console has no asset {file:?}")))?;
    let etag = format!("\"{}\"", *VERSION);
    let cache = if q.v.as_deref() == Some(VERSION.as_str()) { IMMUTABLE } else { REVALIDATE };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').map(|t| t.trim().trim_start_matches("W/")).any(|t| t == etag || t == "*"));
    let mut response =
        if fresh { StatusCode::NOT_MODIFIED.into_response() } else { (StatusCode::OK, asset.body).into_response() };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, etag);
    }
    Ok(response)
}

/// Where the browser finds the VOD API: `--public-vod-url`, else the host the page was loaded from on the VOD
/// port (plain HTTP unless a proxy said `X-Forwarded-Proto: https`).
fn vod_base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.settings().public_vod_url {
        return url.clone();
    }
    let port = state.settings().vod_port.unwrap_or(DEFAULT_VOD_PORT);
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).and_then(host_name).unwrap_or("127.0.0.1");
    let scheme = match headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()) {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}:{port}")
}

/// The host of a `Host` header without its port, when it is a plain name or address (anything else is ignored:
/// it ends up in the page and its security policy).
fn host_name(host: &str) -> Option<&str> {
    let name = if host.starts_with('[') {
        // IPv6 literal: keep the brackets.
        &host[..=host.find(']')?]
    } else {
        host.split(':').next()?
    };
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'));
    valid.then_some(name)
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_keep_only_the_host() {
        assert_eq!(host_name("example.com:8080"), Some("example.com"));
        assert_eq!(host_name("127.0.0.1"), Some("127.0.0.1"));
        assert_eq!(host_name("[::1]:8080"), Some("[::1]"));
        assert_eq!(host_name("evil\"><script>"), None);
        assert_eq!(host_name("a b"), None);
        assert_eq!(host_name(""), None);
        assert_eq!(host_name("[::1"), None);
    }

    #[test]
    fn the_fingerprint_is_stable_hex() {
        assert_eq!(VERSION.len(), 16);
        assert!(VERSION.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
