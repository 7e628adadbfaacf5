//! Any moment of a source, not only a pre-declared recording: the VOD playlist of a time range, what was recorded
//! in it (spans and gaps), and its segments, all from whatever recorded the source (its continuous recording or
//! any recording of it). A segment shared by several recordings is one row, so it plays once.

use std::sync::Arc;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use livemix_common::{
    management_api::{Coverage, Gap, GapCause, Span},
    model::{Recording, Segment},
    segment::SANE_YEARS,
};
use uuid::Uuid;

use super::{Error, Result};
use crate::{
    config::ArchiveSettings,
    db::Db,
    playlist,
    segments::{SegmentBytes, SegmentLoader},
};

/// A time range as a client gives it: `start` and `end`, each RFC 3339 or seconds since the Unix epoch.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct RangeQuery {
    pub start: Option<String>,
    pub end: Option<String>,
}

/// A checked time range: `start < end`, both in sane years, not longer than the maximum, not starting in the
/// future; an end in the future is cut to now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl TimeRange {
    /// Checks a client's range against the longest one allowed (`max_secs`).
    pub fn parse(query: &RangeQuery, max_secs: i64) -> Result<Self> {
        let start = parse_time("start", query.start.as_deref())?;
        let end = parse_time("end", query.end.as_deref())?;
        let now = Utc::now();
        if start >= end {
            return Err(Error::Invalid(format!("start ({start}) must be before end ({end})")));
        }
        if start > now {
            return Err(Error::Invalid(format!("start ({start}) is in the future; nothing is recorded there yet")));
        }
        let end = end.min(now);
        if end.signed_duration_since(start).num_seconds() > max_secs {
            return Err(Error::Invalid(format!(
                "the range from {start} to {end} is longer than the longest allowed, {max_secs} s \
                 (LIVEMIX_MAX_RANGE); ask for several shorter ranges"
            )));
        }
        Ok(Self { start, end })
    }

    /// The range a recording covers: from its start to its end, or to now while it is active.
    pub fn of_recording(recording: &Recording) -> Self {
        let end = recording.end_ts.unwrap_or_else(Utc::now).max(recording.start_ts);
        Self { start: recording.start_ts, end }
    }

    fn describe(&self) -> String {
        format!("between {} and {}", self.start.to_rfc3339(), self.end.to_rfc3339())
    }
}

/// `start=`/`end=`: RFC 3339 (`2026-12-08T10:02:00Z`) or seconds since the epoch (`1765188120`, `1765188120.5`).
fn parse_time(field: &str, text: Option<&str>) -> Result<DateTime<Utc>> {
    let text = text.map(str::trim).filter(|t| !t.is_empty()).ok_or_else(|| {
        Error::Invalid(format!("{field} is required: RFC 3339 (2026-12-08T10:02:00Z) or seconds since the epoch"))
    })?;
    // An unencoded `+01:00` in a query arrives as ` 01:00`: what else could the space mean.
    let rfc3339 = DateTime::parse_from_rfc3339(text).or_else(|err| match text.contains(' ') {
        true => DateTime::parse_from_rfc3339(&text.replace(' ', "+")),
        false => Err(err),
    });
    let time = if let Ok(time) = rfc3339 {
        Some(time.with_timezone(&Utc))
    } else {
        text.parse::<f64>()
            .ok()
            .filter(|secs| secs.is_finite() && secs.abs() < 1e12)
            .and_then(|secs| Utc.timestamp_micros((secs * 1e6).round() as i64).single())
    };
    time.filter(|t| SANE_YEARS.contains(&t.year())).ok_or_else(|| {
        Error::Invalid(format!(
            "{field} {:?} is not a time between the years {} and {}: give RFC 3339 (2026-12-08T10:02:00Z) or \
             seconds since the Unix epoch",
            text.chars().take(64).collect::<String>(),
            SANE_YEARS.start(),
            SANE_YEARS.end()
        ))
    })
}

/// Time-range playback of sources.
#[derive(Clone)]
pub struct Ranges {
    db: Db,
    loader: Arc<SegmentLoader>,
    settings: Arc<ArchiveSettings>,
    /// Segments loaded ahead of a player.
    prime: usize,
}

impl Ranges {
    pub fn new(db: Db, loader: Arc<SegmentLoader>, settings: Arc<ArchiveSettings>, prime: usize) -> Self {
        Self { db, loader, settings, prime }
    }

    pub fn range(&self, query: &RangeQuery) -> Result<TimeRange> {
        TimeRange::parse(query, self.settings.max_range_secs)
    }

