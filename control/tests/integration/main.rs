//! Integration tests of the control node against the real PostgreSQL, memcached, S3 (moto) and Pub/Sub
//! emulator started by `scripts/services.sh up`. One test binary, so the heavy dependencies link once.

mod auth;
mod console;
mod edge_api;
mod http_caching;
mod lifecycle;
mod live;
mod management;
mod recording;
mod restart;
mod segment_identity;
mod support;
