//! Exponential, capped retry delays per object, so a control node that is down is not hammered and one bad
//! object does not slow the others.

use std::{collections::HashMap, sync::Arc, time::Duration};

use parking_lot::Mutex;

#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: Arc<Mutex<HashMap<String, u32>>>,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self { base, max: max.max(base), failures: Arc::default() }
    }

    /// Counts one more failure of `key` and returns how long to wait before retrying: base, 2×base, 4×base…
    /// up to the cap.
    pub fn next_delay(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock();
        let count = failures.entry(key.to_owned()).or_insert(0);
        let exponent = (*count).min(31);
        *count = count.saturating_add(1);
        self.base.checked_mul(1u32 << exponent).unwrap_or(self.max).min(self.max)
    }

    /// Forgets the failures of `key` after it reconciled.
    pub fn reset(&self, key: &str) {
        self.failures.lock().remove(key);
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
