//! Operator tests, in one binary so the heavy dependencies link once.
//!
//! - `crds`: the YAML in `crds/` is what `crdgen` writes; examples fit the types.
//! - `video_source`, `recording`: reconciles against kube-rs's mocked API server (tower-test) asserting the exact
//!   finalizer, Event and status calls, with a real control node on the real services.
//! - `end_to_end`: Kubernetes mocked, LiveMix real: the control node matches the resources afterwards, also
//!   after operator restarts.
//!
//! The control-node tests need the services of `scripts/services.sh up` and their settings:
//! `eval "$(scripts/services.sh env)"`. Without them they fail, naming the missing variable.

mod controller;
mod crds;
mod end_to_end;
mod recording;
mod support;
mod video_source;
