//! Wire types of the control node's edge-facing API, shared by the control node (server) and edges (client).
//! `GET /v1/source?source_name=` answers with the management API's [`crate::management_api::SourceReply`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Recording, Source};

/// `POST /v1/source/{id}/status` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusReport {
    /// The edge's id, which is also the Pub/Sub topic it takes commands on.
    pub rr_target_id: String,
    /// The edge's clock; kept for diagnosis only, never used to judge staleness.
    #[serde(default)]
    pub local_timestamp: Option<DateTime<Utc>>,
}

/// The reply to a status report: the wanted state, so an edge heals after any missed command.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusReply {
    pub source: Source,
    /// The source's active recordings: the edge uploads for exactly these.
    pub recordings: Vec<Recording>,
}

/// Headers of `POST /v1/new-segment`, written and read only by [`crate::segment`].
pub mod headers {
    pub const SOURCE_ID: &str = "Source-ID";
    pub const SEGMENT_NAME: &str = "Segment-Name";
    /// The encoder run (a ULID; see [`crate::segment_id`]). Absent from edges that predate it (the legacy path).
    pub const SEGMENT_RUN: &str = "Segment-Run";
    /// The sequence number within the run.
    pub const SEGMENT_SEQ: &str = "Segment-Seq";
    /// Seconds since the Unix epoch (fractions allowed) or RFC 3339.
    pub const SEGMENT_START_TS: &str = "Segment-Start-TS";
    pub const SEGMENT_LENGTH_MSEC: &str = "Segment-Length-MSec";
    /// `true` when a discontinuity precedes the segment (optional).
    pub const SEGMENT_DISCONTINUITY: &str = "Segment-Discontinuity";
}
