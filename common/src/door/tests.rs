use std::sync::atomic::{AtomicBool, Ordering};

use axum::{Router, body::Body, routing::post};
use futures::StreamExt;
use tower::ServiceExt;

use super::*;

/// Admits `Bearer ok` only; bodies up to 10 bytes.
struct TokenGate;

impl Gate for TokenGate {
    async fn admit(&self, parts: &mut Parts) -> Result<Option<u64>, ApiError> {
        match crate::credentials::bearer_token(&parts.headers) {
            Some(b"ok") => Ok(Some(10)),
            Some(_) => Err(ApiError::forbidden("wrong token")),
            None => Err(ApiError::unauthorized("no token")),
        }
    }
}

fn app(door: Door<TokenGate>) -> Router {
    Router::new()
        .route("/echo", post(|body: bytes::Bytes| async move { body.len().to_string() }))
        .route_layer(axum::middleware::from_fn_with_state(door, guard))
}

fn door(budget: u64) -> Door<TokenGate> {
    Door::new(TokenGate, BodyBudget::new(budget, Duration::from_millis(200)))
}

/// A body whose first poll sets `polled`.
fn watched_body(polled: Arc<AtomicBool>) -> Body {
    let stream = futures::stream::once(async move {
        polled.store(true, Ordering::SeqCst);
        Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"12345"))
    });
    Body::from_stream(stream.boxed())
}

fn request(token: Option<&str>, host: &str, body: Body) -> Request {
    let mut builder = Request::builder().method(Method::POST).uri("/echo").header(header::HOST, host);
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    builder.body(body).unwrap()
}

#[tokio::test]
async fn refusals_leave_the_body_unread() {
    for (token, status) in [(None, StatusCode::UNAUTHORIZED), (Some("nope"), StatusCode::FORBIDDEN)] {
        let polled = Arc::new(AtomicBool::new(false));
        let reply = app(door(100)).oneshot(request(token, "x", watched_body(polled.clone()))).await.unwrap();
        assert_eq!(reply.status(), status);
        assert!(!polled.load(Ordering::SeqCst), "the body was read before the refusal");
    }
    let polled = Arc::new(AtomicBool::new(false));
    let reply = app(door(100)).oneshot(request(Some("ok"), "x", watched_body(polled.clone()))).await.unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    assert!(polled.load(Ordering::SeqCst));
}

#[tokio::test]
async fn an_announced_body_over_the_limit_is_413_unread() {
    let mut req = request(Some("ok"), "x", Body::from(vec![0u8; 11]));
    req.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from_static("11"));
    let reply = app(door(100)).oneshot(req).await.unwrap();
    assert_eq!(reply.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_spent_budget_answers_503_busy_quickly() {
    let door = door(12);
    let held = door.budget.reserve(8).await.unwrap();
    let started = std::time::Instant::now();
    let reply = app(door.clone()).oneshot(request(Some("ok"), "x", Body::from("12345678"))).await.unwrap();
    assert_eq!(reply.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.headers()[header::RETRY_AFTER], "1");
    assert!(started.elapsed() < Duration::from_secs(2));
    let body = axum::body::to_bytes(reply.into_body(), 4096).await.unwrap();
    let error = crate::api::ErrorBody::from_reply(503, &body);
    assert_eq!(error.reason.as_deref(), Some(BUSY));
    // A small body still fits; once the holder is done, the large one does too.
    let reply = app(door.clone()).oneshot(request(Some("ok"), "x", Body::from("1234"))).await.unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    drop(held);
    let reply = app(door.clone()).oneshot(request(Some("ok"), "x", Body::from("12345678"))).await.unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    assert_eq!(door.budget.available(), 12, "every share was given back");
    assert_eq!(door.budget.reserve(13).await.unwrap_err().status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn loopback_only_checks_the_host_the_authority_and_the_peer() {
    let open = || app(door(100).loopback_only(true));
    let status = |req: Request| async { open().oneshot(req).await.unwrap().status() };
    for host in ["localhost:9080", "127.0.0.1", "[::1]:9080"] {
        assert_eq!(status(request(Some("ok"), host, Body::from("1"))).await, StatusCode::OK, "{host}");
    }
    for host in ["evil.example", "localhost.evil.example:9080", "10.0.0.1"] {
        assert_eq!(status(request(Some("ok"), host, Body::from("1"))).await, StatusCode::FORBIDDEN, "{host}");
    }
    // HTTP/2's :authority (and an HTTP/1 absolute-form target) is the URI's authority.
    let mut h2 = request(Some("ok"), "localhost", Body::from("1"));
    *h2.uri_mut() = "http://rebound.evil.example:9080/echo".parse().unwrap();
    assert_eq!(status(h2).await, StatusCode::FORBIDDEN);
    let mut h2 =
        Request::builder().method(Method::POST).uri("http://localhost:9080/echo").body(Body::from("1")).unwrap();
    h2.headers_mut().insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer ok"));
    assert_eq!(status(h2).await, StatusCode::OK);
    // A peer on the network is refused whatever it calls the host.
    let mut remote = request(Some("ok"), "localhost", Body::from("1"));
    remote.extensions_mut().insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 7], 5000))));
    assert_eq!(status(remote).await, StatusCode::FORBIDDEN);
    // Refused before the gate: even a request without the token gets 403, not 401.
    assert_eq!(status(request(None, "evil.example", Body::from("1"))).await, StatusCode::FORBIDDEN);
}

#[test]
fn cross_site_requests_are_refused() {
    let headers = |pairs: &[(&'static str, &str)]| {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    };
    let (post, uri) = (Method::POST, Uri::from_static("/x"));
    assert!(check_not_cross_site(&post, &headers(&[("host", "edge:9080")]), &uri).is_ok());
    let same = headers(&[("host", "edge:9080"), ("origin", "http://edge:9080")]);
    assert!(check_not_cross_site(&post, &same, &uri).is_ok());
    let evil = headers(&[("host", "edge:9080"), ("origin", "https://evil.example")]);
    assert_eq!(check_not_cross_site(&post, &evil, &uri).unwrap_err().status, StatusCode::FORBIDDEN);
    assert!(check_not_cross_site(&Method::GET, &evil, &uri).is_ok());
    // HTTP/2: the origin is compared with :authority.
    let h2 = Uri::from_static("http://edge:9080/x");
    assert!(check_not_cross_site(&post, &headers(&[("origin", "http://edge:9080")]), &h2).is_ok());
    assert!(check_not_cross_site(&post, &headers(&[("origin", "http://evil.example")]), &h2).is_err());
    let form = headers(&[("content-type", "text/plain;charset=UTF-8")]);
    assert_eq!(check_not_cross_site(&post, &form, &uri).unwrap_err().status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(check_not_cross_site(&Method::PUT, &headers(&[("content-type", "video/mp2t")]), &uri).is_ok());
}