    /// The recorded segments of `source` in `range`, in time order; refused past the segment limit.
    pub async fn segments(&self, source: Uuid, range: TimeRange) -> Result<Vec<Segment>> {
        let max = self.settings.max_range_segments;
        let segments = self.db.source_segments_between(source, range.start, range.end, max.saturating_add(1)).await?;
        if segments.is_empty() {
            // An unknown source is 404; a deleted source's retained recordings still play.
            self.db.get_source(source).await?;
        }
        if i64::try_from(segments.len()).unwrap_or(i64::MAX) > max {
            return Err(Error::Invalid(format!(
                "the range {} holds more than {max} segments (LIVEMIX_MAX_RANGE_SEGMENTS); ask for a shorter range",
                range.describe()
            )));
        }
        Ok(segments)
    }

    /// Like [`Ranges::segments`], but an empty range is 404: there is nothing to play or export.
    pub async fn recorded(&self, source: Uuid, range: TimeRange) -> Result<Vec<Segment>> {
        let segments = self.segments(source, range).await?;
        if segments.is_empty() {
            return Err(Error::NotFound(format!(
                "source {source} has no recorded segments {}; GET /v1/source/{source}/coverage shows what was \
                 recorded",
                range.describe()
            )));
        }
        Ok(segments)
    }

    /// The VOD playlist of `range`: every segment with its `#EXT-X-PROGRAM-DATE-TIME`, a discontinuity wherever
    /// playback breaks (a new encoder run, a gap), and `#EXT-X-ENDLIST`. Its first segments are loaded ahead.
    pub async fn playlist(&self, source: Uuid, range: TimeRange) -> Result<String> {
        let segments = self.recorded(source, range).await?;
        self.loader.prime(segments.iter().take(self.prime).map(|s| s.uri.clone()).collect());
        Ok(playlist::time_range(&segments))
    }

    /// What was recorded of `source` in `range`.
    pub async fn coverage(&self, source: Uuid, range: TimeRange) -> Result<Coverage> {
        Ok(coverage(range, &self.segments(source, range).await?))
    }

    /// A recorded segment of `source` by the name a time-range playlist gave it; the next ones are loaded ahead.
    pub async fn segment(&self, source: Uuid, name: &str) -> Result<(SegmentBytes, bool)> {
        let following = i64::try_from(self.prime).unwrap_or(i64::MAX);
        let window = self.db.source_segment_and_next(source, playlist::parse_served_name(name), following).await?;
        let Some((segment, next)) = window.split_first().filter(|(first, _)| playlist::served_name(first) == name)
        else {
            return Err(Error::NotFound(format!("source {source} has no recorded segment {name}")));
        };
        let body = self.loader.get(&segment.uri).await?;
        self.loader.prime(next.iter().map(|s| s.uri.clone()).collect());
        Ok((body, segment.run.is_some()))
    }
}

/// The spans and gaps of `range` given its segments in time order. Spans break where playback does
/// ([`playlist::breaks_after`]); a break is a gap when time is missing or the encoder run changes.
pub fn coverage(range: TimeRange, segments: &[Segment]) -> Coverage {
    let mut spans: Vec<Span> = Vec::new();
    let mut gaps = Vec::new();
    let mut previous: Option<&Segment> = None;
    for segment in segments {
        match previous {
            Some(before) if !playlist::breaks_after(before, segment) => {
                if let Some(span) = spans.last_mut() {
                    span.end = span.end.max(segment.end_ts);
                    span.segments += 1;
                }
            }
            _ => {
                if let Some(before) = previous {
                    let restart = before.run != segment.run;
                    if restart || playlist::is_time_gap(before, segment) {
                        let cause = if restart { GapCause::EncoderRestart } else { GapCause::NotRecorded };
                        gaps.push(gap(before.end_ts, segment.start_ts, cause));
                    }
                } else if playlist::is_time_gap_between(range.start, segment.start_ts, segment.length_ms) {
                    gaps.push(gap(range.start, segment.start_ts, GapCause::NoRecording));
                }
                spans.push(Span {
                    start: segment.start_ts,
                    end: segment.end_ts,
                    segments: 1,
                    run: segment.run.clone(),
                });
            }
        }
        previous = Some(segment);
    }
    match previous {
        Some(last) if playlist::is_time_gap_between(last.end_ts, range.end, last.length_ms) => {
            gaps.push(gap(last.end_ts, range.end, GapCause::NoRecording));
        }
        None => gaps.push(gap(range.start, range.end, GapCause::NoRecording)),
        Some(_) => {}
    }
    Coverage {
        start: range.start,
        end: range.end,
        recorded_secs: segments.iter().map(|s| s.length_ms as f64 / 1000.0).sum(),
        segments: segments.len() as u64,
        spans,
        gaps,
    }
}

