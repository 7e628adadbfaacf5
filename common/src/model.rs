//! The objects LiveMix exchanges over its APIs and messages.
//!
//! Field names follow the original product's JSON (`segment_length`, `streaming: 1 | -1`, `start_ts`...), so
//! scripts written against it keep working.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A camera or encoder feed, registered in the control node and served by one edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Source {
    pub id: Uuid,
    pub name: String,
    /// Nominal segment length in seconds, as the encoder is configured.
    pub segment_length: i32,
    pub description: String,
    /// The state the control node wants: `1` forward segments, `-1` keep them on the edge.
    #[serde(with = "flag")]
    #[cfg_attr(feature = "openapi", schema(schema_with = flag::schema))]
    pub streaming: bool,
    /// The edge serving this source (its request topic); `null` until an edge has reported.
    pub rr_target: Option<String>,
    /// The edge's own clock at its last report, for diagnosing clock skew.
    pub local_time: Option<DateTime<Utc>>,
    /// When the control node last heard from the edge, by the control node's own clock.
    pub last_seen: Option<DateTime<Utc>>,
    /// Whether the edge reported within the configured staleness delay.
    pub reachable: bool,
    /// Who registered the source, when a manager said so (the operator: `k8s/<namespace>/<name>/<uid>`), so
    /// that manager recognises its own source and never adopts another's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The edge bound to this source (see [`crate::management_api::NewSource::edge`]); `null` when none is.
    #[serde(default)]
    pub edge: Option<String>,
    /// How long this source's recorded segments are kept; unset limits fall back to the control node's default.
    #[serde(default)]
    #[cfg_attr(feature = "sqlx", sqlx(flatten))]
    pub retention: Retention,
    /// Whether every segment is recorded (`continuous`) or only while a recording is active (`on_demand`).
    #[serde(default)]
    #[cfg_attr(feature = "sqlx", sqlx(rename = "recording_mode", try_from = "String"))]
    pub recording: RecordingMode,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A retention policy: recorded segments older than `max_age_secs` (by their end time) are deleted, and the
/// oldest segments go first once a source stores more than `max_bytes`. Segments of a held recording are never
/// deleted automatically. `None` means "no limit of this kind of its own" (a source then follows the control
/// node's default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Retention {
    /// Seconds, at least 1 and at most 100 years.
    #[serde(default)]
    #[cfg_attr(feature = "sqlx", sqlx(rename = "retention_max_age_secs"))]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3_162_240_000.0))]
    #[serde(deserialize_with = "whole::option")]
    pub max_age_secs: Option<i64>,
    /// Bytes, at least 1.
    #[serde(default)]
    #[cfg_attr(feature = "sqlx", sqlx(rename = "retention_max_bytes"))]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    #[serde(deserialize_with = "whole::option")]
    pub max_bytes: Option<i64>,
}

impl Retention {
    /// Longest retention accepted: 100 years.
    pub const MAX_AGE_SECS: i64 = 100 * 366 * 24 * 3600;

    /// This policy's own limits, each falling back to `default`'s.
    pub fn or(self, default: Retention) -> Retention {
        Retention {
            max_age_secs: self.max_age_secs.or(default.max_age_secs),
            max_bytes: self.max_bytes.or(default.max_bytes),
        }
    }

    /// Refuses zero, negative and absurd limits with a message for the client.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(age) = self.max_age_secs
            && !(1..=Self::MAX_AGE_SECS).contains(&age)
        {
            return Err(format!("max_age_secs must be between 1 and {} (100 years), not {age}", Self::MAX_AGE_SECS));
        }
        if let Some(bytes) = self.max_bytes
            && bytes < 1
        {
            return Err(format!("max_bytes must be at least 1, not {bytes}"));
        }
        Ok(())
    }
}

/// What a source records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RecordingMode {
    /// Only what a recording covers (`POST /v1/source/{id}/recording`).
    #[default]
    #[serde(alias = "onDemand")]
    OnDemand,
    /// Every segment, through one open-ended recording the control node keeps active (its `continuous` flag);
    /// retention decides how long the segments stay.
    Continuous,
}

impl RecordingMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OnDemand => "on_demand",
            Self::Continuous => "continuous",
        }
    }
}

impl std::fmt::Display for RecordingMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for RecordingMode {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        match text.as_str() {
            "on_demand" | "onDemand" => Ok(Self::OnDemand),
            "continuous" => Ok(Self::Continuous),
            other => Err(format!("unknown recording mode {other:?} (continuous or on_demand)")),
        }
    }
}

