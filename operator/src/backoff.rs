//! Exponential, capped retry delays per object, so a control node that is down is not hammered and one bad
//! object does not slow the others.

use std::{collections::HashMap, sync::Arc, time::Duration};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use parking_lot::Mutex;

/// One [`ExponentialBackoff`] per object key, started at its first failure and forgotten when it reconciles.
#[derive(Clone, Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    max: Duration,
    failing: Arc<Mutex<HashMap<String, ExponentialBackoff>>>,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        let max = max.max(base);
        let builder = ExponentialBuilder::new().with_min_delay(base).with_max_delay(max).without_max_times();
        Self { builder, max, failing: Arc::default() }
    }

    /// Counts one more failure of `key` and returns how long to wait before retrying: base, 2×base, 4×base…
    /// up to the cap.
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
        let delays: Vec<u64> = (0..6).map(|_| backoff.next_delay("a").as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
        assert_eq!(backoff.next_delay("b"), Duration::from_secs(1));
        backoff.reset("a");
        assert_eq!(backoff.next_delay("a"), Duration::from_secs(1));
        for _ in 0..100 {
            backoff.next_delay("c");
        }
        assert_eq!(backoff.next_delay("c"), Duration::from_secs(10));
    }
}
