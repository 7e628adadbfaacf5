//! One segment record from the edge to the index: what the edge decided about a segment it accepted (its
//! [`SegmentId`] and the facts the live and recorded indexes keep), with the one encoding of it on each wire.
//!
//! - `POST /v1/new-segment` (a live segment): [`SegmentRecord::to_headers`] on the edge, [`NewSegment::from_headers`]
//!   on the control node, which also holds the bounds every forwarded segment must meet.
//! - `new_video_recording_segment` (a recorded one, on the bus): [`SegmentRecord::to_info`] on the edge and
//!   [`SegmentRecord::from_info`]; [`SegmentInfo`]'s JSON stays as it was, since edges and control nodes of
//!   different versions exchange it.
//!
//! The edge decides everything here once, when it accepts the segment, discontinuities included (a new encoder
//! run, a playlist's mark, a time gap): the control node renders what it is told.

use std::ops::RangeInclusive;

use chrono::{DateTime, Datelike, TimeDelta, Utc};
use http::{HeaderMap, HeaderValue};
use ulid::Ulid;
use uuid::Uuid;

use crate::{
    ApiError, ApiResult,
    api::{parse_header, required_header},
    edge_api::headers as h,
    model::{SegmentInfo, validate_segment_name},
    segment_id::SegmentId,
};

/// Times edges send must fall in these years; anything else is a broken clock or hostile input, and would only
/// travel on into arithmetic, the database and playlists.
pub const SANE_YEARS: RangeInclusive<i32> = 2000..=2200;

/// The longest segment an edge may forward, in milliseconds (ten minutes; HLS segments are seconds long).
pub const MAX_SEGMENT_MSEC: i64 = 600_000;

/// A segment as the edge accepted it: who it is and the facts every index of it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRecord {
    /// Decided once, by the edge (see [`crate::segment_id`]).
    pub id: SegmentId,
    /// The name the encoder gave it (reused when the encoder restarts); the live playlist serves it by this name.
    pub name: String,
    /// By the edge's clock.
    pub start_ts: DateTime<Utc>,
    /// At least 1.
    pub length_ms: i64,
    /// The segment does not continue the one before it: a new encoder run, a playlist's
    /// `#EXT-X-DISCONTINUITY`, or a time gap, all decided by the edge.
    pub discontinuity: bool,
}

/// What the headers of a `POST /v1/new-segment` say, every bound checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewSegment {
    /// From an edge that sends `Segment-Run`: the record as the edge decided it.
    Record(SegmentRecord),
    /// LEGACY, delete once no edge predates `Segment-Run` (a rolling upgrade): a forward without a run. The
    /// control node identifies its retries by name and judges time gaps itself, as it did before.
    Legacy(LegacySegment),
}

/// LEGACY (see [`NewSegment::Legacy`]): a forwarded segment without a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacySegment {
    pub source: Uuid,
    pub seq: u64,
    pub name: String,
    pub start_ts: DateTime<Utc>,
    pub length_ms: i64,
    pub discontinuity: bool,
}

impl SegmentRecord {
    /// When the segment ends; a time that cannot be computed (never, for a checked length) is its start.
    pub fn end_ts(&self) -> DateTime<Utc> {
        TimeDelta::try_milliseconds(self.length_ms)
            .and_then(|length| self.start_ts.checked_add_signed(length))
            .unwrap_or(self.start_ts)
    }

    /// The headers of `POST /v1/new-segment` for this segment. Fails only for a name that is no header value
    /// (which the control node would refuse anyway).
    pub fn to_headers(&self) -> Result<HeaderMap, String> {
        let value = |raw: String| HeaderValue::try_from(raw).map_err(|err| err.to_string());
        let name = HeaderValue::try_from(self.name.as_str())
            .map_err(|_| format!("segment name {:?} cannot be sent in a header", self.name))?;
        let mut headers = HeaderMap::new();
        headers.insert(h::SOURCE_ID, value(self.id.source.to_string())?);
        headers.insert(h::SEGMENT_RUN, value(self.id.run.to_string())?);
        headers.insert(h::SEGMENT_SEQ, value(self.id.seq.to_string())?);
        headers.insert(h::SEGMENT_NAME, name);
        headers.insert(h::SEGMENT_START_TS, value(epoch_seconds(self.start_ts))?);
        headers.insert(h::SEGMENT_LENGTH_MSEC, value(self.length_ms.to_string())?);
        headers.insert(h::SEGMENT_DISCONTINUITY, value(self.discontinuity.to_string())?);
        Ok(headers)
    }

