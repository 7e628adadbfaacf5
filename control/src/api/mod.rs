//! The control node's three HTTP APIs, each on its own port so they can be exposed differently: management
//! to admins and the operator, VOD to the public, the edge-facing API to edges only.

pub mod auth;
mod conditional;
pub mod console;
pub mod edge;
pub mod error;
pub mod management;
pub mod signed;
#[cfg(test)]
mod tests;
pub mod vod;

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{DefaultBodyLimit, State},
    middleware,
    response::Response,
    routing::get,
};
use livemix_common::{
    ApiError, ApiResult,
    api::{ErrorReply, Reply, Success, ok, request_id, with_conventions},
    door,
    telemetry::{Metrics, metrics_handler},
};
use serde_json::{Map, Value};

use crate::state::AppState;

/// Who may call a service's routes.
enum Access {
    /// The management token (or loopback only), with request-shape checks: [`auth::ManagementGate`].
    Management,
    /// Edge credentials: [`auth::EdgeGate`].
    Edges,
    /// Players: anyone, or signed URLs only when a playback signing key is set ([`signed`]).
    Players,
}

/// A service's routes with what every control API has: its access check (probes and metrics stay open), health
/// and metrics routes, request ids, access logs, request metrics and JSON errors.
fn app(service: &'static str, routes: Router<AppState>, access: Access, state: AppState) -> Router {
    app_with_open_routes(service, routes, Router::new(), access, state)
}

/// [`app`] with `open` routes that need no credentials (the web console's page, which asks for the token itself).
fn app_with_open_routes(
    service: &'static str,
    routes: Router<AppState>,
    open: Router<AppState>,
    access: Access,
    state: AppState,
) -> Router {
    let settings = state.settings();
    // The API's own document, behind the same door as its routes.
    let routes = routes.route("/openapi.json", get(move || openapi_document(service)));
    // The doors run after routing (they know the route) and before any handler reads a body byte.
    let routes = match access {
        Access::Management => {
            let door = auth::ManagementGate::door(settings, state.body_budget().clone());
            routes
                .route_layer(middleware::from_fn_with_state(door, door::guard))
                .layer(DefaultBodyLimit::max(auth::MANAGEMENT_BODY_LIMIT))
        }
        Access::Edges => {
            let door = auth::EdgeGate::door(settings, state.body_budget().clone());
            routes.route_layer(middleware::from_fn_with_state(door, door::guard))
        }
        Access::Players => match &settings.playback_signing_key {
            Some(key) => {
                let signer = Arc::new(signed::PlaybackSigner::new(key.expose().as_bytes()));
                routes.layer(middleware::from_fn(move |req, next| signed::require_signature(signer.clone(), req, next)))
            }
            None => routes,
        },
    };
    let metrics = state.http_metrics().clone();
    with_conventions(routes.merge(health_routes()).merge(open), service, metrics).with_state(state)
}

/// The routes every control API has (health, metrics, its own document), for [`crate::openapi`].
#[derive(utoipa::OpenApi)]
#[openapi(paths(alive, ready, metrics, openapi_document))]
pub(crate) struct CommonOperations;

/// The service's OpenAPI document (`docs/openapi/<service>.json`).
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    summary = "This API's OpenAPI 3.1 document.",
    responses((status = 200, description = "The document", content_type = "application/json", body = Object))
)]
async fn openapi_document(service: &'static str) -> Response {
    crate::openapi::reply(service)
}

/// `/liveness/alive`, `/liveness/ready` and `/metrics`, served on every port.
pub fn health_routes() -> Router<AppState> {
    Router::new()
        .route("/liveness/alive", get(alive))
        .route("/liveness/ready", get(ready))
        .route("/metrics", get(metrics))
}

/// The process runs.
#[utoipa::path(
    get,
    path = "/liveness/alive",
    tag = "health",
    summary = "The process answers.",
    responses((status = 200, description = "Alive", body = Success))
)]
async fn alive() -> Reply<Map<String, Value>> {
    ok()
}

/// Prometheus metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    summary = "Prometheus metrics, OpenMetrics text.",
    responses((status = 200, description = "The metrics", content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String))
)]
async fn metrics(state: State<Metrics>) -> Response {
    metrics_handler(state).await
}

/// How long readiness waits for each backing service: well under the probes' own timeout (3 s in the chart), so
/// the probe gets an answer rather than a timeout.
const READY_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /liveness/ready` reply: each backing service `ok`, or (cache, bus) `degraded`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Readiness {
    /// `ok` (the reply is 503 otherwise).
    #[schema(value_type = String, example = "ok")]
    database: &'static str,
    /// `ok` or `degraded` (live segments may be missing).
    #[schema(value_type = String, example = "ok")]
    cache: &'static str,
    /// `ok` or `degraded` (commands reach edges with their next report).
    #[schema(value_type = String, example = "ok")]
    bus: &'static str,
}

/// Ready while PostgreSQL answers: without it no API can serve anything. The cache and the bus only degrade
/// what is served (live segments, commands to edges), and a blip of theirs must not take every replica out of its
/// Service at once, so they are reported but do not fail readiness. This port may be public: the reply names
/// what failed, the log says why.
#[utoipa::path(
    get,
    path = "/liveness/ready",
    tag = "health",
    summary = "Ready while the database answers; the cache and the bus are reported, degraded without failing.",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "The database does not answer", body = ErrorReply)
    )
)]
async fn ready(State(state): State<AppState>) -> ApiResult<Reply<Readiness>> {
    async fn check<E: std::fmt::Display>(what: &str, ping: impl Future<Output = Result<(), E>>) -> &'static str {
        match tokio::time::timeout(READY_CHECK_TIMEOUT, ping).await {
            Ok(Ok(())) => "ok",
            Ok(Err(err)) => {
                tracing::warn!(%err, "readiness: {what}");
                "unavailable"
            }
            Err(_) => {
                tracing::warn!("readiness: {what} did not answer within {READY_CHECK_TIMEOUT:?}");
                "unavailable"
            }
        }
    }
    let (db, cache, bus) = tokio::join!(
        check("database", state.db().ping()),
        check("cache", state.cache().ping()),
        check("bus", state.bus().ping())
    );
    if db != "ok" {
        return Err(ApiError::unavailable(format!(
            "not ready: database unreachable; the server log has the details under request id {}",
            request_id()
        )));
    }
    let degraded = |status: &'static str| if status == "ok" { "ok" } else { "degraded" };
    Ok(Reply(Readiness { database: db, cache: degraded(cache), bus: degraded(bus) }))
}
