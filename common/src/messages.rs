//! Messages between edges and control nodes on the bus.
//!
//! Every message is one JSON object with a `type`, an `id` and, on requests that want an answer, a `reply_to`
//! topic. Answers are `general_resp` carrying the request's id in `request_id`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::{Recording, SegmentInfo, Source};

/// A message with its routing fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: Uuid,
    /// Topic to send the `general_resp` to; only on requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    #[serde(flatten)]
    pub body: Message,
}

impl Envelope {
    pub fn new(body: Message) -> Self {
        Self { id: Uuid::new_v4(), reply_to: None, body }
    }

    pub fn request(body: Message, reply_to: impl Into<String>) -> Self {
        Self { reply_to: Some(reply_to.into()), ..Self::new(body) }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // An enum of plain data with string keys always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(data: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(data)
    }

    /// The short name of the message type, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        self.body.kind()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// control -> edge: start or stop forwarding a source's segments.
    ChangeStreamState { source_id: Uuid, new_state: bool },
    /// control -> edge: upload segments of the recording's source newer than its start to the object store.
    StartRecording { recording: Recording },
    /// control -> edge: stop uploading for a recording.
    StopRecording { recording_id: String, end_ts: DateTime<Utc> },
    /// edge -> control: the answer to any request.
    GeneralResp {
        request_id: Uuid,
        success: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// edge -> control: a segment was uploaded to the object store for these recordings.
    NewVideoRecordingSegment { recording_ids: Vec<String>, segment: SegmentInfo },
    /// broadcast: a source's edge reported.
    ReportVideoSourceStatus { source: Source },
    /// broadcast: a recording started.
    RecordingStarted { recording: Recording },
    /// broadcast: a recording stopped.
    RecordingStopped { recording: Recording },
}

impl Message {
    pub fn kind(&self) -> &'static str {
        match self {
            Message::ChangeStreamState { .. } => "change_stream_state",
            Message::StartRecording { .. } => "start_recording",
            Message::StopRecording { .. } => "stop_recording",
            Message::GeneralResp { .. } => "general_resp",
            Message::NewVideoRecordingSegment { .. } => "new_video_recording_segment",
            Message::ReportVideoSourceStatus { .. } => "report_video_source_status",
            Message::RecordingStarted { .. } => "recording_started",
            Message::RecordingStopped { .. } => "recording_stopped",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_has_type_id_and_reply_to() {
        let source_id = Uuid::new_v4();
        let env = Envelope::request(Message::ChangeStreamState { source_id, new_state: true }, "ctl-reply");
        let json: serde_json::Value = serde_json::from_slice(&env.to_json()).unwrap();
        assert_eq!(json["type"], "change_stream_state");
        assert_eq!(json["id"], env.id.to_string());
        assert_eq!(json["reply_to"], "ctl-reply");
        assert_eq!(json["source_id"], source_id.to_string());
        assert_eq!(json["new_state"], true);
        assert_eq!(Envelope::from_json(&env.to_json()).unwrap(), env);
        assert_eq!(env.kind(), "change_stream_state");
    }

    #[test]
    fn responses_omit_empty_fields() {
        let env = Envelope::new(Message::GeneralResp { request_id: Uuid::nil(), success: true, error: None });
        let json: serde_json::Value = serde_json::from_slice(&env.to_json()).unwrap();
        assert!(json.get("reply_to").is_none());
        assert!(json.get("error").is_none());
    }
}
