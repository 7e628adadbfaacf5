//! Bearer-token checks for the management and edge-facing APIs.

use axum::{
    extract::Request,
    http::header::AUTHORIZATION,
    middleware::Next,
    response::{IntoResponse, Response},
};
use livemix_common::ApiError;

/// Rejects requests without `Authorization: Bearer <token>`; health and metrics stay open for probes.
pub async fn require_bearer(token: Option<String>, req: Request, next: Next) -> Response {
    let Some(token) = token else {
        return next.run(req).await;
    };
    let path = req.uri().path();
    if path.starts_with("/liveness/") || path == "/metrics" {
        return next.run(req).await;
    }
    let presented =
        req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(given) if constant_time_eq(given.trim().as_bytes(), token.as_bytes()) => next.run(req).await,
        Some(_) => ApiError::unauthorized("invalid bearer token").into_response(),
        None => ApiError::unauthorized("missing `Authorization: Bearer <token>` header").into_response(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
