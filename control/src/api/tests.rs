//! The three APIs through `app(state)`, in process: memory cache and bus, a local store and a database pool
//! that never connects (nothing listens on its port). Everything here is decided before PostgreSQL, or shows
//! what a client sees when PostgreSQL is down. No services, a few seconds.

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
};
use bytes::Bytes;
use clap::Parser;
use livemix_common::{
    api::REQUEST_ID_HEADER, bus::memory::MemoryBus, cache::memory::MemoryCache, store::local::LocalStore,
};
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use tower::ServiceExt;
use uuid::Uuid;

use crate::{Backends, config::Settings, db::Db, segments::live_key, state::AppState};

mod console;

const MGMT_TOKEN: &str = "mgmt-secret";
const EDGE_TOKEN: &str = "edge-secret";

#[derive(Parser)]
struct SettingsOnly {
    #[command(flatten)]
    settings: Settings,
}

/// A control node's state on in-process backends and a database that is down.
fn state() -> AppState {
    let settings = SettingsOnly::parse_from([
        "livemix-control",
        &format!("--management-token={MGMT_TOKEN}"),
        &format!("--edge-token={EDGE_TOKEN}"),
        "--max-segment-bytes=1000",
    ])
    .settings;
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(100))
        .connect_lazy("postgres://livemix:secret-password@127.0.0.1:1/livemix")
        .expect("a valid URL");
    let backends = Backends {
        db: Db::from_pool(pool, settings.reachable_within()),
        cache: Arc::new(MemoryCache::new(1 << 20)),
        store: Arc::new(LocalStore::new(std::env::temp_dir().join("livemix-control-unit-tests"))),
        bus: Arc::new(MemoryBus::default()),
    };
    AppState::new(settings, backends)
}

struct Reply {
    status: StatusCode,
    request_id: String,
    content_type: String,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| panic!("{err}: {:?}", self.body))
    }

    fn message(&self) -> String {
        self.json()["error"]["message"].as_str().unwrap_or_default().to_owned()
    }

    fn reason(&self) -> String {
        self.json()["error"]["reason"].as_str().unwrap_or_default().to_owned()
    }

    /// A JSON error reply with this status whose message mentions `needle`.
    #[track_caller]
    fn assert_error(&self, status: u16, needle: &str) {
        assert_eq!(self.status.as_u16(), status, "{:?}", self.body);
        let body = self.json();
        assert_eq!(body["success"], false);
        assert_eq!(body["error"]["code"], status);
        assert_eq!(body["request_id"].as_str(), Some(self.request_id.as_str()));
        assert!(self.message().contains(needle), "{:?} should mention {needle:?}", self.message());
    }

    /// A server fault: a generic message with the request id, nothing of the driver's text.
    #[track_caller]
    fn assert_generic_fault(&self, status: u16) {
        self.assert_error(status, &self.request_id.clone());
        let text = String::from_utf8_lossy(&self.body).to_lowercase();
        for leak in ["sqlx", "pool", "127.0.0.1", "connect", "secret", "timed out", "database:"] {
            assert!(!text.contains(leak), "{leak:?} leaked into {text}");
        }
    }
}

async fn send(app: &Router, req: Request<Body>) -> Reply {
    let response = app.clone().oneshot(req).await.expect("infallible");
    let status = response.status();
    let header_text = |name| response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let (request_id, content_type) = (header_text(REQUEST_ID_HEADER), header_text(header::CONTENT_TYPE.as_str()));
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
    Reply { status, request_id, content_type, body }
}

fn get(uri: &str, token: Option<&str>) -> Request<Body> {
    let mut req = Request::get(uri);
    if let Some(token) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    req.body(Body::empty()).unwrap()
}

fn post_json(uri: &str, token: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap()
}

