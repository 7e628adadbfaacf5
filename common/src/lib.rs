//! Pieces shared by every LiveMix binary.
//!
//! The control node, the edge node and the operator all speak the same JSON, read their configuration the same
//! way and talk to the same backing services, so those concepts live here exactly once.

pub mod api;
pub mod bus;
pub mod cache;
pub mod config;
pub mod control_client;
pub mod credentials;
pub mod digest;
pub mod door;
pub mod edge_api;
pub mod fds;
pub mod hls;
pub mod management_api;
pub mod memory;
pub mod messages;
pub mod model;
pub mod rpc;
pub mod segment;
pub mod segment_id;
pub mod server;
pub mod signal;
pub mod store;
pub mod supervise;
pub mod telemetry;
pub mod units;

pub use api::{ApiError, ApiResult};
