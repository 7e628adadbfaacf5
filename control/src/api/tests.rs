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

use crate::{Backends, config::Settings, db::Db, segments::live_cache_key, state::AppState};

mod console;
mod openapi;

const MGMT_TOKEN: &str = "mgmt-secret";
const EDGE_TOKEN: &str = "edge-secret";

#[derive(Parser)]
struct SettingsOnly {
    #[command(flatten)]
    settings: Settings,
}

/// A control node's state on in-process backends and a database that is down.
fn state() -> AppState {
    state_with(&[&format!("--management-token={MGMT_TOKEN}"), &format!("--edge-token={EDGE_TOKEN}")])
}

/// Settings from these flags (and the required ones).
fn settings(flags: &[&str]) -> Settings {
    let mut argv = vec!["livemix-control", "--max-segment-bytes=1000"];
    argv.extend_from_slice(flags);
    SettingsOnly::parse_from(argv).settings
}

fn backends(db: Db) -> Backends {
    Backends {
        db,
        cache: Arc::new(MemoryCache::new(1 << 20)),
        store: Arc::new(LocalStore::new(std::env::temp_dir().join("livemix-control-unit-tests"))),
        bus: Arc::new(MemoryBus::default()),
    }
}

/// A state whose database is down (PostgreSQL on a port nothing listens on): requests that pass the doors end
/// in a 503, which is how these tests see that a door let them through.
fn state_with(flags: &[&str]) -> AppState {
    let settings = settings(flags);
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(100))
        .connect_lazy("postgres://livemix:secret-password@127.0.0.1:1/livemix")
        .expect("a valid URL");
    let db = Db::from_pool(pool, settings.reachable_within());
    AppState::new(settings, backends(db))
}

