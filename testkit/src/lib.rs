//! What LiveMix's integration tests share: the real backing services from `scripts/services.sh`, a real control
//! node running in the test process, real ffmpeg-made media, and polling helpers.
//!
//! Nothing here fakes a service: a missing one fails the test with a hint, never skips it.

pub mod control;
pub mod media;

use std::time::Duration;

/// A backing-service setting from `scripts/services.sh env`; a missing one fails the test loudly.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests use the real services; start them and load their settings with \
             `bash scripts/services.sh up && eval \"$(bash scripts/services.sh env)\"` (or run `bash scripts/test.sh`)"
        )
    })
}

/// The settings of the real services (`scripts/services.sh env`) a LiveMix process started by a test needs.
pub fn service_env() -> Vec<(&'static str, String)> {
    [
        "DATABASE_URL",
        "MEMCACHED_URL",
        "PUBSUB_EMULATOR_HOST",
        "PUBSUB_PROJECT_ID",
        "S3_ENDPOINT",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "LIVEMIX_BUCKET",
    ]
    .into_iter()
    .map(|name| (name, env(name)))
    .collect()
}

/// `prefix-<random>`: names, topics and keys that never collide between tests or runs.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// An HTTP client whose requests cannot hang a test.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("HTTP client")
}

/// Polls `check` until it returns `Some`, for up to 30 s.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_within(what, Duration::from_secs(30), check).await
}

/// Polls `check` every 200 ms until it returns `Some`, failing the test after `limit`.
pub async fn eventually_within<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