    /// The recorded-segment report for this segment, uploaded as `size` bytes at `uri`; its hash is added by the
    /// edge's spool, which reads the bytes once anyway.
    pub fn to_info(&self, size: u64, uri: String) -> SegmentInfo {
        SegmentInfo {
            name: self.name.clone(),
            source: self.id.source,
            run: Some(self.id.run),
            seq: i64::try_from(self.id.seq).unwrap_or(i64::MAX),
            discontinuity: self.discontinuity,
            start_ts: self.start_ts,
            end_ts: self.end_ts(),
            length_ms: self.length_ms,
            size: i64::try_from(size).unwrap_or(i64::MAX),
            uri,
            sha256: None,
        }
    }

    /// The record a recorded-segment report carries; `None` for a report without a run (an edge that predates
    /// segment ids) or with a negative sequence number.
    pub fn from_info(info: &SegmentInfo) -> Option<Self> {
        Some(Self {
            id: SegmentId { source: info.source, run: info.run?, seq: u64::try_from(info.seq).ok()? },
            name: info.name.clone(),
            start_ts: info.start_ts,
            length_ms: info.length_ms,
            discontinuity: info.discontinuity,
        })
    }
}

impl NewSegment {
    /// Decodes and checks the headers of `POST /v1/new-segment`; 400 with a message naming the header otherwise.
    pub fn from_headers(headers: &HeaderMap) -> ApiResult<Self> {
        let source: Uuid = parse_header(headers, h::SOURCE_ID, "a UUID")?;
        let name = required_header(headers, h::SEGMENT_NAME)?.to_owned();
        validate_segment_name(&name).map_err(ApiError::bad_request)?;
        let seq = parse_seq(headers)?;
        let start_ts = parse_start(headers)?;
        let length_ms = parse_length(headers)?;
        let discontinuity = parse_discontinuity(headers)?;
        Ok(match parse_run(headers)? {
            Some(run) => Self::Record(SegmentRecord {
                id: SegmentId { source, run, seq },
                name,
                start_ts,
                length_ms,
                discontinuity,
            }),
            None => Self::Legacy(LegacySegment { source, seq, name, start_ts, length_ms, discontinuity }),
        })
    }

    pub fn source(&self) -> Uuid {
        match self {
            Self::Record(record) => record.id.source,
            Self::Legacy(legacy) => legacy.source,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Self::Record(record) => &record.name,
            Self::Legacy(legacy) => &legacy.name,
        }
    }

    pub fn length_ms(&self) -> i64 {
        match self {
            Self::Record(record) => record.length_ms,
            Self::Legacy(legacy) => legacy.length_ms,
        }
    }

    pub fn start_ts(&self) -> DateTime<Utc> {
        match self {
            Self::Record(record) => record.start_ts,
            Self::Legacy(legacy) => legacy.start_ts,
        }
    }

    /// The edge's flag (for a legacy forward, only what that edge saw: the control node adds time gaps).
    pub fn discontinuity(&self) -> bool {
        match self {
            Self::Record(record) => record.discontinuity,
            Self::Legacy(legacy) => legacy.discontinuity,
        }
    }
}

