//! The control node's three HTTP APIs, each on its own port so they can be exposed differently: management
//! to admins and the operator, VOD to the public, the edge-facing API to edges only.

pub mod auth;
pub mod edge;
pub mod management;
pub mod vod;

use axum::{Router, extract::State, routing::get};
use livemix_common::{
    ApiError, ApiResult,
    api::{Reply, ok},
    telemetry::metrics_handler,
};

use crate::state::AppState;

/// `/liveness/alive`, `/liveness/ready` and `/metrics`, served on every port.
pub fn health_routes() -> Router<AppState> {
    Router::new()
        .route("/liveness/alive", get(|| async { ok() }))
        .route("/liveness/ready", get(ready))
        .route("/metrics", get(metrics_handler))
}

/// Ready when PostgreSQL, the cache and the bus all answer.
async fn ready(State(state): State<AppState>) -> ApiResult<Reply<serde_json::Value>> {
    let (db, cache, bus) = tokio::join!(state.db.ping(), state.cache.ping(), state.bus.ping());
    let mut failures = Vec::new();
    if let Err(err) = db {
        failures.push(format!("database: {err}"));
    }
    if let Err(err) = cache {
        failures.push(format!("cache: {err}"));
    }
    if let Err(err) = bus {
        failures.push(format!("bus: {err}"));
    }
    if failures.is_empty() {
        Ok(Reply(serde_json::json!({"database": "ok", "cache": "ok", "bus": "ok"})))
    } else {
        Err(ApiError::unavailable(failures.join("; ")))
    }
}
