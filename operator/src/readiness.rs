//! Whether this operator replica is Ready (`/ready`), with the same facts as gauges.
//!
//! - A **follower** (leader election on, Lease held by another replica) is Ready: it is a healthy standby, and a
//!   Ready follower lets a rolling update and the PodDisruptionBudget proceed. It watches nothing.
//! - The **leader**, or the only replica without leader election, is Ready once the informers' caches (the
//!   reflector stores of VideoSources and Recordings) have synced and the control node's management API answered
//!   its last probe. Readiness never restarts anything; liveness (`/health`) ignores all of this.

use std::sync::{
    Arc,
    atomic::{AtomicU8, Ordering},
};

use livemix_common::telemetry::Metrics;
use prometheus_client::metrics::gauge::Gauge;

/// What this replica does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Leader election off: always runs the controllers.
    Standalone,
    /// Waiting for the Lease.
    Follower,
    /// Holds the Lease and runs the controllers.
    Leader,
}

#[derive(Clone)]
pub struct Readiness {
    role: Arc<AtomicU8>,
    leader: Gauge,
    synced: Gauge,
    control: Gauge,
}

impl Readiness {
    /// Registers `leader`, `caches_synced` and `control_reachable` gauges in `metrics`.
    pub fn new(metrics: &Metrics) -> Self {
        Self {
            role: Arc::new(AtomicU8::new(Role::Standalone as u8)),
            leader: metrics.register(
                "leader",
                "1 while this replica runs the controllers (holds the Lease, or leader election is off)",
                Gauge::default(),
            ),
            synced: metrics.register(
                "caches_synced",
                "1 once the VideoSource and Recording caches of the running controllers have synced",
                Gauge::default(),
            ),
            control: metrics.register(
                "control_reachable",
                "1 when the control node's management API answered the leader's last readiness probe",
                Gauge::default(),
            ),
        }
    }

    pub fn role(&self) -> Role {
        match self.role.load(Ordering::Relaxed) {
            0 => Role::Standalone,
            1 => Role::Follower,
            _ => Role::Leader,
        }
    }

    pub fn set_role(&self, role: Role) {
        self.role.store(role as u8, Ordering::Relaxed);
        self.leader.set(i64::from(role != Role::Follower));
        if role == Role::Follower {
            self.synced.set(0);
        }
    }

    pub fn set_synced(&self, synced: bool) {
        self.synced.set(i64::from(synced));
    }

    pub fn set_control_reachable(&self, reachable: bool) {
        self.control.set(i64::from(reachable));
    }

    /// `Ok` when Ready, else what is missing.
    pub fn check(&self) -> Result<(), Vec<&'static str>> {
        if self.role() == Role::Follower {
            return Ok(());
        }
        let mut missing = Vec::new();
        if self.synced.get() == 0 {
            missing.push("the VideoSource and Recording caches have not synced yet");
        }
        if self.control.get() == 0 {
            missing.push("the control node's management API does not answer");
        }
        if missing.is_empty() { Ok(()) } else { Err(missing) }
    }

    /// The role as `/ready` and logs name it.
    pub fn role_name(&self) -> &'static str {
        match self.role() {
            Role::Standalone => "standalone",
            Role::Follower => "follower",
            Role::Leader => "leader",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn followers_are_ready_leaders_need_synced_caches_and_the_control_node() {
        let registry = Metrics::new("livemix_operator");
        let readiness = Readiness::new(&registry);
        assert_eq!(readiness.role(), Role::Standalone);
        assert_eq!(readiness.check().unwrap_err().len(), 2, "standalone, nothing synced: not ready");

        readiness.set_role(Role::Follower);
        assert!(readiness.check().is_ok());
        assert!(registry.encode().contains("livemix_operator_leader 0"), "{}", registry.encode());

        readiness.set_role(Role::Leader);
        assert!(registry.encode().contains("livemix_operator_leader 1"));
        readiness.set_synced(true);
        assert_eq!(readiness.check().unwrap_err(), ["the control node's management API does not answer"]);
        readiness.set_control_reachable(true);
        assert!(readiness.check().is_ok());
        readiness.set_control_reachable(false);
        assert!(readiness.check().is_err(), "a leader cut off from the control node is not Ready");

        // Deposed: the caches of the stopped controllers no longer count.
        readiness.set_role(Role::Follower);
        assert!(registry.encode().contains("livemix_operator_caches_synced 0"));
        assert!(readiness.check().is_ok());
        assert_eq!(readiness.role_name(), "follower");
    }
}
