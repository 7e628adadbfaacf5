//! High availability: several operator replicas, one of which (the holder of a `coordination.k8s.io/v1` Lease)
//! runs the controllers.
//!
//! The Lease is kept by [`kube_lease_manager`]: the leader renews it `grace` seconds before it expires; a follower
//! waits for it to expire (a leader that died stops renewing) and takes it, so a new leader runs within the lease
//! duration (plus up to one second of the crate's anti-collision pause).
//!
//! - A **follower** runs no controller and no watch. It is Ready, so a rolling update proceeds and the
//!   PodDisruptionBudget counts it; `livemix_operator_leader` is 0 on it.
//! - The **leader** is Ready once its informers' caches synced and the control node answers (see
//!   [`Readiness`]); `livemix_operator_leader` is 1.
//! - **Leadership lost** (the Lease went to another holder, or could not be renewed: an API-server outage leaves a
//!   leader unable to know whether another took over): the controllers stop at once, in-flight reconciles finish
//!   (bounded by the grace period), and [`run_elected`] returns [`ElectionError::LeadershipLost`]; the binary exits
//!   non-zero and Kubernetes restarts the container, which comes back as a follower with fresh caches. This is
//!   what controller-runtime and client-go controllers do: no reconcile of a deposed leader can overlap the new
//!   leader's, and no state of the old term survives.
//! - **Shutdown** (SIGTERM: rolling update, drain): the controllers stop, then the Lease is released, so the
//!   other replica takes over at once instead of after the lease duration.

use std::{future::Future, time::Duration};

use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use tokio_util::sync::CancellationToken;

pub use crate::readiness::{Readiness, Role};

const DEFAULT_LEASE_NAME: &str = "livemix-operator";
const DEFAULT_LEASE_DURATION_SECS: u64 = 15;
const DEFAULT_LEASE_GRACE_SECS: u64 = 5;
/// Retry delays of a follower whose Lease calls fail (API server unreachable).
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(15);

/// Leader-election flags of `livemix-operator`.
#[derive(Debug, Clone, clap::Args)]
pub struct LeaderArgs {
    /// Run the controllers only while holding the Lease, so several replicas can run (one active, the others on
    /// standby). Off: this process always runs them; run one replica only.
    #[arg(long, env = "LIVEMIX_OPERATOR_LEADER_ELECT", default_value_t = false)]
    pub leader_elect: bool,
    /// Name of the `coordination.k8s.io` Lease the replicas compete for.
    #[arg(long, env = "LIVEMIX_OPERATOR_LEASE_NAME", default_value = DEFAULT_LEASE_NAME)]
    pub lease_name: String,
    /// Namespace of the Lease; default: the pod's (`POD_NAMESPACE`), else the watched namespace.
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// How long the Lease stays valid after its last renewal, in seconds: the longest time without a leader
    /// after the leader died.
    #[arg(long, env = "LIVEMIX_OPERATOR_LEASE_DURATION_SECS", default_value_t = DEFAULT_LEASE_DURATION_SECS,
          value_parser = clap::value_parser!(u64).range(2..))]
    pub lease_duration_secs: u64,
    /// How long before expiry the leader renews the Lease, in seconds (also the tolerated clock skew between
    /// nodes); less than the duration.
    #[arg(long, env = "LIVEMIX_OPERATOR_LEASE_GRACE_SECS", default_value_t = DEFAULT_LEASE_GRACE_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub lease_grace_secs: u64,
}

impl LeaderArgs {
    /// Checks the flags together: the grace period must be shorter than the lease.
    pub fn validate(&self) -> Result<(), String> {
        if self.lease_grace_secs >= self.lease_duration_secs {
            return Err(format!(
                "--lease-grace-secs ({}) must be less than --lease-duration-secs ({})",
                self.lease_grace_secs, self.lease_duration_secs
            ));
        }
        Ok(())
    }

    /// The Lease's namespace: the flag (`POD_NAMESPACE`), else the watched namespace.
    pub fn namespace(&self, watched: Option<&str>) -> Option<String> {
        self.lease_namespace.clone().filter(|ns| !ns.is_empty()).or_else(|| watched.map(str::to_owned))
    }

    /// Builds the lease manager (creating the Lease if it does not exist). `instance` names this process (the
    /// pod name); a random suffix keeps two processes of one name (a restarted container, two local runs)
    /// apart, so a restarted container never mistakes its dead predecessor's Lease for its own.
    pub async fn lease_manager(
        &self,
        client: kube::Client,
        namespace: &str,
        instance: &str,
    ) -> Result<LeaseManager, LeaseManagerError> {
        LeaseManagerBuilder::new(client, &self.lease_name)
            .with_namespace(namespace)
            .with_identity(identity(instance))
            .with_duration(self.lease_duration_secs)
            .with_grace(self.lease_grace_secs)
            .with_field_manager(format!("{}-lease", crate::context::MANAGER))
            .build()
            .await
    }

    /// How long a deposed leader's controllers may take to stop before the process exits anyway.
    pub fn stop_timeout(&self) -> Duration {
        Duration::from_secs(self.lease_grace_secs)
    }
}

