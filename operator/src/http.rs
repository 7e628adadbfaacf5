//! The operator's own HTTP server: `/metrics` for Prometheus, `/health` (liveness) and `/ready` (readiness).

use std::future::Future;

use axum::{
    Json, Router,
    extract::{FromRef, State},
    http::StatusCode,
    routing::get,
};
use livemix_common::telemetry::{Metrics, metrics_handler};
use tokio::net::TcpListener;

use crate::{metrics::ReconcileMetrics, readiness::Readiness};

#[derive(Clone, FromRef)]
struct HttpState {
    metrics: Metrics,
    reconciles: ReconcileMetrics,
    readiness: Readiness,
}

pub fn router(metrics: Metrics, reconciles: ReconcileMetrics, readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(HttpState { metrics, reconciles, readiness })
}

/// 200 when this replica is Ready (see [`Readiness`]: a follower always is; the leader once its caches synced and
/// the control node answers), else 503 saying what is missing. Both answers name the role.
async fn ready(State(readiness): State<Readiness>) -> (StatusCode, Json<serde_json::Value>) {
    let role = readiness.role_name();
    match readiness.check() {
        Ok(()) => (StatusCode::OK, Json(serde_json::json!({"success": true, "status": "ready", "role": role}))),
        Err(missing) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"success": false, "status": "not ready", "role": role, "missing": missing})),
        ),
    }
}

/// Alive while the process serves; says when it last reconciled, for humans. Never depends on the control
/// node: a control-node outage must not get the operator restarted.
async fn health(State(state): State<HttpState>) -> Json<serde_json::Value> {
    let last =
        state.reconciles.last_reconcile().and_then(|t| chrono::DateTime::from_timestamp(t, 0)).map(|t| t.to_rfc3339());
    Json(serde_json::json!({"success": true, "status": "ok", "last_reconcile": last}))
}

pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_metrics_and_health() {
        let registry = Metrics::new("livemix_operator");
        let reconciles = ReconcileMetrics::new(&registry);
        let readiness = Readiness::new(&registry);
        drop(reconciles.start("VideoSource"));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(serve(
            listener,
            router(registry, reconciles, readiness.clone()),
            stop.clone().cancelled_owned(),
        ));
        let metrics = reqwest::get(format!("http://{addr}/metrics")).await.unwrap();
        assert_eq!(metrics.status(), 200);
        let text = metrics.text().await.unwrap();
        assert!(text.contains(r#"livemix_operator_reconciles_total{kind="VideoSource"} 1"#), "{text}");
        let health: serde_json::Value =
            reqwest::get(format!("http://{addr}/health")).await.unwrap().json().await.unwrap();
        assert_eq!(health["status"], "ok");
        assert!(health["last_reconcile"].is_string(), "{health}");

        let ready = reqwest::get(format!("http://{addr}/ready")).await.unwrap();
        assert_eq!(ready.status(), 503);
        let body: serde_json::Value = ready.json().await.unwrap();
        assert_eq!(body["role"], "standalone");
        assert_eq!(body["missing"].as_array().unwrap().len(), 2, "{body}");
        readiness.set_role(crate::readiness::Role::Follower);
        let ready = reqwest::get(format!("http://{addr}/ready")).await.unwrap();
        assert_eq!(ready.status(), 200);
        readiness.set_role(crate::readiness::Role::Leader);
        readiness.set_synced(true);
        readiness.set_control_reachable(true);
        let body: serde_json::Value = reqwest::get(format!("http://{addr}/ready")).await.unwrap().json().await.unwrap();
        assert_eq!((body["status"].as_str(), body["role"].as_str()), (Some("ready"), Some("leader")), "{body}");
        stop.cancel();
        server.await.unwrap().unwrap();
    }
}
