//! `VideoSource`: a camera or encoder registered in the control node.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, ResourceExt};
use livemix_common::model::RecordingMode as ControlRecordingMode;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    condition,
    lifecycle::{DeletionPolicy, RetentionSpec},
};

/// What the user wants: a source registered in the control node, streaming or not.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[allow(clippy::duplicated_attributes)] // each printcolumn(...) repeats the same keys, as kube intends
#[kube(
    group = "livemix.io",
    version = "v1alpha1",
    kind = "VideoSource",
    namespaced,
    status = "VideoSourceStatus",
    derive = "PartialEq",
    shortname = "vsrc",
    category = "livemix",
    doc = "A camera or encoder feed registered in the LiveMix control node and served by an edge.",
    printcolumn(name = "Streaming", type_ = "boolean", json_path = ".status.streaming"),
    printcolumn(name = "Reachable", type_ = "boolean", json_path = ".status.reachable"),
    printcolumn(name = "Recording", type_ = "string", json_path = ".status.recording"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Last Seen", type_ = "date", json_path = ".status.lastSeen"),
    printcolumn(name = "ID", type_ = "string", json_path = ".status.id", priority = 1),
    printcolumn(name = "Edge", type_ = "string", json_path = ".status.edge", priority = 1),
    printcolumn(name = "Stored Bytes", type_ = "integer", json_path = ".status.storedBytes", priority = 1),
    printcolumn(name = "Live URL", type_ = "string", json_path = ".status.liveUrl", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct VideoSourceSpec {
    /// Name of the source in the control node, as edges and encoders address it (e.g. the ingest URL
    /// `/v1/ingest/{name}/index.m3u8`). Defaults to the resource's name. Control-node names are global, so two
    /// resources in different namespaces must not use the same one. A source of that name registered by someone
    /// else is taken over only with the annotation `livemix.io/adopt: "true"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[A-Za-z0-9_.-]+$"))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "!self.contains('..')", "message": "name must not contain '..'"}
    ]))]
    pub name: Option<String>,
    /// Free text shown in the control node, at most 4096 bytes of UTF-8.
    #[serde(default)]
    #[schemars(length(max = 4096))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "bytes(self).size() <= 4096", "message": "description must be at most 4096 bytes of UTF-8"}
    ]))]
    pub description: String,
    /// Segment length the encoder is configured with, in seconds. Fixed once the source is registered: the
    /// control node cannot change it.
    #[schemars(range(min = 1, max = 3600))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self == oldSelf", "message": "segmentLength cannot change once the source is registered"}
    ]))]
    pub segment_length: i32,
    /// Whether the edge forwards segments to the control node (live playback), or keeps them local.
    #[serde(default)]
    pub streaming: bool,
    /// What deleting this resource does to the source's recordings: `Retain` (the default when unset) deletes
    /// the source from the control node and keeps its recordings there, listable and playable; `Delete` deletes
    /// them too, with their segments in the object store, whatever their own Recording resources say, and is
    /// refused while any of them is on hold. A deletion that cannot be carried out waits (condition `Deleting`);
    /// the annotation `livemix.io/skip-cleanup: "true"` releases the resource without the control node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
    /// How long the source's recordings are kept in the control node; unset limits follow the control node's
    /// default. Applied to the control node whenever it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionSpec>,
    /// The edge that serves this source: its id in the control node's edge credentials (for the chart's
    /// in-cluster edges `<topicPrefix>livemix-edge-<pod>`, e.g. `livemix-edge-livemix-edge-0`). Only that edge's
    /// credential may then report, look up or forward the source; a source bound to no edge is refused to every
    /// per-edge credential. Sent when the source is registered, and applied whenever the control node's binding
    /// differs (the source moves to this edge). Removing the field leaves the binding as it is: unbind with
    /// `DELETE /v1/source/{id}/edge` on the management API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9_.-]+$"))]
    pub edge: Option<String>,
    /// What the source records: `onDemand` (the default when unset) only what its Recordings cover;
    /// `continuous` every segment, through one open-ended recording the control node starts and keeps active
    /// (retention decides how long the segments stay). Sent when the source is registered, and applied whenever
    /// the control node's mode differs; switching back to `onDemand` stops the continuous recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<RecordingMode>,
}

