//! Exponential, capped, jittered retry delays per object, so a control node that is down is not hammered, one bad
//! object does not slow the others, and objects that failed together (a control-node outage) do not all retry in
//! the same instant.

use std::{collections::HashMap, sync::Arc, time::Duration};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use parking_lot::Mutex;

/// One [`ExponentialBackoff`] per object key, started at its first failure and forgotten when it reconciles.
///
/// "Equal jitter": the n-th delay is drawn in `[d/2, d)` where `d = min(base × 2ⁿ, max)`, so retries spread out
/// and never exceed the cap. Built on backon's jitter (which adds up to 100 % to a delay) from halved bounds.
#[derive(Clone, Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    max: Duration,
    failing: Arc<Mutex<HashMap<String, ExponentialBackoff>>>,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        let max = max.max(base);
        let builder = ExponentialBuilder::new()
            .with_min_delay(base / 2)
            .with_max_delay(max / 2)
            .with_jitter()
            .without_max_times();
        Self { builder, max, failing: Arc::default() }
    }

    /// Counts one more failure of `key` and returns how long to wait before retrying: about base, 2×base,
    /// 4×base… up to the cap, each drawn in `[d/2, d)`.
    pub fn next_delay(&self, key: &str) -> Duration {
        let mut failing = self.failing.lock();
        let backoff = failing.entry(key.to_owned()).or_insert_with(|| self.builder.build());
        backoff.next().unwrap_or(self.max)
    }

    /// Forgets the failures of `key` after it reconciled.
    pub fn reset(&self, key: &str) {
        self.failing.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets_per_key() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
        let within = |delay: Duration, nominal: f64| {
            let secs = delay.as_secs_f64();
            assert!(secs >= nominal / 2.0 - 1e-6 && secs < nominal + 1e-6, "{secs} s not in [{nominal}/2, {nominal})");
        };
        for nominal in [1.0, 2.0, 4.0, 8.0, 10.0, 10.0] {
            within(backoff.next_delay("a"), nominal);
        }
        within(backoff.next_delay("b"), 1.0);
        backoff.reset("a");
        within(backoff.next_delay("a"), 1.0);
        for _ in 0..100 {
            backoff.next_delay("c");
        }
        within(backoff.next_delay("c"), 10.0);
    }

    #[test]
    fn jitter_spreads_objects_that_failed_together() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        let delays: std::collections::HashSet<Duration> =
            (0..20).map(|i| backoff.next_delay(&format!("object-{i}"))).collect();
        assert!(delays.len() > 10, "20 first retries, only {} distinct delays: {delays:?}", delays.len());
    }
}