/// `{instance}_{8 random hex digits}`, as client-go's `{hostname}_{uuid}`.
pub fn identity(instance: &str) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{instance}_{}", &suffix[..8])
}

/// What [`run_elected`] needs from a lease manager; [`LeaseManager`] in production, a script in tests.
pub trait Elector {
    /// Waits until this process's leadership changes (acquiring the Lease as soon as it is free, renewing it
    /// while held) and returns whether it now leads.
    fn changed(&self) -> impl Future<Output = Result<bool, LeaseManagerError>> + Send;
    /// Gives the Lease up, if held.
    fn release(&self) -> impl Future<Output = Result<(), LeaseManagerError>> + Send;
}

impl Elector for LeaseManager {
    fn changed(&self) -> impl Future<Output = Result<bool, LeaseManagerError>> + Send {
        LeaseManager::changed(self)
    }

    fn release(&self) -> impl Future<Output = Result<(), LeaseManagerError>> + Send {
        LeaseManager::release(self)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ElectionError<E: std::error::Error + 'static> {
    /// The Lease went to another holder or could not be renewed; the controllers were stopped.
    #[error("leadership lost{}; controllers stopped", .0.as_ref().map(|e| format!(" ({e})")).unwrap_or_default())]
    LeadershipLost(Option<LeaseManagerError>),
    /// The deposed leader's controllers did not stop within the grace period.
    #[error("leadership lost and the controllers did not stop within {0:?}")]
    StopTimedOut(Duration),
    /// The controllers themselves failed.
    #[error(transparent)]
    Controllers(E),
}

/// Waits for leadership, then runs `controllers` (given a token that stops them) until shutdown or until the
/// leadership is lost. Returns `Ok` after a shutdown (Lease released), an error when leadership was lost (the
/// caller exits) or the controllers failed.
pub async fn run_elected<L, F, Fut, E>(
    elector: &L,
    readiness: &Readiness,
    shutdown: CancellationToken,
    stop_timeout: Duration,
    controllers: F,
) -> Result<(), ElectionError<E>>
where
    L: Elector,
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::error::Error + 'static,
{
    readiness.set_role(Role::Follower);
    tracing::info!("waiting for leadership");
    let mut retry = RETRY_MIN;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => {
                tracing::info!("shutting down as a follower");
                return Ok(());
            }
            changed = elector.changed() => match changed {
                Ok(true) => break,
                Ok(false) => retry = RETRY_MIN,
                Err(err) => {
                    tracing::warn!(%err, retry_in = ?retry, "cannot take part in the leader election");
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(retry) => {}
                    }
                    retry = (retry * 2).min(RETRY_MAX);
                }
            },
        }
    }

    tracing::info!("leadership acquired: starting the controllers");
    readiness.set_role(Role::Leader);
    let term = shutdown.child_token();
    let run = controllers(term.clone());
    tokio::pin!(run);
    let lost = tokio::select! {
        result = &mut run => {
            // The controllers ended by themselves: after shutdown, or on an error.
            readiness.set_role(Role::Follower);
            release(elector).await;
            return result.map_err(ElectionError::Controllers);
        }
        lost = lost_leadership(elector) => lost,
    };

    tracing::error!(error = lost.as_ref().map(|e| e.to_string()), "leadership lost: stopping the controllers");
    readiness.set_role(Role::Follower);
    term.cancel();
    match tokio::time::timeout(stop_timeout, run).await {
        Ok(_) => {
            // Renewal failed but the Lease may still name this process: give it up, so the other replica need
            // not wait for it to expire (best effort: the API server may be what failed).
            release(elector).await;
            Err(ElectionError::LeadershipLost(lost))
        }
        Err(_) => Err(ElectionError::StopTimedOut(stop_timeout)),
    }
}

/// Resolves when leadership is no longer certain: `None` when another holder took the Lease, the error when it
/// could not be renewed.
async fn lost_leadership<L: Elector>(elector: &L) -> Option<LeaseManagerError> {
    loop {
        match elector.changed().await {
            Ok(true) => continue,
            Ok(false) => return None,
            Err(err) => return Some(err),
        }
    }
}

