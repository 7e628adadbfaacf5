//! LiveMix operator: `VideoSource` and `Recording` custom resources reconciled against the control node's
//! management API, so a Kubernetes user registers cameras and records them with `kubectl apply`.
//!
//! [`controller::run`] runs both controllers given a `kube::Client`, in this process; the `livemix-operator`
//! binary adds flags, logging and the `/metrics` + `/health` server around it.

pub mod backoff;
pub mod config;
pub mod context;
pub mod control_client;
pub mod controller;
pub mod crd;
pub mod crdgen;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod readiness;
pub mod reconcile;

pub use config::Settings;
pub use context::Context;
pub use control_client::{ControlClient, ControlError};
pub use controller::{Operator, RunError, run};
