//! The operator against a REAL kube-apiserver (with etcd and kube-controller-manager), and a real control node on
//! the real backing services: what the mocked API server of `tests/integration` cannot show, such as the CRDs'
//! OpenAPI schema and CEL rules, server-side apply of the status subresource, finalizers, watches, Events
//! (events.k8s.io) and kubectl's printer columns.
//!
//! - `crds`: the CRDs of `crds/` install, become Established and kubectl shows their printer columns.
//! - `validation`: invalid resources and forbidden changes are refused by the API server itself.
//! - `lifecycle`: `deletionPolicy` (and `purgeOnDelete`) on `kubectl delete`, the `livemix.io/skip-cleanup`
//!   escape hatch while the control node is gone, `spec.hold` and `spec.retention` in the control node.
//! - `video_source`, `recording`: the control node follows the resources; status, finalizers and Events.
//! - `restart`: a new operator adopts what the old one made, duplicating nothing.
//! - `rbac`: the permissions the Helm chart grants the operator are enough.
//! - `leader_election`: two real operator processes, one leader; SIGKILL of the leader, the other takes over.
//!
//! Needs `bash scripts/k8s.sh up && eval "$(bash scripts/k8s.sh env)"` (KUBECONFIG, and kubectl on PATH) and
//! `scripts/services.sh up && eval "$(scripts/services.sh env)"`. Without them the tests fail, saying so. Each
//! test works in a namespace of its own, with an operator watching only that namespace.

mod crds;
mod leader_election;
mod lifecycle;
mod rbac;
mod recording;
mod restart;
mod support;
mod validation;
mod video_source;