async fn release<L: Elector>(elector: &L) {
    match elector.release().await {
        Ok(()) => tracing::info!("Lease released"),
        Err(err) => tracing::warn!(%err, "cannot release the Lease; the other replica takes over when it expires"),
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::VecDeque,
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
    };

    use clap::Parser;
    use livemix_common::telemetry::Metrics;
    use parking_lot::Mutex;
    use tokio::sync::Notify;

    use super::*;

    /// Answers `changed()` from a script; past its end, never resolves. `release()` is counted.
    #[derive(Default)]
    struct Scripted {
        steps: Mutex<VecDeque<Result<bool, &'static str>>>,
        next: Notify,
        released: AtomicUsize,
    }

    impl Scripted {
        fn new(steps: impl IntoIterator<Item = Result<bool, &'static str>>) -> Self {
            Self { steps: Mutex::new(steps.into_iter().collect()), ..Self::default() }
        }

        fn push(&self, step: Result<bool, &'static str>) {
            self.steps.lock().push_back(step);
            self.next.notify_one();
        }
    }

    impl Elector for Scripted {
        async fn changed(&self) -> Result<bool, LeaseManagerError> {
            loop {
                if let Some(step) = self.steps.lock().pop_front() {
                    return step.map_err(|e| LeaseManagerError::InconsistentState(e.into()));
                }
                self.next.notified().await;
            }
        }

        async fn release(&self) -> Result<(), LeaseManagerError> {
            self.released.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    fn readiness() -> Readiness {
        Readiness::new(&Metrics::new("livemix_operator"))
    }

    #[derive(Debug, thiserror::Error)]
    #[error("boom")]
    struct Boom;

    #[tokio::test(start_paused = true)]
    async fn a_follower_is_ready_and_runs_nothing_until_shutdown() {
        let elector = Scripted::new([Err("api down"), Ok(false)]);
        let readiness = readiness();
        let shutdown = CancellationToken::new();
        let started = AtomicUsize::new(0);
        let run = run_elected(&elector, &readiness, shutdown.clone(), Duration::from_secs(1), |_| async {
            started.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Boom>(())
        });
        tokio::pin!(run);
        // The scripted error is retried after a pause; nothing ever leads.
        tokio::select! {
            _ = &mut run => panic!("returned early"),
            () = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
        assert_eq!(readiness.role(), Role::Follower);
        assert!(readiness.check().is_ok(), "a follower is Ready");
        shutdown.cancel();
        run.await.unwrap();
        assert_eq!(started.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_leader_stops_its_controllers_when_the_lease_is_lost() {
        let elector = Arc::new(Scripted::new([Ok(true)]));
        let readiness = readiness();
        let stopped = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let (elector, readiness, stopped) = (elector.clone(), readiness.clone(), stopped.clone());
            async move {
                run_elected(
                    &*elector,
                    &readiness,
                    CancellationToken::new(),
                    Duration::from_secs(5),
                    |term| async move {
                        term.cancelled().await;
                        stopped.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, Boom>(())
                    },
                )
                .await
            }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(readiness.role(), Role::Leader);
        elector.push(Ok(false));
        let result = task.await.unwrap();
        assert!(matches!(result, Err(ElectionError::LeadershipLost(None))), "{result:?}");
        assert_eq!(stopped.load(Ordering::SeqCst), 1, "the controllers were stopped");
        assert_eq!(readiness.role(), Role::Follower);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_renewal_deposes_the_leader_and_gives_the_lease_up() {
        let elector = Scripted::new([Ok(true), Err("renewal refused")]);
        let readiness = readiness();
        let result =
            run_elected(&elector, &readiness, CancellationToken::new(), Duration::from_secs(5), |term| async move {
                term.cancelled().await;
                Ok::<_, Boom>(())
            })
            .await;
        assert!(matches!(result, Err(ElectionError::LeadershipLost(Some(_)))), "{result:?}");
        assert_eq!(elector.released.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn controllers_that_do_not_stop_exit_the_process() {
        let elector = Scripted::new([Ok(true), Ok(false)]);
        let result = run_elected(&elector, &readiness(), CancellationToken::new(), Duration::from_secs(5), |_| async {
            std::future::pending::<()>().await;
            Ok::<_, Boom>(())
        })
        .await;
        assert!(matches!(result, Err(ElectionError::StopTimedOut(_))), "{result:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_the_leader_and_releases_the_lease() {
        let elector = Scripted::new([Ok(true)]);
        let shutdown = CancellationToken::new();
        let cancel = shutdown.clone();
        let result = run_elected(&elector, &readiness(), shutdown, Duration::from_secs(5), |term| async move {
            cancel.cancel();
            term.cancelled().await;
            Ok::<_, Boom>(())
        })
        .await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(elector.released.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_controller_error_is_returned_and_the_lease_released() {
        let elector = Scripted::new([Ok(true)]);
        let result = run_elected(&elector, &readiness(), CancellationToken::new(), Duration::from_secs(5), |_| async {
            Err(Boom)
        })
        .await;
        assert!(matches!(result, Err(ElectionError::Controllers(Boom))), "{result:?}");
        assert_eq!(elector.released.load(Ordering::SeqCst), 1);
    }

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        leader: LeaderArgs,
    }

    #[test]
    fn flags_default_and_validate() {
        let args = Args::try_parse_from(["x"]).unwrap().leader;
        assert!(!args.leader_elect);
        assert_eq!((args.lease_duration_secs, args.lease_grace_secs), (15, 5));
        args.validate().unwrap();
        assert_eq!(args.namespace(Some("watched")).as_deref(), args.lease_namespace.as_deref().or(Some("watched")));
        let bad = Args::try_parse_from(["x", "--lease-duration-secs=5", "--lease-grace-secs=5"]).unwrap().leader;
        assert!(bad.validate().unwrap_err().contains("less than"));
        let a = identity("pod-a");
        assert!(a.starts_with("pod-a_") && a.len() == "pod-a_".len() + 8, "{a}");
        assert_ne!(a, identity("pod-a"));
    }
}