/// A snippet of one source's stream being (or having been) saved to the object store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Recording {
    /// A ULID, so recordings sort by creation time.
    pub id: String,
    pub alias: Option<String>,
    pub description: Option<String>,
    pub source: Uuid,
    pub start_ts: DateTime<Utc>,
    pub end_ts: Option<DateTime<Utc>>,
    #[serde(with = "flag")]
    #[cfg_attr(feature = "openapi", schema(schema_with = flag::schema))]
    pub active: bool,
    /// Legal hold: no automatic deletion (retention, storage cap) touches it, and deleting it is refused until the
    /// hold is lifted.
    #[serde(default)]
    pub hold: bool,
    /// The source's name when the recording was made, so a recording kept after its source was deleted still
    /// says whose it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_name: Option<String>,
    /// The recording the control node keeps for a source whose [`RecordingMode`] is continuous: stopped only by
    /// switching the source back to on demand.
    #[serde(default)]
    pub continuous: bool,
    /// The last `POST /v1/recording/{id}/verify`: when it ran and what it found (absent: never verified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "sqlx", sqlx(json(nullable)))]
    pub verification: Option<VerificationSummary>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The outcome of a recording's last verification, kept with the recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerificationSummary {
    pub at: DateTime<Utc>,
    /// Segments whose object was read back.
    pub segments: i64,
    /// Objects whose bytes no longer match the hash (or size) taken when they were recorded.
    pub mismatched: i64,
    /// Objects no longer in the store.
    pub missing: i64,
}

impl VerificationSummary {
    pub fn passed(&self) -> bool {
        self.mismatched == 0 && self.missing == 0
    }
}

/// One MPEG-TS segment of a source, as stored for a recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Segment {
    pub id: i64,
    pub name: String,
    pub source: Uuid,
    /// The encoder run (a ULID; see [`crate::segment_id`]); absent for segments recorded before segment ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// Sequence number within the run.
    pub seq: i64,
    /// The segment does not continue the one before it (a new encoder run, or `#EXT-X-DISCONTINUITY`).
    #[serde(default)]
    pub discontinuity: bool,
    pub start_ts: DateTime<Utc>,
    pub end_ts: DateTime<Utc>,
    pub length_ms: i64,
    pub size: i64,
    /// The object-store key holding the bytes.
    pub uri: String,
    /// Lowercase hex SHA-256 of the bytes, taken by the edge when it spooled them; absent for segments recorded
    /// before hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// What an edge knows about a segment it uploaded: a [`Segment`] before the control node gave it an id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentInfo {
    pub name: String,
    pub source: Uuid,
    /// The encoder run the segment belongs to (see [`crate::segment_id`]); absent from edges that predate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<ulid::Ulid>,
    /// Sequence number within the run.
    pub seq: i64,
    /// The segment does not continue the one before it (a new encoder run, or `#EXT-X-DISCONTINUITY`).
    #[serde(default)]
    pub discontinuity: bool,
    pub start_ts: DateTime<Utc>,
    pub end_ts: DateTime<Utc>,
    pub length_ms: i64,
    pub size: i64,
    pub uri: String,
    /// Lowercase hex SHA-256 of the bytes (see [`Segment::sha256`]); absent from edges that predate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// Serde helper for the seed's `1 | -1` booleans.
pub mod flag {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(value: &bool, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i8(if *value { 1 } else { -1 })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        match i8::deserialize(d)? {
            1 => Ok(true),
            -1 => Ok(false),
            other => Err(D::Error::custom(format!("expected 1 or -1, got {other}"))),
        }
    }

    /// The schema of such a field: the integer `1` (true) or `-1` (false).
    #[cfg(feature = "openapi")]
    pub fn schema() -> utoipa::openapi::Object {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Integer)
            .enum_values(Some([1, -1]))
            .description(Some("`1` (true) or `-1` (false), as the original product sent it"))
            .build()
    }
}

/// A segment or playlist name is a single path component of safe characters; anything else is refused.
///
/// Names end up in cache keys, object-store keys and `file://` paths, so `/`, `..` and control characters must
/// never get through.
pub fn validate_segment_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err("segment name must be 1 to 255 characters".into());
    }
    if name == "." || name == ".." || name.contains("..") {
        return Err(format!("segment name {name:?} must not contain '..'"));
    }
    if let Some(c) =
        name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '+' | '=')))
    {
        return Err(format!(
            "segment name {name:?} contains the character {c:?}; allowed: letters, digits, - _ . ~ + ="
        ));
    }
    Ok(())
}