/// A state on a database of its own (an SQLite file in a fresh directory).
async fn live_state_with(flags: &[&str]) -> AppState {
    let settings = settings(flags);
    let dir = std::env::temp_dir().join(format!("livemix-control-unit-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let url = format!("sqlite://{}?mode=rwc", dir.join("livemix.db").display());
    let db = Db::connect(&url, 2, settings.reachable_within()).await.expect("SQLite");
    AppState::new(settings, backends(db))
}

/// A streaming source with live segment `name` listed and its bytes cached, as an edge's forward leaves it.
async fn listed_live_segment(state: &AppState, name: &str, bytes: &'static [u8]) -> Uuid {
    let new = livemix_common::management_api::NewSource {
        name: format!("cam-{}", Uuid::new_v4()),
        segment_len: 2,
        description: None,
        owner: None,
        retention: None,
        edge: None,
        recording: None,
    };
    let source = state.db().create_source(&new).await.expect("a source").id;
    state.db().set_streaming(source, true).await.expect("streaming on");
    state.cache().put(&live_cache_key(source, name), Bytes::from_static(bytes), Duration::from_secs(60)).await.unwrap();
    let segment = livemix_common::segment::NewSegment::Record(livemix_common::segment::SegmentRecord {
        id: livemix_common::segment_id::SegmentId { source, run: ulid::Ulid::new(), seq: 0 },
        name: name.into(),
        length_ms: 2000,
        start_ts: chrono::Utc::now(),
        discontinuity: false,
    });
    state.db().add_live_segment(&segment, Duration::from_secs(3)).await.expect("indexed");
    source
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
async fn vod_serves_listed_live_segments_only_and_refuses_bad_paths() {
    let state = live_state_with(&[]).await;
    let source = listed_live_segment(&state, "seg-1.ts", b"\x47ts").await;
    // Bytes an edge sent for a segment the index refused (or never took) are in the cache, yet not served.
    state
        .cache()
        .put(&live_cache_key(source, "seg-2.ts"), Bytes::from_static(b"\x47no"), Duration::from_secs(60))
        .await
        .unwrap();
    let vod = super::vod::app(state.clone());
    let hit = send(&vod, get(&format!("/v1/vod/live/{source}/seg-1.ts"), None)).await;
    assert_eq!(hit.status, StatusCode::OK);
    assert_eq!(hit.content_type, "video/mp2t");
    assert_eq!(hit.body, Bytes::from_static(b"\x47ts"));
    send(&vod, get(&format!("/v1/vod/live/{source}/seg-2.ts"), None)).await.assert_error(404, "lists no live segment");
    // Listed, but its bytes have left the cache.
    let gone = listed_live_segment(&state, "seg-3.ts", b"\x47ts").await;
    state.cache().delete(&live_cache_key(gone, "seg-3.ts")).await.unwrap();
    send(&vod, get(&format!("/v1/vod/live/{gone}/seg-3.ts"), None))
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
        ("Segment-Run", Some("not-a-ulid"), "header Segment-Run: \"not-a-ulid\" is not a ULID"),
        ("Segment-Run", Some(""), "Segment-Run"),
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

/// Every `.route("<path>", ...)` of a module's source: the routes its router is built from. Read from the source
/// itself so a route added to any of these modules is probed by the tests below without anyone editing them.
fn declared_routes(source: &str) -> Vec<String> {
    let mut routes = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find(".route(\"") {
        rest = &rest[start + 8..];
        let Some(end) = rest.find('"') else { break };
        routes.push(rest[..end].to_owned());
        rest = &rest[end..];
    }
    routes
}

/// A concrete URI for a route: path parameters filled with well-formed ids.
fn concrete(route: &str) -> String {
    route
        .split('/')
        .map(|part| match part {
            "{recording_id}" => ulid::Ulid::new().to_string(),
            p if p.starts_with('{') => Uuid::new_v4().to_string(),
            p => p.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];

fn request(method: &str, uri: &str, authorization: Option<&str>) -> Request<Body> {
    let mut req = Request::builder().method(method).uri(uri).header(header::CONTENT_TYPE, "application/json");
    if let Some(value) = authorization {
        req = req.header(header::AUTHORIZATION, value);
    }
    req.body(Body::from("{}")).unwrap()
}

#[tokio::test]
async fn every_protected_route_refuses_missing_wrong_and_empty_tokens() {
    let management_routes = declared_routes(include_str!("management.rs"));
    let edge_routes = declared_routes(include_str!("edge.rs"));
    assert!(management_routes.len() >= 10 && edge_routes.len() >= 3, "{management_routes:?} {edge_routes:?}");
    let services = [
        ("management", super::management::app(state()), management_routes, EDGE_TOKEN),
        ("edge", super::edge::app(state()), edge_routes, MGMT_TOKEN),
    ];
    for (service, app, routes, other_service_token) in services {
        for route in &routes {
            let uri = concrete(route);
            let mut served = 0;
            for method in METHODS {
                for authorization in [
                    None,
                    Some("Bearer wrong".to_owned()),
                    Some("Bearer ".to_owned()),
                    Some("Bearer".to_owned()),
                    Some(format!("Basic {MGMT_TOKEN}")),
                    Some(format!("Bearer {other_service_token}")),
                    Some(format!("Bearer {EDGE_TOKEN}x")),
                ] {
                    let reply = send(&app, request(method, &uri, authorization.as_deref())).await;
                    // A method the route does not serve is 405 (it reveals no more than the route's existence);
                    // every method it serves must refuse the caller.
                    if reply.status == StatusCode::METHOD_NOT_ALLOWED {
                        continue;
                    }
                    served += 1;
                    assert_eq!(
                        reply.status,
                        StatusCode::UNAUTHORIZED,
                        "{service} {method} {uri} with {authorization:?}: {:?}",
                        reply.body
                    );
                    assert_eq!(reply.reason(), "unauthorized");
                }
            }
            assert!(served > 0, "{service} {route}: no method reached the token check");
        }
    }
}

/// A control node on in-process backends with these flags (plus the edge limit the tests use).
#[tokio::test]
async fn per_edge_tokens_identify_edges_and_the_shared_one_still_works() {
    let app = super::edge::app(state_with(&["--edge-tokens=edge-a:tok-a,edge-b:tok-b", "--edge-token=shared-tok"]));
    let url = format!("/v1/source/{}/status", Uuid::new_v4());
    let body = |topic: &str| json!({"rr_target_id": topic, "local_timestamp": chrono::Utc::now()}).to_string();
    // Past the door, each reaches the database (down here): the binding is checked there.
    for (token, topic) in [("tok-a", "edge-a"), ("tok-b", "edge-b"), ("shared-tok", "livemix-edge-old")] {
        send(&app, post_json(&url, token, body(topic))).await.assert_generic_fault(503);
    }
    for token in ["tok-c", "tok-a tok-b", "edge-a:tok-a"] {
        send(&app, post_json(&url, token, body("edge-a"))).await.assert_error(401, "invalid bearer token");
    }
}

/// Each edge reports, looks up and forwards only the sources bound to it; the shared token only unbound ones;
/// nobody names another's topic for its commands.
#[tokio::test]
async fn edges_act_only_for_the_sources_bound_to_them() {
    let state = live_state_with(&["--edge-tokens=edge-a:tok-a,edge-b:tok-b", "--edge-token=shared-tok"]).await;
    let app = super::edge::app(state.clone());
    let source = |edge: Option<&str>| livemix_common::management_api::NewSource {
        name: format!("cam-{}", Uuid::new_v4()),
        segment_len: 2,
        description: None,
        owner: None,
        retention: None,
        edge: edge.map(Into::into),
        recording: None,
    };
    let bound = state.db().create_source(&source(Some("edge-a"))).await.unwrap();
    let unbound = state.db().create_source(&source(None)).await.unwrap();
    let status = |id: Uuid, token: &str, topic: &str| {
        let body = json!({"rr_target_id": topic}).to_string();
        post_json(&format!("/v1/source/{id}/status"), token, body)
    };
    assert_eq!(send(&app, status(bound.id, "tok-a", "edge-a")).await.status, StatusCode::OK);
    send(&app, status(bound.id, "tok-b", "edge-b")).await.assert_error(403, "not bound to this edge (edge-b)");
    send(&app, status(bound.id, "shared-tok", "old-edge")).await.assert_error(403, "bound to edge edge-a");
    send(&app, status(unbound.id, "tok-a", "edge-a")).await.assert_error(403, "PUT /v1/source");
    send(&app, status(Uuid::new_v4(), "tok-a", "edge-a")).await.assert_error(403, "not bound");
    assert_eq!(send(&app, status(unbound.id, "shared-tok", "old-edge")).await.status, StatusCode::OK);
    // Commands go to the caller's own topic only.
    send(&app, status(bound.id, "tok-a", "edge-b")).await.assert_error(403, "own id");
    for foreign in ["edge-a", "livemix-control", "livemix-control-reply"] {
        send(&app, status(unbound.id, "shared-tok", foreign)).await.assert_error(403, "another edge");
    }
    // Looking a source up by name: another edge's is answered like one that does not exist.
    let find = |name: &str, token: &str| get(&format!("/v1/source?source_name={name}"), Some(token));
    assert_eq!(send(&app, find(&bound.name, "tok-a")).await.json()["source"]["id"], bound.id.to_string());
    send(&app, find(&bound.name, "tok-b")).await.assert_error(404, "\"edge\": \"edge-b\"");
    send(&app, find(&unbound.name, "tok-b")).await.assert_error(404, "no source named");
    // Binding on the management API takes effect at once on this replica.
    let management = super::management::app(state.clone());
    let bind = Request::put(format!("/v1/source/{}/edge", unbound.id))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::HOST, "127.0.0.1")
        .body(Body::from(r#"{"edge_id": "edge-b"}"#))
        .unwrap();
    assert_eq!(send(&management, bind).await.status, StatusCode::OK);
    assert_eq!(send(&app, status(unbound.id, "tok-b", "edge-b")).await.status, StatusCode::OK);
    send(&app, status(unbound.id, "shared-tok", "old-edge")).await.assert_error(403, "bound to edge edge-b");
}

#[test]
fn bad_credentials_stop_the_start() {
    for flags in [
        vec!["--management-token="],
        vec!["--management-token=  "],
        vec!["--edge-token="],
        vec!["--edge-tokens=edge-a"],
        vec!["--edge-tokens=edge-a:"],
        vec!["--edge-tokens=a:x,b:x"],
        vec!["--edge-tokens-file=/nonexistent/tokens"],
        vec!["--playback-signing-key=short"],
    ] {
        let mut argv = vec!["livemix-control"];
        argv.extend(flags.iter().copied());
        assert!(SettingsOnly::try_parse_from(&argv).is_err(), "{flags:?} should be refused");
    }
}

#[tokio::test]
async fn without_a_token_management_answers_loopback_names_only() {
    let app = super::management::app(state_with(&[]));
    let with_host = |host: &str| Request::get("/v1/source").header(header::HOST, host).body(Body::empty()).unwrap();
    // Reaches the database (down): the door let it through.
    send(&app, with_host("127.0.0.1:8080")).await.assert_generic_fault(503);
    send(&app, with_host("localhost:8080")).await.assert_generic_fault(503);
    // DNS rebinding: a hostile name resolving to 127.0.0.1 in a victim's browser.
    send(&app, with_host("rebind.evil.example:8080")).await.assert_error(403, "localhost");
    // An explicit opt-out serves any name.
    let insecure = super::management::app(state_with(&["--insecure-no-auth"]));
    send(&insecure, with_host("control.internal:8080")).await.assert_generic_fault(503);
}

#[tokio::test]
async fn state_changing_routes_refuse_what_browsers_forge_but_take_curl_bodies() {
    let app = super::management::app(state());
    let body = r#"{"name": "cam-1", "segment_len": 2}"#;
    let create = |content_type: Option<&str>, origin: Option<&str>| {
        let mut req = Request::post("/v1/source")
            .header(header::AUTHORIZATION, format!("Bearer {MGMT_TOKEN}"))
            .header(header::HOST, "control:8080");
        if let Some(t) = content_type {
            req = req.header(header::CONTENT_TYPE, t);
        }
        if let Some(o) = origin {
            req = req.header(header::ORIGIN, o);
        }
        req.body(Body::from(body)).unwrap()
    };
    // What a web form on another site can send without a preflight, refused by the door before the body.
    for (wrong, says) in [
        ("text/plain", "web form"),
        ("text/plain;charset=UTF-8", "web form"),
        ("multipart/form-data; boundary=x", "web form"),
        ("application/xml", "application/json"),
    ] {
        let reply = send(&app, create(Some(wrong), None)).await;
        reply.assert_error(415, says);
        assert_eq!(reply.reason(), "unsupported_media_type");
    }
    // The seed's `curl -X POST ... -d '{json}'` (form-encoded), no type at all, and JSON all reach the database.
    for fine in [None, Some("application/x-www-form-urlencoded"), Some("application/json; charset=utf-8")] {
        send(&app, create(fine, None)).await.assert_generic_fault(503);
    }
    send(&app, create(Some("application/json"), Some("http://control:8080"))).await.assert_generic_fault(503);
    for origin in ["https://evil.example", "null", "http://control:8081"] {
        send(&app, create(Some("application/json"), Some(origin))).await.assert_error(403, "another origin");
    }
    // start_recording reads its body itself: the same rule holds there.
    let req = Request::post(format!("/v1/source/{}/recording", Uuid::new_v4()))
        .header(header::AUTHORIZATION, format!("Bearer {MGMT_TOKEN}"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("{}"))
        .unwrap();
    send(&app, req).await.assert_error(415, "");
}

#[tokio::test]
async fn unknown_methods_share_one_metric_label() {
    let app = super::management::app(state());
    for i in 0..50 {
        let req = Request::builder().method(format!("HACK{i}").as_str()).uri("/v1/source").body(Body::empty()).unwrap();
        let reply = send(&app, req).await;
        assert!(reply.status.is_client_error(), "{:?}", reply.status);
    }
    let metrics = send(&app, get("/metrics", None)).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(!text.contains("HACK"), "{text}");
    assert!(text.contains(r#"method="other""#), "{text}");
}

#[tokio::test]
async fn readiness_needs_the_database_only() {
    let reply = send(&super::vod::app(state()), get("/liveness/ready", None)).await;
    reply.assert_error(503, "database");
    let alive = send(&super::vod::app(state()), get("/liveness/alive", None)).await;
    assert_eq!(alive.status, StatusCode::OK, "liveness never depends on backing services");
}

const SIGNING_KEY: &str = "0123456789abcdef0123456789abcdef";

#[tokio::test]
async fn signed_playback_urls_valid_expired_tampered_missing() {
    let state = live_state_with(&[&format!("--playback-signing-key={SIGNING_KEY}"), "--management-token=m"]).await;
    let source = listed_live_segment(&state, "seg-1.ts", b"\x47ts").await;
    let vod = super::vod::app(state.clone());
    let management = super::management::app(state);
    let segment = format!("/v1/vod/live/{source}/seg-1.ts");

    let minted = send(&management, get(&format!("/v1/playback-url?path={segment}&ttl_secs=60"), Some("m"))).await;
    assert_eq!(minted.status, StatusCode::OK, "{:?}", minted.body);
    assert_eq!(minted.json()["signed"], true);
    let url = minted.json()["url"].as_str().unwrap().to_owned();
    let ok = send(&vod, get(&url, None)).await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
    assert_eq!(ok.body, Bytes::from_static(b"\x47ts"));

    send(&vod, get(&segment, None)).await.assert_error(401, "signed URLs only");
    let signer = super::signed::PlaybackSigner::new(SIGNING_KEY.as_bytes());
    let past = chrono::Utc::now().timestamp() - 10;
    let expired = format!("{segment}?exp={past}&sig={}", signer.sign(&segment, past));
    send(&vod, get(&expired, None)).await.assert_error(403, "expired");
    let tampered = url.replace("sig=", "sig=00");
    send(&vod, get(&tampered, None)).await.assert_error(403, "signature");
    let other_source = url.replace(&source.to_string(), &Uuid::new_v4().to_string());
    send(&vod, get(&other_source, None)).await.assert_error(403, "signature");
    // Probes stay open.
    assert_eq!(send(&vod, get("/liveness/alive", None)).await.status, StatusCode::OK);

    for bad in ["/etc/passwd", "/v1/vod/../x", "/v1/vod/live/x/vid.m3u8?exp=1"] {
        let reply = send(&management, get(&format!("/v1/playback-url?path={bad}"), Some("m"))).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let reply = send(&management, get(&format!("/v1/playback-url?path={segment}&ttl_secs=0"), Some("m"))).await;
    reply.assert_error(400, "ttl_secs");
}

#[tokio::test]
async fn without_a_signing_key_playback_urls_are_plain() {
    let management = super::management::app(state());
    let path = format!("/v1/vod/live/{}/vid.m3u8", Uuid::new_v4());
    let reply = send(&management, get(&format!("/v1/playback-url?path={path}"), Some(MGMT_TOKEN))).await;
    assert_eq!(reply.json()["signed"], false);
    assert_eq!(reply.json()["url"], path.as_str());
}

/// A body that notes whether anybody read it, and never ends.
fn watched_body() -> (Body, Arc<std::sync::atomic::AtomicBool>) {
    let read = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&read);
    let stream = futures::stream::poll_fn(move |_| {
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        std::task::Poll::<Option<Result<Bytes, std::io::Error>>>::Pending
    });
    (Body::from_stream(stream), read)
}

/// A status report addressed to 127.0.0.1, with one more header.
fn loopback_status(name: header::HeaderName, value: &str) -> Request<Body> {
    Request::post(format!("/v1/source/{}/status", Uuid::new_v4()))
        .header(header::HOST, "127.0.0.1:8082")
        .header(name, value)
        .body(Body::empty())
        .unwrap()
}

/// Every refusal of the management and edge-facing doors is made on the head: no body byte is read first.
#[tokio::test]
async fn doors_refuse_before_reading_a_body() {
    let management = super::management::app(state());
    let edges = super::edge::app(state_with(&["--edge-tokens=edge-a:tok-a"]));
    let open_edges = super::edge::app(state_with(&[]));
    let cases: Vec<(&Router, Request<Body>, u16)> = vec![
        (&management, Request::post("/v1/source").body(Body::empty()).unwrap(), 401),
        (&edges, Request::post("/v1/new-segment").body(Body::empty()).unwrap(), 401),
        (&edges, Request::post(format!("/v1/source/{}/status", Uuid::new_v4())).body(Body::empty()).unwrap(), 401),
        // Without edge credentials the edge-facing API answers loopback names only (DNS rebinding)...
        (
            &open_edges,
            Request::post("/v1/new-segment").header(header::HOST, "rebind.evil.example").body(Body::empty()).unwrap(),
            403,
        ),
        (
            &open_edges,
            Request::get("/v1/source?source_name=x")
                .header(header::HOST, "rebind.evil.example")
                .body(Body::empty())
                .unwrap(),
            403,
        ),
        // ...and no web page's form reaches it.
        (&open_edges, loopback_status(header::ORIGIN, "https://evil.example"), 403),
        (&open_edges, loopback_status(header::CONTENT_TYPE, "text/plain"), 415),
    ];
    for (app, mut req, status) in cases {
        let (body, read) = watched_body();
        let uri = req.uri().clone();
        if req.method() == axum::http::Method::POST {
            *req.body_mut() = body;
        }
        let reply = send(app, req).await;
        assert_eq!(reply.status.as_u16(), status, "{uri}: {:?}", reply.body);
        assert!(!read.load(std::sync::atomic::Ordering::SeqCst), "{uri}: the body was read before the refusal");
    }
}