#[tokio::test]
async fn management_requires_its_bearer_token_but_probes_do_not() {
    let app = super::management::app(state());
    let missing = send(&app, get("/v1/source", None)).await;
    missing.assert_error(401, "Authorization");
    assert_eq!(missing.reason(), "unauthorized");
    send(&app, get("/v1/source", Some("wrong"))).await.assert_error(401, "invalid bearer token");
    send(&app, get("/v1/source", Some(EDGE_TOKEN))).await.assert_error(401, "invalid");

    let alive = send(&app, get("/liveness/alive", None)).await;
    assert_eq!(alive.status, StatusCode::OK);
    assert_eq!(alive.json()["success"], true);
    assert_eq!(alive.json()["request_id"].as_str(), Some(alive.request_id.as_str()));

    let metrics = send(&app, get("/metrics", None)).await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(metrics.content_type.starts_with("application/openmetrics-text"));
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("livemix_control_http_requests_total{service=\"management\",method=\"GET\",status=\"401\"} 3"),
        "{text}"
    );
}

#[tokio::test]
async fn bad_input_gets_400_before_the_database() {
    let app = super::management::app(state());
    let bad_json = send(&app, post_json("/v1/source", MGMT_TOKEN, "{\"name\": ")).await;
    bad_json.assert_error(400, "");
    assert_eq!(bad_json.reason(), "bad_request");
    send(&app, post_json("/v1/source", MGMT_TOKEN, r#"{"name": 5}"#)).await.assert_error(400, "");
    send(&app, post_json("/v1/source", MGMT_TOKEN, r#"{"name": "a b", "segment_len": 2}"#))
        .await
        .assert_error(400, "invalid source name");
    send(&app, post_json("/v1/source", MGMT_TOKEN, r#"{"name": "cam", "segment_len": 0}"#))
        .await
        .assert_error(400, "segment_len");
    send(&app, get("/v1/source/not-a-uuid", Some(MGMT_TOKEN))).await.assert_error(400, "not a source id");
    send(&app, get("/v1/recording/nope", Some(MGMT_TOKEN))).await.assert_error(400, "not a recording id");
    let id = Uuid::new_v4();
    let req = Request::put(format!("/v1/source/{id}/streaming?new_state=maybe"))
        .header(header::AUTHORIZATION, format!("Bearer {MGMT_TOKEN}"))
        .body(Body::empty())
        .unwrap();
    send(&app, req).await.assert_error(400, "new_state must be true or false");
    let big = format!(r#"{{"name": "cam", "segment_len": 2, "description": "{}"}}"#, "x".repeat(5000));
    send(&app, post_json("/v1/source", MGMT_TOKEN, big)).await.assert_error(400, "description is longer");
    let too_large = format!(r#"{{"name": "cam", "segment_len": 2, "description": "{}"}}"#, "x".repeat(3 << 20));
    let reply = send(&app, post_json("/v1/source", MGMT_TOKEN, too_large)).await;
    reply.assert_error(413, "");
    assert_eq!(reply.reason(), "payload_too_large");
}

#[tokio::test]
async fn unknown_routes_and_methods_have_their_own_reasons() {
    let app = super::management::app(state());
    let reply = send(&app, get("/v1/nothing-here", Some(MGMT_TOKEN))).await;
    reply.assert_error(404, "no such route");
    assert_eq!(reply.reason(), "no_such_route");
    let req = Request::patch("/v1/source").body(Body::empty()).unwrap();
    let reply = send(&app, req).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{:?}", reply.body);
}

#[tokio::test]
async fn a_database_outage_is_a_generic_5xx_with_the_request_id() {
    let state = state();
    let management = super::management::app(state.clone());
    let reply = send(&management, get("/v1/source", Some(MGMT_TOKEN))).await;
    reply.assert_generic_fault(503);
    assert_eq!(reply.reason(), "unavailable");
    send(&management, get(&format!("/v1/source/{}", Uuid::new_v4()), Some(MGMT_TOKEN))).await.assert_generic_fault(503);

    // Readiness names what is down and no more (the VOD port is public).
    let ready = send(&management, get("/liveness/ready", None)).await;
    ready.assert_error(503, "database");
    ready.assert_generic_fault(503);
    assert!(!ready.message().contains("cache") && !ready.message().contains("bus"), "{}", ready.message());

    let vod = super::vod::app(state);
    send(&vod, get(&format!("/v1/vod/live/{}/vid.m3u8", Uuid::new_v4()), None)).await.assert_generic_fault(503);
    send(&vod, get(&format!("/v1/vod/recording/{}/vid.m3u8", ulid::Ulid::new()), None)).await.assert_generic_fault(503);
}

#[tokio::test]
async fn vod_serves_live_segments_from_the_cache_and_refuses_bad_paths() {
    let state = state();
    let source = Uuid::new_v4();
    state
        .cache
        .put(&live_key(source, "seg-1.ts"), Bytes::from_static(b"\x47ts"), Duration::from_secs(60))
        .await
        .unwrap();
    let vod = super::vod::app(state);
    let hit = send(&vod, get(&format!("/v1/vod/live/{source}/seg-1.ts"), None)).await;
    assert_eq!(hit.status, StatusCode::OK);
    assert_eq!(hit.content_type, "video/mp2t");
    assert_eq!(hit.body, Bytes::from_static(b"\x47ts"));
    send(&vod, get(&format!("/v1/vod/live/{source}/seg-2.ts"), None))
        .await
        .assert_error(404, "not (or no longer) cached");
    send(&vod, get("/v1/vod/live/nope/vid.m3u8", None)).await.assert_error(400, "not a source id");
    send(&vod, get(&format!("/v1/vod/live/{source}/a..b.ts"), None)).await.assert_error(400, "..");
    send(&vod, get("/v1/vod/recording/nope/vid.m3u8", None)).await.assert_error(400, "not a recording id");
    // Players on other origins may read it.
    let req = Request::get(format!("/v1/vod/live/{source}/seg-1.ts"))
        .header(header::ORIGIN, "https://player.example")
        .body(Body::empty())
        .unwrap();
    let response = vod.clone().oneshot(req).await.unwrap();
    assert!(response.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
}

/// `POST /v1/new-segment` with good headers except `overrides` (a `None` value removes the header).
fn new_segment(overrides: &[(&str, Option<&str>)], body: &'static [u8]) -> Request<Body> {
    let start = format!("{:.3}", chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
    let source = Uuid::new_v4().to_string();
    let mut headers: Vec<(&str, Option<String>)> = vec![
        ("Source-ID", Some(source)),
        ("Segment-Name", Some("seg-1.ts".into())),
        ("Segment-Seq", Some("1".into())),
        ("Segment-Start-TS", Some(start)),
        ("Segment-Length-MSec", Some("2000".into())),
    ];
    for (name, value) in overrides {
        match headers.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value.map(str::to_owned),
            None => headers.push((name, value.map(str::to_owned))),
        }
    }
    let mut req = Request::post("/v1/new-segment").header(header::AUTHORIZATION, format!("Bearer {EDGE_TOKEN}"));
    for (name, value) in headers {
        if let Some(value) = value {
            req = req.header(name, value);
        }
    }
    req.body(Body::from(body)).unwrap()
}

#[tokio::test]
async fn hostile_segment_headers_are_refused_naming_the_header() {
    let app = super::edge::app(state());
    let cases: &[(&str, Option<&str>, &str)] = &[
        ("Source-ID", None, "missing header Source-ID"),
        ("Source-ID", Some("cam-0"), "Source-ID"),
        ("Segment-Name", Some("../x.ts"), "segment name"),
        ("Segment-Seq", None, "missing header Segment-Seq"),
        ("Segment-Seq", Some("-1"), "Segment-Seq"),
        ("Segment-Seq", Some("9223372036854775808"), "Segment-Seq"),
        ("Segment-Seq", Some("1e3"), "Segment-Seq"),
        ("Segment-Start-TS", None, "missing header Segment-Start-TS"),
        ("Segment-Start-TS", Some("1e300"), "Segment-Start-TS"),
        ("Segment-Start-TS", Some("-1e300"), "Segment-Start-TS"),
        ("Segment-Start-TS", Some("inf"), "Segment-Start-TS"),
        ("Segment-Start-TS", Some("NaN"), "Segment-Start-TS"),
        ("Segment-Start-TS", Some("0"), "Segment-Start-TS"),
        ("Segment-Start-TS", Some("8210298412800"), "Segment-Start-TS"),
        ("Segment-Start-TS", Some("+262142-01-01T00:00:00Z"), "Segment-Start-TS"),
        ("Segment-Start-TS", Some("2201-01-01T00:00:00Z"), "Segment-Start-TS"),
        ("Segment-Start-TS", Some("1999-12-31T23:59:59Z"), "Segment-Start-TS"),
        ("Segment-Start-TS", Some("yesterday"), "Segment-Start-TS"),
        ("Segment-Length-MSec", None, "missing header Segment-Length-MSec"),
        ("Segment-Length-MSec", Some("0"), "Segment-Length-MSec"),
        ("Segment-Length-MSec", Some("600001"), "Segment-Length-MSec"),
        ("Segment-Length-MSec", Some("100000000000000"), "Segment-Length-MSec"),
        ("Segment-Length-MSec", Some("99999999999999999999999"), "Segment-Length-MSec"),
        ("Segment-Length-MSec", Some("2.5"), "Segment-Length-MSec"),
        ("Segment-Discontinuity", Some("perhaps"), "Segment-Discontinuity"),
    ];
    for (name, value, needle) in cases {
        let reply = send(&app, new_segment(&[(name, *value)], b"\x47")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{name}: {value:?} -> {:?}", reply.body);
        reply.assert_error(400, needle);
    }
    send(&app, new_segment(&[], b"")).await.assert_error(400, "empty segment body");
    let oversized = send(&app, new_segment(&[], &[0x47; 2000])).await;
    oversized.assert_error(413, "");

    // Sane values pass the door and reach the database, which is down here.
    for start in ["946684800", "7289567999.999", "2024-01-07T03:51:43Z", "2200-12-31T23:59:59+00:00"] {
        let reply = send(&app, new_segment(&[("Segment-Start-TS", Some(start))], b"\x47")).await;
        reply.assert_generic_fault(503);
    }
    let reply = send(
        &app,
        new_segment(&[("Segment-Length-MSec", Some("600000")), ("Segment-Seq", Some("9223372036854775807"))], b"\x47"),
    )
    .await;
    reply.assert_generic_fault(503);

    let no_token = Request::post("/v1/new-segment").body(Body::empty()).unwrap();
    send(&app, no_token).await.assert_error(401, "Authorization");
}

#[tokio::test]
async fn status_reports_with_a_broken_clock_are_refused() {
    let app = super::edge::app(state());
    let url = format!("/v1/source/{}/status", Uuid::new_v4());
    for (stamp, needle) in [
        (json!("2500-01-01T00:00:00Z"), "local_timestamp"),
        (json!("1970-01-01T00:00:00Z"), "local_timestamp"),
        (json!("+262142-01-01T00:00:00Z"), ""),
        (json!(1e300), ""),
    ] {
        let body = json!({"rr_target_id": "edge-1", "local_timestamp": stamp}).to_string();
        send(&app, post_json(&url, EDGE_TOKEN, body)).await.assert_error(400, needle);
    }
    let body = json!({"rr_target_id": "x/y"}).to_string();
    send(&app, post_json(&url, EDGE_TOKEN, body)).await.assert_error(400, "rr_target_id");
    let body = json!({"rr_target_id": "edge-1", "local_timestamp": chrono::Utc::now()}).to_string();
    send(&app, post_json(&url, EDGE_TOKEN, body)).await.assert_generic_fault(503);
    send(&app, post_json(&url, EDGE_TOKEN, "{")).await.assert_error(400, "");
}
