//! Wire types of the control node's management API (`:8080`), shared by the control node (server), the operator
//! (client) and the tests, so that the two sides cannot drift apart. Replies carry the object under a named key
//! beside `success` and `request_id` (see [`crate::api`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Recording, Segment, Source};

/// `POST /v1/source` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSource {
    pub name: String,
    /// Seconds.
    pub segment_len: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `POST /v1/source/{id}/recording` body; every field is optional (an empty body means "now, no alias").
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRecording {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Seconds since the Unix epoch; absent means now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time_epoch: Option<i64>,
}

impl NewRecording {
    /// Starts at `start` (whole seconds), or now when `None`.
    pub fn starting_at(mut self, start: Option<DateTime<Utc>>) -> Self {
        self.start_time_epoch = start.map(|t| t.timestamp());
        self
    }
}

/// One source: the management API's source routes and the edge-facing `GET /v1/source?source_name=`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceReply {
    pub source: Source,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourcesReply {
    pub sources: Vec<Source>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordingReply {
    pub recording: Recording,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordingsReply {
    pub recordings: Vec<Recording>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SegmentsReply {
    pub segments: Vec<Segment>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_fields_stay_absent_on_the_wire() {
        let body = serde_json::to_value(NewRecording::default()).unwrap();
        assert_eq!(body, serde_json::json!({}));
        let body = serde_json::to_value(NewSource { name: "cam".into(), segment_len: 4, description: None }).unwrap();
        assert_eq!(body, serde_json::json!({"name": "cam", "segment_len": 4}));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<NewSource>(r#"{"name":"cam","segment_len":4,"segment_length":4}"#);
        assert!(err.is_err());
        let err = serde_json::from_str::<NewRecording>(r#"{"start":1}"#);
        assert!(err.is_err());
    }

    #[test]
    fn starting_at_keeps_whole_seconds() {
        let start = DateTime::parse_from_rfc3339("2026-12-02T10:00:00.750Z").unwrap().with_timezone(&Utc);
        assert_eq!(NewRecording::default().starting_at(Some(start)).start_time_epoch, Some(start.timestamp()));
        assert_eq!(NewRecording::default().starting_at(None).start_time_epoch, None);
    }
}
