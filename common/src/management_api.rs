//! Wire types of the control node's management API (`:8080`), shared by the control node (server), the operator
//! (client) and the tests, so that the two sides cannot drift apart. Replies carry the object under a named key
//! beside `success` and `request_id` (see [`crate::api`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Recording, RecordingMode, Retention, Segment, Source};

/// `POST /v1/source` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewSource {
    /// 1 to 253 letters, digits, `-`, `_` or `.`; not only dots, never `..`.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^(?!\.+$)(?!.*\.\.)[A-Za-z0-9._-]{1,253}$"))]
    pub name: String,
    /// Seconds.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3600))]
    #[serde(deserialize_with = "crate::model::whole::i32")]
    pub segment_len: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 4096))]
    pub description: Option<String>,
    /// Who manages the source (see [`Source::owner`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 4096))]
    pub owner: Option<String>,
    /// The source's own retention policy; the control node's default applies where it is silent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// The edge (its id in the control node's edge credentials) that serves this source. Only that edge's
    /// credentials may then report, look up or forward the source; unset, no per-edge credential may.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9._-]{1,128}$"))]
    pub edge: Option<String>,
    /// What the source records; on demand when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<RecordingMode>,
}

/// `PUT /v1/source/{id}/recording-mode` body.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordingModeUpdate {
    pub recording: RecordingMode,
}

/// `PUT /v1/source/{id}/edge` body: binds (or moves) the source to this edge.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EdgeBinding {
    /// 1 to 128 letters, digits, `-`, `_` or `.`.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9._-]{1,128}$"))]
    pub edge_id: String,
}

/// `GET`/`PUT`/`DELETE /v1/source/{id}/edge` reply: the edge the source is bound to, if any.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SourceEdgeReply {
    pub edge_id: Option<String>,
}

/// What `DELETE /v1/source/{id}?recordings=` does with the source's recordings. Without the parameter, deleting a
/// source that has recordings is refused (409), so no routine delete destroys evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RecordingsPolicy {
    /// Keep them: listable and playable after the source is gone.
    Retain,
    /// Delete them and their objects (refused while any is on hold).
    Delete,
}

impl RecordingsPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retain => "retain",
            Self::Delete => "delete",
        }
    }
}

/// `PUT /v1/recording/{id}/hold` body.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HoldUpdate {
    pub hold: bool,
}

/// What a delete did: `DELETE /v1/source/{id}` and `DELETE /v1/recording/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Deletion {
    /// Recordings kept (a source deleted with `recordings=retain`).
    pub recordings_retained: u64,
    /// Recordings deleted.
    pub recordings_deleted: u64,
    /// Objects no recording needs any more, now queued for deletion from the object store (the deletion worker
    /// removes them; `GET /v1/storage` shows what is pending).
    pub objects_queued: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeletionReply {
    pub deleted: Deletion,
}

/// Bytes and segments kept in the object store for a source or a recording.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Usage {
    pub bytes: i64,
    pub segments: i64,
    /// When retention deletes the last of it, if nothing changes (a recording: finished, not held, under an age
    /// limit); `null` when nothing will.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// `GET /v1/source/{id}/storage`, `GET /v1/recording/{id}/storage`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageReply {
    pub storage: Usage,
}

/// `GET /v1/storage`: the whole store as the control node accounts for it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StorageSummary {
    /// Recorded segments indexed, all sources (deleted ones with retained recordings included).
    pub bytes: i64,
    pub segments: i64,
    /// Objects whose deletion is recorded and not yet carried out.
    pub pending_deletions: i64,
    /// The control node's default retention, applied where a source sets no limit of its own.
    pub default_retention: Retention,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StorageReply {
    pub storage: StorageSummary,
}

/// `POST /v1/storage/gc` result: objects under the prefix that no segment refers to, and segments whose object
/// is missing (reported, never dropped).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GcReport {
    pub dry_run: bool,
    /// Objects listed under the prefix.
    pub listed: u64,
    /// Orphans older than the grace period (the first 1,000 keys; `orphan_count` has them all).
    pub orphans: Vec<String>,
    pub orphan_count: u64,
    pub orphan_bytes: u64,
    /// Orphans queued for deletion (0 in a dry run).
    pub queued: u64,
    /// Indexed segments whose object is missing (the first 1,000 keys).
    pub missing: Vec<String>,
    pub missing_count: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GcReply {
    pub gc: GcReport,
}

/// `POST /v1/storage/retention` result: one retention pass, as the timer runs it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetentionReport {
    pub segments_deleted: u64,
    pub bytes_deleted: u64,
    /// Finished recordings left with no segment, deleted with their last one.
    pub recordings_deleted: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetentionReply {
    pub retention: RetentionReport,
}