/// Source names appear in URLs, headers, topic names and Kubernetes objects: 1 to 253 letters, digits, `-`, `_`
/// or `.`, never `..`.
pub fn validate_source_name(name: &str) -> Result<(), String> {
    const MAX: usize = 253;
    let ok = !name.is_empty()
        && name.len() <= MAX
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.contains("..")
        // `.` is a path's "this directory": as a path segment it vanishes, as a key prefix it is ambiguous.
        && !name.bytes().all(|b| b == b'.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid source name {name:?}: use 1 to {MAX} letters, digits, '-', '_' or '.' (not only dots, no '..')"
        ))
    }
}

/// An edge id names an edge in the control node's credentials, in source bindings and as its Pub/Sub topic:
/// 1 to 128 letters, digits, `-`, `_` or `.`.
pub fn validate_edge_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(format!("invalid edge id {id:?}: use 1 to 128 letters, digits, '-', '_' or '.'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_may_be_written_as_whole_floats() {
        let retention: Retention = serde_json::from_str(r#"{"max_age_secs": 86400.0, "max_bytes": null}"#).unwrap();
        assert_eq!(retention, Retention { max_age_secs: Some(86400), max_bytes: None });
        let retention: Retention = serde_json::from_str(r#"{"max_bytes": 7}"#).unwrap();
        assert_eq!(retention, Retention { max_age_secs: None, max_bytes: Some(7) });
        for bad in [r#"{"max_bytes": 1.5}"#, r#"{"max_bytes": 1e300}"#, r#"{"max_bytes": "1"}"#] {
            assert!(serde_json::from_str::<Retention>(bad).is_err(), "{bad}");
        }
        let new: crate::management_api::NewSource =
            serde_json::from_str(r#"{"name": "cam-1", "segment_len": 2.0}"#).unwrap();
        assert_eq!(new.segment_len, 2);
        assert!(
            serde_json::from_str::<crate::management_api::NewSource>(r#"{"name": "cam-1", "segment_len": 4294967296}"#)
                .is_err()
        );
    }

    #[test]
    fn segment_names_are_single_safe_components() {
        for ok in ["seg-1.ts", "test-video-1704596100.ts", "index0.ts", "a_b~c+d=e.ts"] {
            assert!(validate_segment_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "..", "../etc/passwd", "a/b.ts", "a\\b.ts", "x..ts", "a b.ts", "é.ts", "a\0.ts"] {
            assert!(validate_segment_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn source_names_are_url_safe() {
        assert!(validate_source_name("camera-0").is_ok());
        assert!(validate_source_name("test_video.1").is_ok());
        for bad in ["", "a/b", "..", "a b", "ü", &"x".repeat(300)] {
            assert!(validate_source_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_lone_dot_is_not_a_source_name() {
        for bad in [".", "..", "..."] {
            assert!(validate_source_name(bad).is_err(), "{bad}");
        }
        assert!(validate_source_name(".cam").is_ok());
        assert!(validate_source_name("cam.").is_ok());
    }

    #[test]
    fn flags_round_trip_as_one_and_minus_one() {
        #[derive(Serialize, Deserialize)]
        struct F {
            #[serde(with = "flag")]
            f: bool,
        }
        assert_eq!(serde_json::to_string(&F { f: true }).unwrap(), r#"{"f":1}"#);
        assert_eq!(serde_json::to_string(&F { f: false }).unwrap(), r#"{"f":-1}"#);
        assert!(serde_json::from_str::<F>(r#"{"f":0}"#).is_err());
    }
}

/// Integers as JSON Schema counts them: `2` and `2.0` are the same integer (the documents declare these fields
/// `integer`, and a client's JSON library may write a whole float), while `2.5` or one out of range is refused.
pub mod whole {
    use serde::de::{Deserializer, Error, Visitor};
    use std::fmt;

    struct Whole;

    impl Visitor<'_> for Whole {
        type Value = i64;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an integer")
        }

        fn visit_i64<E: Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }

        fn visit_u64<E: Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom(format!("integer {v} is too large")))
        }

        fn visit_f64<E: Error>(self, v: f64) -> Result<i64, E> {
            // 2^63 is exactly representable; anything at or past it does not fit an i64.
            if v.fract() == 0.0 && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&v) {
                Ok(v as i64)
            } else {
                Err(E::custom(format!("expected an integer, not {v}")))
            }
        }
    }

    /// An `i64`, also from a whole float.
    pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        d.deserialize_any(Whole)
    }

    /// An `i32`, also from a whole float.
    pub fn i32<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
        let v = i64(d)?;
        i32::try_from(v).map_err(|_| D::Error::custom(format!("integer {v} is out of range")))
    }

    /// An optional `i64` (`null` or absent is `None`), also from a whole float.
    pub fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        struct Opt;
        impl<'de> Visitor<'de> for Opt {
            type Value = Option<i64>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer or null")
            }

            fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                i64(d).map(Some)
            }
        }
        d.deserialize_option(Opt)
    }
}