// What a source records. Not a doc comment: it would replace the field's own description in the CRD schema.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RecordingMode {
    /// Only what the source's recordings cover.
    #[default]
    OnDemand,
    /// Every segment, through one open-ended recording the control node keeps active.
    Continuous,
}

impl RecordingMode {
    /// The spelling of the CRD (`onDemand`, `continuous`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OnDemand => "onDemand",
            Self::Continuous => "continuous",
        }
    }

    /// The control node's mode.
    pub fn to_control(self) -> ControlRecordingMode {
        match self {
            Self::OnDemand => ControlRecordingMode::OnDemand,
            Self::Continuous => ControlRecordingMode::Continuous,
        }
    }

    pub fn from_control(mode: ControlRecordingMode) -> Self {
        match mode {
            ControlRecordingMode::OnDemand => Self::OnDemand,
            ControlRecordingMode::Continuous => Self::Continuous,
        }
    }
}

/// What the control node reports about the source.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VideoSourceStatus {
    /// Id of the source in the control node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    /// Streaming state the control node holds (and sends to the edge).
    #[serde(default)]
    pub streaming: bool,
    /// Whether the source's edge reported recently.
    #[serde(default)]
    pub reachable: bool,
    /// The edge the source is bound to in the control node (the only one whose credential may act for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<String>,
    /// What the source records in the control node: `onDemand` or `continuous`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<RecordingMode>,
    /// The edge serving the source (its request topic), once an edge has reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rr_target: Option<String>,
    /// When the control node last heard from the edge, by the control node's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<DateTime<Utc>>,
    /// HLS URL of the live stream for players.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_url: Option<String>,
    /// Bytes the source's recorded segments take in the object store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_bytes: Option<i64>,
    /// Recorded segments of the source kept in the object store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_segments: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::conditions_schema")]
    pub conditions: Vec<Condition>,
}

impl VideoSource {
    /// The source's name in the control node.
    pub fn control_name(&self) -> String {
        self.spec.name.clone().unwrap_or_else(|| self.name_any())
    }

    /// The control node's id of the source, once known.
    pub fn source_id(&self) -> Option<Uuid> {
        self.status.as_ref().and_then(|s| s.id)
    }

    /// What the source is to record: `spec.recording`, on demand when unset.
    pub fn recording_mode(&self) -> RecordingMode {
        self.spec.recording.unwrap_or_default()
    }

    /// What deleting the resource does in the control node.
    pub fn deletion_policy(&self) -> DeletionPolicy {
        self.spec.deletion_policy.unwrap_or_default()
    }

    /// The control node's id of the source when it is registered and in step with the spec: what a Recording
    /// needs before it can start.
    pub fn ready_source_id(&self) -> Option<Uuid> {
        let status = self.status.as_ref()?;
        condition::is_true(&status.conditions, condition::READY).then_some(status.id).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_mode_is_camel_case_and_maps_to_the_control_node() {
        assert_eq!(serde_json::to_value(RecordingMode::OnDemand).unwrap(), "onDemand");
        assert_eq!(serde_json::to_value(RecordingMode::Continuous).unwrap(), "continuous");
        assert_eq!(RecordingMode::default(), RecordingMode::OnDemand);
        for mode in [RecordingMode::OnDemand, RecordingMode::Continuous] {
            assert_eq!(RecordingMode::from_control(mode.to_control()), mode);
            assert_eq!(serde_json::to_value(mode).unwrap(), mode.as_str());
        }
        assert_eq!(RecordingMode::Continuous.to_control(), ControlRecordingMode::Continuous);
        assert_eq!(RecordingMode::OnDemand.to_control(), ControlRecordingMode::OnDemand);
    }
}
