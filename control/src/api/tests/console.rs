//! The web console's routes: the page and its assets need no token, carry the right types and caching headers,
//! and never contain a token; the VOD API lets the page's player in (CORS).

use axum::{
    Router,
    body::Body,
    http::{HeaderMap, Request, StatusCode, header},
};
use bytes::Bytes;
use tower::ServiceExt;
use uuid::Uuid;

use super::{EDGE_TOKEN, MGMT_TOKEN, state};
use crate::{api::console::PATH, state::AppState};

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Page {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn fetch(app: &Router, req: Request<Body>) -> Page {
    let response = app.clone().oneshot(req).await.expect("infallible");
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, 4 << 20).await.expect("body");
    Page { status: parts.status, headers: parts.headers, body }
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).header(header::HOST, "console.example:8080").body(Body::empty()).unwrap()
}

fn management() -> Router {
    crate::api::management::app(state())
}

/// The asset links of the page, as it writes them (`/ui/assets/<name>?v=<fingerprint>`).
fn asset_links(html: &str) -> Vec<String> {
    html.split(['"', '\'']).filter(|part| part.starts_with("/ui/assets/")).map(str::to_owned).collect()
}

#[tokio::test]
async fn the_page_needs_no_token_and_holds_none() {
    let app = management();
    // Even a request that carries the token gets a page without it: the token lives in the browser only.
    let req = Request::get(PATH)
        .header(header::HOST, "console.example:8080")
        .header(header::AUTHORIZATION, format!("Bearer {MGMT_TOKEN}"))
        .body(Body::empty())
        .unwrap();
    for page in [fetch(&app, get(PATH)).await, fetch(&app, req).await] {
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        assert_eq!(page.header(header::CONTENT_TYPE), "text/html; charset=utf-8");
        assert_eq!(page.header(header::CACHE_CONTROL), "no-cache");
        assert_eq!(page.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        let csp = page.header(header::CONTENT_SECURITY_POLICY);
        assert!(
            csp.contains("script-src 'self'") && csp.contains("media-src 'self' blob: http://console.example:8081")
        );
        let html = page.text();
        assert!(html.contains("<video") && html.contains("<label for=\"token\">"), "{html}");
        for secret in [MGMT_TOKEN, EDGE_TOKEN, "secret-password", "Bearer "] {
            assert!(!html.contains(secret), "{secret:?} leaked into the page");
            assert!(!format!("{:?}", page.headers).contains(secret), "{secret:?} leaked into the headers");
        }
        // The VOD API on the page's host and the VOD port (the default, as no listener set it here).
        assert!(html.contains(r#"<meta name="livemix-vod-url" content="http://console.example:8081">"#), "{html}");
        assert!(!html.contains("{{"), "a placeholder was left: {html}");
        assert!(!html.contains("http://") || !html.contains("//cdn"), "no CDN");
    }
    let moved = fetch(&app, get("/ui/")).await;
    assert_eq!(moved.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(moved.header(header::LOCATION), PATH);
}

#[tokio::test]
async fn the_vod_address_comes_from_the_setting_or_a_sane_host() {
    let state: AppState = state();
    let mut settings = state.settings().clone();
    settings.vod_port = Some(18081);
    let state = state.with_settings(settings.clone());
    let app = crate::api::management::app(state.clone());
    let page = fetch(&app, get(PATH)).await.text();
    assert!(page.contains(r#"content="http://console.example:18081""#), "{page}");

    let hostile = Request::get(PATH).header(header::HOST, "x\"><script>alert(1)</script>").body(Body::empty()).unwrap();
    let page = fetch(&app, hostile).await.text();
    assert!(page.contains(r#"content="http://127.0.0.1:18081""#), "{page}");
    assert!(!page.contains("alert(1)"));

    settings.public_vod_url = Some("https://video.example.com/hls".into());
    let state = state.with_settings(settings);
    let page = fetch(&crate::api::management::app(state), get(PATH)).await;
    assert!(page.text().contains(r#"content="https://video.example.com/hls""#));
    assert!(page.header(header::CONTENT_SECURITY_POLICY).contains("connect-src 'self' https://video.example.com/hls"));
}

#[tokio::test]
async fn assets_have_their_types_and_are_cached_by_fingerprint() {
    let app = management();
    let html = fetch(&app, get(PATH)).await.text();
    let links = asset_links(&html);
    let expected = [
        ("console.js", "text/javascript; charset=utf-8"),
        ("console.css", "text/css; charset=utf-8"),
        ("hls.min.js", "text/javascript; charset=utf-8"),
        ("hls.js.LICENSE", "text/plain; charset=utf-8"),
    ];
    for (name, content_type) in expected {
        let link = links
            .iter()
            .find(|l| l.starts_with(&format!("/ui/assets/{name}?v=")))
            .unwrap_or_else(|| panic!("the page does not link {name}: {links:?}"));
        let asset = fetch(&app, get(link)).await;
        assert_eq!(asset.status, StatusCode::OK, "{link}");
        assert_eq!(asset.header(header::CONTENT_TYPE), content_type, "{link}");
        assert_eq!(asset.header(header::CACHE_CONTROL), "public, max-age=31536000, immutable", "{link}");
        assert_eq!(asset.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert!(!asset.body.is_empty());
        let etag = asset.header(header::ETAG).to_owned();
        assert!(etag.starts_with('"') && etag.len() > 2, "{etag:?}");

        // Without the fingerprint (an old page, a hand-typed URL): revalidate, and the ETag makes that cheap.
        let plain = fetch(&app, get(&format!("/ui/assets/{name}"))).await;
        assert_eq!(plain.status, StatusCode::OK);
        assert_eq!(plain.header(header::CACHE_CONTROL), "no-cache");
        let req = Request::get(format!("/ui/assets/{name}")).header(header::IF_NONE_MATCH, &etag).body(Body::empty());
        let revalidated = fetch(&app, req.unwrap()).await;
        assert_eq!(revalidated.status, StatusCode::NOT_MODIFIED);
        assert!(revalidated.body.is_empty());
        let req = Request::get(format!("/ui/assets/{name}"))
            .header(header::IF_NONE_MATCH, format!("\"stale\", W/{etag}"))
            .body(Body::empty());
        assert_eq!(fetch(&app, req.unwrap()).await.status, StatusCode::NOT_MODIFIED, "a list of tags");
    }
    let hls = fetch(&app, get("/ui/assets/hls.min.js")).await;
    assert_eq!(&hls.body[..], include_bytes!("../../../assets/vendor/hls.min.js"));
    let license = fetch(&app, get("/ui/assets/hls.js.LICENSE")).await.text();
    assert!(license.contains("Apache License"), "{license}");

    let missing = fetch(&app, get("/ui/assets/../../etc/passwd")).await;
    assert!(missing.status.is_client_error(), "{:?}", missing.status);
    let twice = fetch(&app, get("/ui/assets/console.js?v=a&v=b")).await;
    assert_eq!(twice.status, StatusCode::BAD_REQUEST);
    assert!(twice.text().contains("\"success\":false"), "a JSON error: {}", twice.text());
    let missing = fetch(&app, get("/ui/assets/nope.js")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.text().contains("no asset"), "{}", missing.text());
}

#[tokio::test]
async fn the_live_summary_is_behind_the_token() {
    let app = management();
    let uri = format!("/v1/source/{}/live", Uuid::new_v4());
    assert_eq!(fetch(&app, get(&uri)).await.status, StatusCode::UNAUTHORIZED);
    let req = Request::get("/v1/source/nope/live")
        .header(header::AUTHORIZATION, format!("Bearer {MGMT_TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let reply = fetch(&app, req).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.text().contains("not a source id"));
}

#[tokio::test]
async fn the_vod_api_lets_the_console_page_in() {
    let app = crate::api::vod::app(state());
    let uri = format!("/v1/vod/live/{}/vid.m3u8", Uuid::new_v4());
    let preflight = Request::builder()
        .method("OPTIONS")
        .uri(&uri)
        .header(header::ORIGIN, "http://console.example:8080")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
        .body(Body::empty())
        .unwrap();
    let reply = fetch(&app, preflight).await;
    assert!(reply.status.is_success(), "{:?}", reply.status);
    assert_eq!(reply.header(header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
    // Errors too, so the page can show the API's message.
    let req = Request::get("/v1/vod/live/not-a-source/x.ts")
        .header(header::ORIGIN, "http://console.example:8080")
        .body(Body::empty())
        .unwrap();
    let reply = fetch(&app, req).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.header(header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
}

/// The API reference: an open page (like the console's) whose scripts are this origin's, over the same documents
/// `/openapi.json` serves behind the token.
#[tokio::test]
async fn the_api_reference_is_bundled_and_shows_the_generated_documents() {
    let app = management();
    let page = fetch(&app, get("/ui/api")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    assert_eq!(page.header(header::CONTENT_TYPE), "text/html; charset=utf-8");
    let csp = page.header(header::CONTENT_SECURITY_POLICY);
    assert!(csp.contains("script-src 'self';") && csp.contains("connect-src 'self';"), "{csp}");
    let html = page.text();
    assert!(!html.contains("{{") && !html.contains("//cdn") && !html.contains("https://"), "{html}");
    let links = asset_links(&html);
    for name in ["swagger-ui-bundle.js", "swagger-ui.css", "api.js", "api.css"] {
        let link = links.iter().find(|l| l.starts_with(&format!("/ui/assets/{name}?v="))).expect(name);
        let asset = fetch(&app, get(link)).await;
        assert_eq!(asset.status, StatusCode::OK, "{link}");
        assert!(!asset.body.is_empty(), "{link}");
    }
    let license = fetch(&app, get("/ui/assets/swagger-ui.LICENSE")).await;
    assert_eq!(license.status, StatusCode::OK);

    let behind_token = Request::get("/openapi.json")
        .header(header::AUTHORIZATION, format!("Bearer {MGMT_TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let served = fetch(&app, behind_token).await;
    assert_eq!(served.status, StatusCode::OK);
    let open = fetch(&app, get("/ui/api/management.json")).await;
    assert_eq!((open.status, &open.body), (StatusCode::OK, &served.body), "the same document");
    for document in ["vod.json", "edge.json"] {
        let doc: serde_json::Value =
            serde_json::from_slice(&fetch(&app, get(&format!("/ui/api/{document}"))).await.body)
                .unwrap_or_else(|err| panic!("{document}: {err}"));
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "{document}");
    }
    for nope in ["/ui/api/secrets.json", "/ui/api/management", "/ui/api/..%2f..%2fetc%2fpasswd"] {
        let reply = fetch(&app, get(nope)).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{nope}");
        assert!(reply.text().contains("\"success\":false"), "{nope}: {}", reply.text());
    }
}
