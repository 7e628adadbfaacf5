//! Supervised long-running tasks.
//!
//! A background loop that panics or returns is otherwise gone for good while the process looks healthy. The
//! [`Supervisor`] runs each named task, restarts it with backoff when it panics or returns, counts the restarts
//! (`task_restarts_total{task}`), keeps a `tasks_running{task}` gauge, and tells readiness which tasks cannot
//! run. Every task and restart is tracked ([`TaskTracker`]) and stops on [`Supervisor::shutdown`].

use std::{collections::BTreeMap, future::Future, sync::Arc, time::Duration};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use parking_lot::Mutex;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
};
use serde::Serialize;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::telemetry::Metrics;

/// Restart backoff, and when a task counts as down.
#[derive(Debug, Clone)]
pub struct Policy {
    /// First restart delay; doubles up to `max_delay`.
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// A run that lasted this long was healthy: the backoff and the failure count start over.
    pub stable_after: Duration,
    /// After this many failures in a row (each shorter than `stable_after`) the task counts as down even while
    /// a new attempt runs: it is restarting repeatedly.
    pub failures_until_down: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(30),
            stable_after: Duration::from_secs(60),
            failures_until_down: 3,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabel {
    task: String,
}

/// What a supervised task is doing, for readiness and tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskStatus {
    pub name: String,
    /// An attempt is running now (false while waiting to restart).
    pub running: bool,
    pub restarts: u64,
    /// Failures since the last stable run.
    pub failures_in_a_row: u32,
    /// How the last attempt ended ("panicked: ...", "returned").
    pub last_exit: Option<String>,
    /// Running, and not restarting repeatedly.
    pub up: bool,
}

#[derive(Debug, Default)]
struct State {
    running: bool,
    restarts: u64,
    failures_in_a_row: u32,
    last_exit: Option<String>,
}

struct Inner {
    policy: Policy,
    tracker: TaskTracker,
    cancel: CancellationToken,
    tasks: Mutex<BTreeMap<String, State>>,
    restarts: Family<TaskLabel, Counter>,
    running: Family<TaskLabel, Gauge>,
}

/// Runs named tasks and restarts them; cheap to clone (all clones supervise the same tasks).
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

impl Supervisor {
    /// A supervisor registering `task_restarts` and `tasks_running` in `metrics`.
    pub fn new(metrics: &Metrics, policy: Policy) -> Self {
        let restarts = metrics.register("task_restarts", "Restarts of supervised tasks", Family::default());
        let running = metrics.register("tasks_running", "Supervised tasks running now (0 or 1)", Family::default());
        Self {
            inner: Arc::new(Inner {
                policy,
                tracker: TaskTracker::new(),
                cancel: CancellationToken::new(),
                tasks: Mutex::default(),
                restarts,
                running,
            }),
        }
    }

    /// Runs `task` under `name` until shutdown: each attempt is `make()`; when it panics or returns, it is
    /// started again after a backoff. A name already supervised is left alone (returns false).
    pub fn spawn<F, Fut>(&self, name: impl Into<String>, mut make: F) -> bool
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let name = name.into();
        {
            let mut tasks = self.inner.tasks.lock();
            if tasks.contains_key(&name) {
                return false;
            }
            tasks.insert(name.clone(), State::default());
        }
        let inner = Arc::clone(&self.inner);
        self.inner.tracker.spawn(async move {
            let label = TaskLabel { task: name.clone() };
            let mut backoff = inner.backoff();
            loop {
                inner.set_running(&name, &label, true);
                let started = tokio::time::Instant::now();
                let attempt = inner.tracker.spawn(make());
                let abort = attempt.abort_handle();
                let exit = tokio::select! {
                    exit = attempt => exit,
                    () = inner.cancel.cancelled() => {
                        abort.abort();
                        inner.set_running(&name, &label, false);
                        return;
                    }
                };
                let how = match exit {
                    Ok(()) => "returned".to_owned(),
                    Err(err) if err.is_panic() => format!("panicked: {}", panic_message(err.into_panic())),
                    Err(err) => format!("cancelled: {err}"),
                };
                if started.elapsed() >= inner.policy.stable_after {
                    backoff = inner.backoff();
                }
                let delay = backoff.next().unwrap_or(inner.policy.max_delay);
                inner.note_exit(&name, &label, &how, started.elapsed() >= inner.policy.stable_after);
                tracing::error!(task = %name, exit = %how, restart_in_ms = delay.as_millis() as u64, "supervised task ended; restarting");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = inner.cancel.cancelled() => return,
                }
                inner.restarts.get_or_create(&label).inc();
                inner.tasks.lock().entry(name.clone()).or_default().restarts += 1;
            }
        });
        true
    }

    /// Every supervised task, by name.
    pub fn tasks(&self) -> Vec<TaskStatus> {
        let limit = self.inner.policy.failures_until_down;
        self.inner
            .tasks
            .lock()
            .iter()
            .map(|(name, s)| TaskStatus {
                name: name.clone(),
                running: s.running,
                restarts: s.restarts,
                failures_in_a_row: s.failures_in_a_row,
                last_exit: s.last_exit.clone(),
                up: s.running && s.failures_in_a_row < limit,
            })
            .collect()
    }

    /// The names of the tasks that are down (waiting to restart, or restarting repeatedly): readiness is red
    /// while this is not empty.
    pub fn down(&self) -> Vec<String> {
        self.tasks().into_iter().filter(|t| !t.up).map(|t| t.name).collect()
    }

    /// Cancelled on [`Supervisor::shutdown`]; tasks may watch it to finish their work gracefully.
    pub fn cancellation(&self) -> CancellationToken {
        self.inner.cancel.clone()
    }

    /// Stops every task (aborting attempts still running after `grace`) and waits for them.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.cancel.cancel();
        self.inner.tracker.close();
        if tokio::time::timeout(grace, self.inner.tracker.wait()).await.is_err() {
            tracing::warn!(?grace, "supervised tasks still running after the shutdown grace period");
        }
    }
}