/// `1700000000.123`: whole milliseconds, without going through a float.
fn epoch_seconds(ts: DateTime<Utc>) -> String {
    let ms = ts.timestamp_millis();
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// Whether a time falls within [`SANE_YEARS`].
pub fn sane_time(ts: DateTime<Utc>) -> bool {
    SANE_YEARS.contains(&ts.year())
}

/// 400: `field` holds `raw`, which is not a time within [`SANE_YEARS`].
pub fn insane_time(field: &str, raw: &str) -> ApiError {
    ApiError::bad_request(format!(
        "{field}: {raw:?} is not a time in the years {} to {}",
        SANE_YEARS.start(),
        SANE_YEARS.end()
    ))
}

/// `Segment-Run` (optional: edges of the previous version do not send it): a ULID.
fn parse_run(headers: &HeaderMap) -> ApiResult<Option<Ulid>> {
    if headers.get(h::SEGMENT_RUN).is_none() {
        return Ok(None);
    }
    parse_header(headers, h::SEGMENT_RUN, "a ULID").map(Some)
}

/// `Segment-Start-TS` in seconds since the epoch (fractions allowed) or RFC 3339, within [`SANE_YEARS`].
fn parse_start(headers: &HeaderMap) -> ApiResult<DateTime<Utc>> {
    let raw = required_header(headers, h::SEGMENT_START_TS)?;
    let field = format!("header {}", h::SEGMENT_START_TS);
    let ts = if let Ok(secs) = raw.parse::<f64>() {
        // Range-checked as a float first, so the conversion to milliseconds cannot overflow (NaN and infinities
        // fail the check too).
        let (earliest, latest) = (year_start(*SANE_YEARS.start()), year_start(*SANE_YEARS.end() + 1));
        if !(earliest..latest).contains(&secs) {
            return Err(insane_time(&field, raw));
        }
        DateTime::from_timestamp_millis((secs * 1000.0).round() as i64)
    } else {
        DateTime::parse_from_rfc3339(raw).ok().map(|ts| ts.with_timezone(&Utc))
    };
    let ts = ts.ok_or_else(|| {
        ApiError::bad_request(format!("{field}: {raw:?} is not seconds since the epoch or an RFC 3339 time"))
    })?;
    if !sane_time(ts) {
        return Err(insane_time(&field, raw));
    }
    Ok(ts)
}

/// Seconds since the epoch at the start of `year`.
fn year_start(year: i32) -> f64 {
    chrono::NaiveDate::from_ymd_opt(year, 1, 1)
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map_or(0.0, |t| t.and_utc().timestamp() as f64)
}

/// `Segment-Seq`: a non-negative integer that fits the database's BIGINT.
fn parse_seq(headers: &HeaderMap) -> ApiResult<u64> {
    let seq: u64 = parse_header(headers, h::SEGMENT_SEQ, "a non-negative integer")?;
    if i64::try_from(seq).is_err() {
        return Err(ApiError::bad_request(format!("header {}: {seq} is larger than {}", h::SEGMENT_SEQ, i64::MAX)));
    }
    Ok(seq)
}

/// `Segment-Length-MSec`: 1 to [`MAX_SEGMENT_MSEC`].
fn parse_length(headers: &HeaderMap) -> ApiResult<i64> {
    let length_ms: i64 = parse_header(headers, h::SEGMENT_LENGTH_MSEC, "an integer number of milliseconds")?;
    if !(1..=MAX_SEGMENT_MSEC).contains(&length_ms) {
        return Err(ApiError::bad_request(format!(
            "header {} must be between 1 and {MAX_SEGMENT_MSEC}, not {length_ms}",
            h::SEGMENT_LENGTH_MSEC
        )));
    }
    Ok(length_ms)
}

/// `Segment-Discontinuity` (optional): `true`/`1` or `false`/`0`.
fn parse_discontinuity(headers: &HeaderMap) -> ApiResult<bool> {
    match headers.get(h::SEGMENT_DISCONTINUITY).map(|v| v.to_str().unwrap_or("")) {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(other) => {
            Err(ApiError::bad_request(format!("header {}: {other:?} is not true/false", h::SEGMENT_DISCONTINUITY)))
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn record(
        source: u128,
        run: (u64, u128),
        seq: u64,
        name: &str,
        ms: i64,
        length_ms: i64,
        flag: bool,
    ) -> SegmentRecord {
        SegmentRecord {
            id: SegmentId { source: Uuid::from_u128(source), run: Ulid::from_parts(run.0, run.1), seq },
            name: name.to_owned(),
            start_ts: DateTime::from_timestamp_millis(ms).unwrap(),
            length_ms,
            discontinuity: flag,
        }
    }

    fn message(err: ApiError) -> String {
        format!("{err}")
    }

    fn sample() -> SegmentRecord {
        record(7, (1_700_000_000_000, 9), 42, "index42.ts", 1_700_000_000_123, 2000, true)
    }

    proptest! {
        #[test]
        fn headers_round_trip(
            source in any::<u128>(),
            run_ms in 0u64..(1 << 48),
            run_random in any::<u128>(),
            seq in 0..=i64::MAX as u64,
            name in "[A-Za-z0-9_~+=-][A-Za-z0-9_~+=.-]{0,40}",
            // 2000-01-01 to 2200-12-31, whole milliseconds (what the header carries).
            ms in 946_684_800_000i64..7_289_654_400_000,
            length_ms in 1..=MAX_SEGMENT_MSEC,
            flag in any::<bool>(),
        ) {
            prop_assume!(!name.contains(".."));
            let sent = record(source, (run_ms, run_random), seq, &name, ms, length_ms, flag);
            let decoded = NewSegment::from_headers(&sent.to_headers().unwrap()).unwrap();
            prop_assert_eq!(decoded, NewSegment::Record(sent));
        }
    }

    #[test]
    fn reports_round_trip_and_keep_their_json() {
        let sent = sample();
        let info = sent.to_info(1234, "recordings/x.ts".into());
        assert_eq!(info.end_ts, DateTime::from_timestamp_millis(1_700_000_002_123).unwrap());
        assert_eq!((info.seq, info.size, info.run), (42, 1234, Some(sent.id.run)));
        assert_eq!(SegmentRecord::from_info(&info), Some(sent.clone()));
        let json = serde_json::to_value(&info).unwrap();
        let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys.iter().copied().collect::<std::collections::BTreeSet<_>>(),
            ["name", "source", "run", "seq", "discontinuity", "start_ts", "end_ts", "length_ms", "size", "uri"].into()
        );
        assert_eq!(SegmentRecord::from_info(&SegmentInfo { run: None, ..info.clone() }), None, "a legacy report");
        assert_eq!(SegmentRecord::from_info(&SegmentInfo { seq: -1, ..info }), None);
    }

    #[test]
    fn a_forward_without_a_run_is_the_legacy_one() {
        let sent = sample();
        let mut headers = sent.to_headers().unwrap();
        assert_eq!(headers[h::SEGMENT_START_TS], "1700000000.123");
        headers.remove(h::SEGMENT_RUN);
        headers.remove(h::SEGMENT_DISCONTINUITY);
        let legacy = LegacySegment {
            source: sent.id.source,
            seq: 42,
            name: sent.name.clone(),
            start_ts: sent.start_ts,
            length_ms: 2000,
            discontinuity: false,
        };
        assert_eq!(NewSegment::from_headers(&headers).unwrap(), NewSegment::Legacy(legacy));
    }

    #[test]
    fn every_bound_is_checked_with_a_message_naming_the_header() {
        let with = |name: &str, value: &str| {
            let mut headers = sample().to_headers().unwrap();
            headers
                .insert(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
            NewSegment::from_headers(&headers).map_err(message)
        };
        let refused = |name: &str, value: &str, expected: &str| {
            let err = with(name, value).expect_err(value);
            assert!(err.contains(expected), "{name}: {value}: {err}");
        };
        refused(h::SEGMENT_START_TS, "1e300", "is not a time in the years 2000 to 2200");
        refused(h::SEGMENT_START_TS, "NaN", "is not a time in the years");
        refused(h::SEGMENT_START_TS, "1999-12-31T23:59:59Z", "is not a time in the years");
        refused(h::SEGMENT_START_TS, "yesterday", "is not seconds since the epoch or an RFC 3339 time");
        refused(h::SEGMENT_LENGTH_MSEC, "0", "must be between 1 and 600000, not 0");
        refused(h::SEGMENT_LENGTH_MSEC, "600001", "must be between 1 and 600000");
        refused(h::SEGMENT_SEQ, &u64::MAX.to_string(), "is larger than 9223372036854775807");
        refused(h::SEGMENT_SEQ, "-1", "is not a non-negative integer");
        refused(h::SEGMENT_RUN, "not-a-ulid", "header Segment-Run: \"not-a-ulid\" is not a ULID");
        refused(h::SEGMENT_DISCONTINUITY, "maybe", "is not true/false");
        refused(h::SEGMENT_NAME, "../x.ts", "must not contain '..'");
        refused(h::SOURCE_ID, "cam", "is not a UUID");
        assert!(with(h::SEGMENT_START_TS, "2024-01-01T00:00:00+02:00").is_ok());
        assert!(with(h::SEGMENT_DISCONTINUITY, "1").is_ok());
        let mut headers = sample().to_headers().unwrap();
        headers.remove(h::SEGMENT_SEQ);
        assert!(message(NewSegment::from_headers(&headers).unwrap_err()).contains("missing header Segment-Seq"));
    }

    #[test]
    fn a_name_that_is_no_header_value_is_not_sent() {
        let bad = SegmentRecord { name: "a\nb.ts".into(), ..sample() };
        assert!(bad.to_headers().is_err());
    }
}
