//! The control node's three HTTP APIs, each on its own port so they can be exposed differently: management
//! to admins and the operator, VOD to the public, the edge-facing API to edges only.

pub mod auth;
mod conditional;
pub mod edge;
pub mod error;
pub mod management;
#[cfg(test)]
mod tests;
pub mod vod;

use axum::{Router, extract::State, middleware, routing::get};
use livemix_common::{
    ApiError, ApiResult,
    api::{Reply, ok, request_id, with_conventions},
    telemetry::metrics_handler,
};

use crate::state::AppState;

/// A service's routes with what every control API has: the bearer token when one is set (probes and metrics
/// stay open), health and metrics routes, request ids, access logs, request metrics and JSON errors.
fn app(service: &'static str, routes: Router<AppState>, token: Option<String>, state: AppState) -> Router {
    let routes = match token {
        Some(token) => {
            routes.layer(middleware::from_fn(move |req, next| auth::require_bearer(Some(token.clone()), req, next)))
        }
        None => routes,
    };
    with_conventions(routes.merge(health_routes()), service, state.http_metrics.clone()).with_state(state)
}

/// `/liveness/alive`, `/liveness/ready` and `/metrics`, served on every port.
pub fn health_routes() -> Router<AppState> {
    Router::new()
        .route("/liveness/alive", get(|| async { ok() }))
        .route("/liveness/ready", get(ready))
        .route("/metrics", get(metrics_handler))
}

/// Ready when PostgreSQL, the cache and the bus all answer. This port may be public: the reply names what
/// failed, the log says why.
async fn ready(State(state): State<AppState>) -> ApiResult<Reply<serde_json::Value>> {
    let (db, cache, bus) = tokio::join!(state.db.ping(), state.cache.ping(), state.bus.ping());
    let mut failures = Vec::new();
    if let Err(err) = db {
        tracing::warn!(%err, "readiness: database");
        failures.push("database");
    }
    if let Err(err) = cache {
        tracing::warn!(%err, "readiness: cache");
        failures.push("cache");
    }
    if let Err(err) = bus {
        tracing::warn!(%err, "readiness: bus");
        failures.push("bus");
    }
    if failures.is_empty() {
        Ok(Reply(serde_json::json!({"database": "ok", "cache": "ok", "bus": "ok"})))
    } else {
        Err(ApiError::unavailable(format!(
            "not ready: {} unreachable; the server log has the details under request id {}",
            failures.join(", "),
            request_id()
        )))
    }
}
