//! `Recording`: a snippet of one VideoSource's stream saved to the object store.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::lifecycle::DeletionPolicy;

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
    printcolumn(name = "Recorded", type_ = "integer", json_path = ".status.coverage.recordedSeconds"),
    printcolumn(name = "Hold", type_ = "boolean", json_path = ".status.hold"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Start", type_ = "date", json_path = ".status.startTs"),
    printcolumn(name = "End", type_ = "date", json_path = ".status.endTs", priority = 1),
    printcolumn(name = "Gaps", type_ = "integer", json_path = ".status.coverage.gaps", priority = 1),
    printcolumn(
        name = "Verified",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Verified\")].status",
        priority = 1
    ),
    printcolumn(name = "Stored Bytes", type_ = "integer", json_path = ".status.storedBytes", priority = 1),
    printcolumn(name = "Expires", type_ = "date", json_path = ".status.expiresAt", priority = 1),
    printcolumn(name = "ID", type_ = "string", json_path = ".status.id", priority = 1),
    printcolumn(name = "Playlist URL", type_ = "string", json_path = ".status.playlistUrl", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.alias) == has(oldSelf.alias)", "message": "alias cannot be added or removed once the recording exists"},
    {"rule": "has(self.startTime) == has(oldSelf.startTime)", "message": "startTime cannot be added or removed once the recording exists"},
    {"rule": "!has(self.purgeOnDelete) || !self.purgeOnDelete || !has(self.deletionPolicy) || self.deletionPolicy == 'Delete'", "message": "purgeOnDelete: true contradicts deletionPolicy: Retain; remove purgeOnDelete (deprecated)"}
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
    /// What deleting this resource does in the control node: the recording is always stopped; `Retain` (the
    /// default when unset) keeps it there, listable and playable; `Delete` deletes it, and its segments no other
    /// recording shares from the object store (refused while it is on hold). A deletion that cannot be carried
    /// out waits (condition `Deleting`); the annotation `livemix.io/skip-cleanup: "true"` releases the resource
    /// without the control node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
    /// Deprecated: use `deletionPolicy: Delete`. `true` acts as `deletionPolicy: Delete` when `deletionPolicy` is
    /// unset (and may not be combined with `deletionPolicy: Retain`).
    #[serde(default)]
    pub purge_on_delete: bool,
    /// Legal hold: while `true`, the control node deletes nothing of the recording, neither by retention nor
    /// on request (a `Delete` policy then waits until the hold is lifted).
    #[serde(default)]
    pub hold: bool,
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
    /// Whether the control node holds the recording (legal hold).
    #[serde(default)]
    pub hold: bool,
    /// Bytes the recording's segments take in the object store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_bytes: Option<i64>,
    /// When retention will have deleted the last of the recording, if nothing changes; unset when nothing will
    /// (active, on hold, or no age limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// What the recording holds, and where it breaks: read from the control node while the recording is active
    /// (and once more after it stops).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<RecordingCoverage>,
    /// HLS URL of the recording for players.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playlist_url: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// The recording's coverage as the control node computes it (`GET /v1/recording/{id}/coverage`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordingCoverage {
    /// Seconds of video recorded (the segments' lengths added up, rounded to the second).
    pub recorded_seconds: i64,
    /// Segments recorded.
    pub segments: i64,
    /// Breaks between recorded segments: stretches whose segments were not recorded, and encoder restarts. The
    /// time before the first and after the last segment (`no_recording`) is not counted.
    pub gaps: i64,
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

    /// What deleting the resource does in the control node: `deletionPolicy`, else `Delete` for the deprecated
    /// `purgeOnDelete: true`, else `Retain`.
    pub fn deletion_policy(&self) -> DeletionPolicy {
        match self.spec.deletion_policy {
            Some(policy) => policy,
            None if self.spec.purge_on_delete => DeletionPolicy::Delete,
            None => DeletionPolicy::Retain,
        }
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
                deletion_policy: None,
                purge_on_delete: false,
                hold: false,
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

    #[test]
    fn purge_on_delete_is_an_alias_of_delete() {
        let mut r = recording("x", None);
        assert_eq!(r.deletion_policy(), DeletionPolicy::Retain);
        r.spec.purge_on_delete = true;
        assert_eq!(r.deletion_policy(), DeletionPolicy::Delete);
        r.spec.deletion_policy = Some(DeletionPolicy::Delete);
        assert_eq!(r.deletion_policy(), DeletionPolicy::Delete);
        r.spec.purge_on_delete = false;
        r.spec.deletion_policy = Some(DeletionPolicy::Retain);
        assert_eq!(r.deletion_policy(), DeletionPolicy::Retain);
    }
}
