//! Logs and Prometheus metrics.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};
use parking_lot::Mutex;
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// How logs are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Logging flags every binary takes.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log format: human-readable text or one JSON object per line.
    #[arg(long, env = "LIVEMIX_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter in `tracing` syntax, e.g. `info` or `info,livemix_control=debug`.
    #[arg(long, env = "LIVEMIX_LOG", default_value = "info")]
    pub log: String,
}

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `--log`.
pub fn init_logging(args: &LogArgs) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&args.log))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match args.log_format {
        LogFormat::Json => registry.with(fmt::layer().json().with_current_span(true)).try_init(),
        LogFormat::Text => registry.with(fmt::layer().with_target(false)).try_init(),
    };
    // A second init (tests start several services in one process) keeps the first subscriber.
    let _ = result;
}

/// The metrics registry of one process, shared by everything that registers metrics.
#[derive(Clone, Default)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
}

impl Metrics {
    pub fn new(prefix: &str) -> Self {
        Self { registry: Arc::new(Mutex::new(Registry::with_prefix(prefix))) }
    }

    /// Registers a metric; registration happens at start-up, before any scrape.
    pub fn register<M: prometheus_client::registry::Metric + Clone>(&self, name: &str, help: &str, metric: M) -> M {
        self.registry.lock().register(name, help, metric.clone());
        metric
    }

    /// The Prometheus text exposition of every registered metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry.lock());
        out
    }
}

/// `GET /metrics` handler; the router's state must be (or contain via `FromRef`) the [`Metrics`].
pub async fn metrics_handler(State(metrics): State<Metrics>) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], metrics.encode())
        .into_response()
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    service: &'static str,
    method: &'static str,
    status: u16,
}

/// The metric label of an HTTP method: the standard ones by name, anything else `other`, so a client inventing
/// methods cannot grow the label set (and the registry's memory) without bound.
pub fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"];
    KNOWN.into_iter().find(|known| *known == method).unwrap_or("other")
}

/// Request counts and latencies of the HTTP APIs.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: Family<HttpLabels, Counter>,
    latency: Family<HttpLabels, Histogram>,
}

impl HttpMetrics {
    pub fn new(metrics: &Metrics) -> Self {
        let requests = metrics.register("http_requests", "HTTP requests handled", Family::default());
        let latency = metrics.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            Family::<HttpLabels, Histogram>::new_with_constructor(|| {
                Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0])
            }),
        );
        Self { requests, latency }
    }

    pub fn observe(&self, service: &'static str, method: &str, status: u16, elapsed: Duration) {
        // Statuses are bounded by hyper (three digits); methods are not.
        let labels = HttpLabels { service, method: method_label(method), status };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_label() {
        let metrics = Metrics::new("t");
        let http = HttpMetrics::new(&metrics);
        for i in 0..500 {
            http.observe("api", &format!("X-INVENTED-{i}"), 405, Duration::from_millis(1));
        }
        http.observe("api", "GET", 200, Duration::from_millis(1));
        let text = metrics.encode();
        assert!(text.contains(r#"t_http_requests_total{service="api",method="other",status="405"} 500"#), "{text}");
        assert!(text.contains(r#"method="GET""#), "{text}");
        assert!(!text.contains("INVENTED"), "{text}");
        assert_eq!(method_label("get"), "other", "methods are case-sensitive");
    }
}