/// `POST /v1/source/{id}/recording` body; every field is optional (an empty body means "now, no alias").
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewRecording {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^(?!\.+$)(?!.*\.\.)[A-Za-z0-9._-]{1,253}$"))]
    pub alias: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 4096))]
    pub description: Option<String>,
    /// Seconds since the Unix epoch, no later than tomorrow; absent means now.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::model::whole::option")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SourceReply {
    pub source: Source,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SourcesReply {
    pub sources: Vec<Source>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordingReply {
    pub recording: Recording,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordingsReply {
    pub recordings: Vec<Recording>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SegmentsReply {
    pub segments: Vec<Segment>,
}

/// `GET /v1/source/{id}/coverage` and `GET /v1/recording/{id}/coverage` reply: what was recorded in a time range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CoverageReply {
    pub coverage: Coverage,
}

/// The recorded spans of a time range and the gaps between them, in time order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Coverage {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Seconds of recorded video in the range.
    pub recorded_secs: f64,
    pub segments: u64,
    pub spans: Vec<Span>,
    pub gaps: Vec<Gap>,
}

/// Segments that play one after the other without a break.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Span {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub segments: u64,
    /// The encoder run of its segments (absent for segments recorded before runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
}

/// A break in what was recorded: a stretch of time without segments, or a restart of the encoder (which may
/// leave no time missing at all).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Gap {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub secs: f64,
    pub cause: GapCause,
}

/// Why a gap is there, as far as the index can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum GapCause {
    /// A new encoder run starts after it: the encoder (or its edge) restarted.
    EncoderRestart,
    /// The same encoder run goes on after it: its segments were not recorded (the edge was unreachable or its
    /// spool full, or no recording covered them).
    NotRecorded,
    /// Before the first or after the last recorded segment of the range.
    NoRecording,
}

/// `GET /v1/recording/{id}/manifest` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ManifestReply {
    pub manifest: Manifest,
}

/// Everything needed to check a recording's bytes without LiveMix: each segment's object key, size and SHA-256
/// (taken by the edge when it spooled the segment), and where it sits in the recording's `export.ts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Manifest {
    /// Names the signing scheme: [`Manifest::signed_text`] is what the signature covers.
    pub version: String,
    pub recording: String,
    pub source: uuid::Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_name: Option<String>,
    pub generated_at: DateTime<Utc>,
    pub total_bytes: i64,
    pub segments: Vec<ManifestEntry>,
    /// Lowercase hex HMAC-SHA256 of [`Manifest::signed_text`] under the playback signing key; absent when the
    /// control node has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// One segment of a [`Manifest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ManifestEntry {
    /// Its name in the recording's playlist.
    pub name: String,
    /// Its object key in the bucket.
    pub key: String,
    pub start_ts: DateTime<Utc>,
    pub end_ts: DateTime<Utc>,
    pub size: i64,
    /// Where its bytes start in the recording's `export.ts` (the segments one after the other).
    pub offset: i64,
    /// Absent for segments recorded before hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl Manifest {
    /// The first line of [`Manifest::signed_text`].
    pub const VERSION: &str = "livemix-manifest-v1";

    /// What the signature covers: the version, the recording id, then one `sha256sum`-style line per segment
    /// (`<hex>  <key>`, `-` for a segment without a hash), each line ending in `\n`. `sha256sum -c` reads the
    /// segment lines as they are, against a copy of the bucket.
    pub fn signed_text(&self) -> String {
        let mut text = format!("{}\n{}\n", self.version, self.recording);
        for entry in &self.segments {
            text.push_str(entry.sha256.as_deref().unwrap_or("-"));
            text.push_str("  ");
            text.push_str(&entry.key);
            text.push('\n');
        }
        text
    }
}

/// `POST /v1/recording/{id}/verify` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyReply {
    pub verification: Verification,
}

/// What re-reading every object of a recording found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Verification {
    pub recording: String,
    pub at: DateTime<Utc>,
    /// Segments whose object was read back.
    pub checked: u64,
    /// Matching their hash (or, without one, their size).
    pub ok: u64,
    /// Segments without a hash (recorded before hashes): only their size was checked.
    pub unhashed: u64,
    pub mismatched: Vec<VerifyProblem>,
    pub missing: Vec<VerifyProblem>,
}

/// A segment whose object is gone or no longer holds the recorded bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyProblem {
    pub name: String,
    pub key: String,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// What the store holds now (absent when missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found_size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found_sha256: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_fields_stay_absent_on_the_wire() {
        let body = serde_json::to_value(NewRecording::default()).unwrap();
        assert_eq!(body, serde_json::json!({}));
        let body = serde_json::to_value(NewSource {
            name: "cam".into(),
            segment_len: 4,
            description: None,
            owner: None,
            retention: None,
            edge: None,
            recording: None,
        })
        .unwrap();
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