fn gap(start: DateTime<Utc>, end: DateTime<Utc>, cause: GapCause) -> Gap {
    let end = end.max(start);
    let secs = end.signed_duration_since(start).num_milliseconds() as f64 / 1000.0;
    Gap { start, end, secs, cause }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use ulid::Ulid;

    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_765_000_000, 0).unwrap() + TimeDelta::seconds(s)
    }

    fn seg(run: Ulid, seq: i64, start: i64) -> Segment {
        Segment {
            id: seq,
            name: format!("index{seq}.ts"),
            source: Uuid::nil(),
            run: Some(run.to_string()),
            seq,
            discontinuity: false,
            start_ts: at(start),
            end_ts: at(start + 2),
            length_ms: 2000,
            size: 10,
            uri: format!("k/{run}/{seq}"),
            sha256: None,
        }
    }

    #[test]
    fn coverage_names_restarts_missing_stretches_and_the_edges() {
        let (a, b) = (Ulid::from_parts(1, 1), Ulid::from_parts(2, 1));
        let segments = [
            seg(a, 0, 10),
            seg(a, 1, 12),
            // The same run after 20 s without segments: not recorded.
            seg(a, 12, 34),
            // A restart with no time missing.
            seg(b, 0, 36),
            seg(b, 1, 38),
        ];
        let range = TimeRange { start: at(0), end: at(100) };
        let c = coverage(range, &segments);
        assert_eq!(c.segments, 5);
        assert_eq!(c.recorded_secs, 10.0);
        let spans: Vec<(i64, i64, u64)> = c
            .spans
            .iter()
            .map(|s| ((s.start - at(0)).num_seconds(), (s.end - at(0)).num_seconds(), s.segments))
            .collect();
        assert_eq!(spans, [(10, 14, 2), (34, 36, 1), (36, 40, 2)]);
        let gaps: Vec<(i64, i64, GapCause)> =
            c.gaps.iter().map(|g| ((g.start - at(0)).num_seconds(), (g.end - at(0)).num_seconds(), g.cause)).collect();
        assert_eq!(
            gaps,
            [
                (0, 10, GapCause::NoRecording),
                (14, 34, GapCause::NotRecorded),
                (36, 36, GapCause::EncoderRestart),
                (40, 100, GapCause::NoRecording)
            ]
        );
        let empty = coverage(range, &[]);
        assert_eq!((empty.spans.len(), empty.gaps.len(), empty.gaps[0].secs), (0, 1, 100.0));
    }

    #[test]
    fn ranges_refuse_what_no_one_can_mean() {
        let q = |start: &str, end: &str| RangeQuery { start: Some(start.into()), end: Some(end.into()) };
        let now = Utc::now().timestamp();
        let ok = TimeRange::parse(&q(&(now - 600).to_string(), &(now - 300).to_string()), 3600).unwrap();
        assert_eq!(ok.end.timestamp() - ok.start.timestamp(), 300);
        let rfc = TimeRange::parse(&q("2026-01-01T10:00:00Z", "2026-01-01T10:05:00.5 00:00"), 3600).unwrap();
        assert_eq!(rfc.end.timestamp_millis() - rfc.start.timestamp_millis(), 300_500);
        // An end in the future is cut to now.
        let cut = TimeRange::parse(&q(&(now - 60).to_string(), &(now + 600).to_string()), 3600).unwrap();
        assert!(cut.end <= Utc::now());
        for (start, end) in [
            ("2026-01-01T10:05:00Z", "2026-01-01T10:00:00Z"),
            ("2026-01-01T10:00:00Z", "2026-01-01T10:00:00Z"),
            ("2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z"),
            (&(now + 60).to_string(), &(now + 120).to_string()),
            ("0", "10"),
            ("-5", "10"),
            ("1e300", "1e301"),
            ("NaN", "inf"),
            ("yesterday", "today"),
            ("99999-01-01T00:00:00Z", "99999-01-02T00:00:00Z"),
            ("", "10"),
        ] {
            assert!(TimeRange::parse(&q(start, end), 3600).is_err(), "{start}..{end} should be refused");
        }
        assert!(TimeRange::parse(&RangeQuery::default(), 3600).is_err());
    }
}
