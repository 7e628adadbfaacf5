//! The operator's own HTTP server: `/metrics` for Prometheus and `/health` for probes.

use std::future::Future;

use axum::{
    Json, Router,
    extract::{FromRef, State},
    routing::get,
};
use livemix_common::telemetry::{Metrics, metrics_handler};
use tokio::net::TcpListener;

use crate::metrics::ReconcileMetrics;

#[derive(Clone, FromRef)]
struct HttpState {
    metrics: Metrics,
    reconciles: ReconcileMetrics,
}

pub fn router(metrics: Metrics, reconciles: ReconcileMetrics) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/health", get(health))
        .with_state(HttpState { metrics, reconciles })
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
        drop(reconciles.start("VideoSource"));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(serve(listener, router(registry, reconciles), stop.clone().cancelled_owned()));
        let metrics = reqwest::get(format!("http://{addr}/metrics")).await.unwrap();
        assert_eq!(metrics.status(), 200);
        let text = metrics.text().await.unwrap();
        assert!(text.contains(r#"livemix_operator_reconciles_total{kind="VideoSource"} 1"#), "{text}");
        let health: serde_json::Value =
            reqwest::get(format!("http://{addr}/health")).await.unwrap().json().await.unwrap();
        assert_eq!(health["status"], "ok");
        assert!(health["last_reconcile"].is_string(), "{health}");
        stop.cancel();
        server.await.unwrap().unwrap();
    }
}