impl Inner {
    fn backoff(&self) -> ExponentialBackoff {
        ExponentialBuilder::default()
            .with_min_delay(self.policy.min_delay)
            .with_max_delay(self.policy.max_delay)
            .with_jitter()
            .without_max_times()
            .build()
    }

    fn set_running(&self, name: &str, label: &TaskLabel, running: bool) {
        self.running.get_or_create(label).set(i64::from(running));
        if let Some(state) = self.tasks.lock().get_mut(name) {
            state.running = running;
        }
    }

    fn note_exit(&self, name: &str, label: &TaskLabel, how: &str, was_stable: bool) {
        self.running.get_or_create(label).set(0);
        let mut tasks = self.tasks.lock();
        let state = tasks.entry(name.to_owned()).or_default();
        state.running = false;
        state.failures_in_a_row = if was_stable { 1 } else { state.failures_in_a_row.saturating_add(1) };
        state.last_exit = Some(how.to_owned());
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn quick() -> Policy {
        Policy {
            min_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            stable_after: Duration::from_secs(60),
            failures_until_down: 3,
        }
    }

    async fn until(what: &str, mut check: impl FnMut() -> bool) {
        for _ in 0..500 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test]
    async fn a_panicking_task_is_restarted_counted_and_then_runs() {
        let metrics = Metrics::new("t");
        let supervisor = Supervisor::new(&metrics, quick());
        let attempts = Arc::new(AtomicU32::new(0));
        let seen = Arc::clone(&attempts);
        supervisor.spawn("flaky", move || {
            let attempt = seen.fetch_add(1, Ordering::SeqCst);
            async move {
                assert!(attempt >= 2, "attempt {attempt} fails");
                std::future::pending::<()>().await;
            }
        });
        until("the third attempt to run", || attempts.load(Ordering::SeqCst) == 3).await;
        until("the task to be running", || supervisor.tasks()[0].running).await;
        let status = &supervisor.tasks()[0];
        assert_eq!(status.restarts, 2);
        assert!(status.last_exit.as_deref().is_some_and(|e| e.starts_with("panicked: attempt 1 fails")), "{status:?}");
        assert!(status.up, "two failures are under the limit: {status:?}");
        let text = metrics.encode();
        assert!(text.contains("t_task_restarts_total{task=\"flaky\"} 2"), "{text}");
        assert!(text.contains("t_tasks_running{task=\"flaky\"} 1"), "{text}");
        assert!(!supervisor.spawn("flaky", || async {}), "one task per name");
        supervisor.shutdown(Duration::from_secs(1)).await;
        assert!(!supervisor.tasks()[0].running);
    }

    #[tokio::test]
    async fn a_task_that_keeps_ending_is_down() {
        let supervisor = Supervisor::new(&Metrics::new("t"), quick());
        supervisor.spawn("returns", || async {});
        until("three restarts", || supervisor.tasks()[0].restarts >= 3).await;
        assert_eq!(supervisor.down(), vec!["returns".to_string()]);
        supervisor.shutdown(Duration::from_secs(1)).await;
    }
}
