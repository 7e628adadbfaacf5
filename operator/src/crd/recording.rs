//! `Recording`: a snippet of one VideoSource's stream saved to the object store.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Longest alias the control node accepts.
const MAX_ALIAS_LEN: usize = 253;

/// What the user wants: a recording of one source, running until `stopped` is set or the resource is deleted.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[allow(clippy::duplicated_attributes)] // each printcolumn(...) repeats the same keys, as kube intends
#[kube(
    group = "livemix.io",
    version = "v1alpha1",
    kind = "Recording",
    namespaced,
    status = "RecordingStatus",
    derive = "PartialEq",
    shortname = "rec",
    category = "livemix",
    doc = "A recording of one VideoSource's stream, saved by its edge to the object store.",
    printcolumn(name = "Source", type_ = "string", json_path = ".spec.source"),
    printcolumn(name = "Active", type_ = "boolean", json_path = ".status.active"),
    printcolumn(name = "Segments", type_ = "integer", json_path = ".status.segments"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Start", type_ = "date", json_path = ".status.startTs"),
    printcolumn(name = "End", type_ = "date", json_path = ".status.endTs", priority = 1),
    printcolumn(name = "ID", type_ = "string", json_path = ".status.id", priority = 1),
    printcolumn(name = "Playlist URL", type_ = "string", json_path = ".status.playlistUrl", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.alias) == has(oldSelf.alias)", "message": "alias cannot be added or removed once the recording exists"},
    {"rule": "has(self.startTime) == has(oldSelf.startTime)", "message": "startTime cannot be added or removed once the recording exists"}
]))]
pub struct RecordingSpec {
    /// Name of the VideoSource to record, in the same namespace.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self == oldSelf", "message": "source is immutable"}
    ]))]
    pub source: String,
    /// Alias of the recording in the control node, unique there. Defaults to `<namespace>.<name>.<uid prefix>`,
    /// which also lets a restarted operator find the recording it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[A-Za-z0-9_.-]+$"))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self == oldSelf", "message": "alias is immutable"},
        {"rule": "!self.contains('..')", "message": "alias must not contain '..'"}
    ]))]
    pub alias: Option<String>,
    /// Free text stored with the recording, at most 4096 bytes of UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "bytes(self).size() <= 4096", "message": "description must be at most 4096 bytes of UTF-8"}
    ]))]
    pub description: Option<String>,
    /// When the recording starts (RFC 3339); may lie in the past to keep segments the edge still holds.
    /// Defaults to when the recording is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self == oldSelf", "message": "startTime is immutable"}
    ]))]
    pub start_time: Option<DateTime<Utc>>,
    /// Set to stop the recording. A stopped recording cannot be restarted: create a new Recording instead.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "!oldSelf || self", "message": "a stopped recording cannot be restarted; create a new Recording"}
    ]))]
    pub stopped: bool,
    /// Also delete the recording from the control node when this resource is deleted (it is always stopped).
    /// Its segments stay in the object store.
    #[serde(default)]
    pub purge_on_delete: bool,
}

/// What the control node reports about the recording.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordingStatus {
    /// Id of the recording in the control node (a ULID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Alias of the recording in the control node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Whether the edge is still recording.
    #[serde(default)]
    pub active: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ts: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ts: Option<DateTime<Utc>>,
    /// Segments stored so far.
    #[serde(default)]
    pub segments: i64,
    /// HLS URL of the recording for players.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playlist_url: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::conditions_schema")]
    pub conditions: Vec<Condition>,
}

impl Recording {
    /// The alias used in the control node: the spec's, or one derived from the resource's identity. The uid
    /// part keeps it unique across namespaces and across a deleted and re-created resource of the same name.
    pub fn control_alias(&self) -> String {
        if let Some(alias) = &self.spec.alias {
            return alias.clone();
        }
        let uid = self.uid().unwrap_or_default();
        let short_uid: String = uid.chars().filter(|c| *c != '-').take(8).collect();
        let readable = format!("{}.{}.{short_uid}", self.namespace().unwrap_or_default(), self.name_any());
        if readable.len() <= MAX_ALIAS_LEN { readable } else { format!("k8s-{uid}") }
    }

    /// The control node's id of the recording, once known.
    pub fn recording_id(&self) -> Option<&str> {
        self.status.as_ref().and_then(|s| s.id.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recording(name: &str, alias: Option<&str>) -> Recording {
        let mut r = Recording::new(
            name,
            RecordingSpec {
                source: "cam".into(),
                alias: alias.map(str::to_owned),
                description: None,
                start_time: None,
                stopped: false,
                purge_on_delete: false,
            },
        );
        r.metadata.namespace = Some("studio".into());
        r.metadata.uid = Some("0b5c2f3e-1111-2222-3333-444455556666".into());
        r
    }

    #[test]
    fn default_alias_is_unique_per_resource_and_valid_for_control() {
        assert_eq!(recording("morning", None).control_alias(), "studio.morning.0b5c2f3e");
        assert_eq!(recording("x", Some("show-1")).control_alias(), "show-1");
        let long = recording(&"n".repeat(250), None).control_alias();
        assert_eq!(long, "k8s-0b5c2f3e-1111-2222-3333-444455556666");
    }
}
