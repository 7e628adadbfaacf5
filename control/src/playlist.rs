//! The playlists players read from the control node: the live window of a source and whole recordings.
//!
//! Pure functions of what the database returns, so the rules (sequence numbers, where discontinuities go, how
//! segments are named) are tested without any service.

use chrono::{DateTime, TimeDelta, Utc};
use livemix_common::{
    hls::{ServedSegment, live_playlist, vod_playlist},
    model::Segment,
};
use ulid::Ulid;

use crate::db::{LiveSegment, SegmentRef};

/// The live playlist of the newest segments (oldest first); `None` when there are none.
pub fn live(segments: &[LiveSegment]) -> Option<String> {
    let first = segments.first()?;
    let media_sequence = u64::try_from(first.media_seq).unwrap_or(0);
    // DISCONTINUITY-SEQUENCE counts the discontinuities before the first listed segment.
    let disc_sequence = u64::try_from(first.disc_seq.saturating_sub(i64::from(first.discontinuity))).unwrap_or(0);
    let served: Vec<ServedSegment> =
        segments.iter().map(|s| ServedSegment::from_millis(&s.name, s.length_ms, s.discontinuity)).collect();
    Some(live_playlist(&served, media_sequence, disc_sequence))
}

/// `#EXT-X-TARGETDURATION` of a live playlist of these segments: the longest, rounded up, at least 1 s.
pub fn live_target_duration(segments: &[LiveSegment]) -> u64 {
    let longest_ms = segments.iter().map(|s| u64::try_from(s.length_ms).unwrap_or(0)).max().unwrap_or(0);
    longest_ms.div_ceil(1000).max(1)
}

/// The VOD playlist of a recording's segments, given in playback order.
pub fn recording(segments: &[Segment]) -> String {
    let served: Vec<ServedSegment> = std::iter::once(None)
        .chain(segments.iter().map(Some))
        .zip(segments)
        .map(|(previous, s)| {
            let discontinuity = previous.is_some_and(|previous| breaks_after(previous, s));
            ServedSegment::from_millis(served_name(s), s.length_ms, discontinuity)
        })
        .collect();
    vod_playlist(&served)
}

/// The VOD playlist of a time range's segments, given in time order: as a recording's, with every segment's
/// `#EXT-X-PROGRAM-DATE-TIME`, so players show and seek by the wall-clock time.
pub fn time_range(segments: &[Segment]) -> String {
    let served: Vec<ServedSegment> = std::iter::once(None)
        .chain(segments.iter().map(Some))
        .zip(segments)
        .map(|(previous, s)| {
            let discontinuity = previous.is_some_and(|previous| breaks_after(previous, s));
            ServedSegment::from_millis(served_name(s), s.length_ms, discontinuity).starting_at(s.start_ts)
        })
        .collect();
    vod_playlist(&served)
}

/// Whether `next` does not continue `previous` in recorded playback: the edge said so, the encoder restarted (a
/// new run), or the times leave a gap (edge offline, network blip) or jump back. Recorded playback judges gaps
/// again (the edge flags only the gaps it saw): a recording may skip segments the edge forwarded in between.
pub fn breaks_after(previous: &Segment, next: &Segment) -> bool {
    next.discontinuity || next.run != previous.run || is_time_gap(previous, next)
}

/// The times of two segments in a row leave a gap or jump back (a time that cannot be computed counts as one).
pub fn is_time_gap(previous: &Segment, next: &Segment) -> bool {
    next.start_ts.signed_duration_since(previous.end_ts).abs() > gap_tolerance(next.length_ms)
}

/// Time missing between `end` and a later `start`, for segments of `length_ms`: more than the jitter of one.
pub fn is_time_gap_between(end: DateTime<Utc>, start: DateTime<Utc>, length_ms: i64) -> bool {
    start.signed_duration_since(end) > gap_tolerance(length_ms)
}

/// Half a segment, at least a second: encoders' clocks and segment lengths jitter by less.
fn gap_tolerance(length_ms: i64) -> TimeDelta {
    TimeDelta::try_milliseconds((length_ms / 2).max(1000)).unwrap_or(TimeDelta::MAX)
}

/// The name a recording playlist gives a segment: its own name for segments from before segment ids (as they
/// always played), `{run}-{seq}.ts` for the others, since a restarted encoder reuses names within a recording.
pub fn served_name(segment: &Segment) -> String {
    match &segment.run {
        None => segment.name.clone(),
        Some(run) => format!("{run}-{}.ts", segment.seq),
    }
}

/// The segment a player asks for by a name [`served_name`] gave.
pub fn parse_served_name(file: &str) -> SegmentRef<'_> {
    let by_run = file
        .strip_suffix(".ts")
        .and_then(|stem| stem.split_once('-'))
        .and_then(|(run, seq)| Some(SegmentRef::Run { run: Ulid::from_string(run).ok()?, seq: seq.parse().ok()? }));
    by_run.unwrap_or(SegmentRef::Legacy(file))
}

#[cfg(test)]
mod tests {
    use livemix_common::hls::parse_media_playlist;
    use uuid::Uuid;

    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    fn seg(name: &str, run: Option<Ulid>, seq: i64, start: i64, discontinuity: bool) -> Segment {
        Segment {
            id: seq,
            name: name.into(),
            source: Uuid::nil(),
            run: run.map(|r| r.to_string()),
            seq,
            discontinuity,
            start_ts: at(start),
            end_ts: at(start + 2),
            length_ms: 2000,
            size: 1,
            uri: format!("k/{name}"),
            sha256: None,
        }
    }

    #[test]
    fn recordings_break_at_flags_new_runs_and_gaps_only() {
        let (a, b) = (Ulid::from_parts(1, 1), Ulid::from_parts(2, 1));
        let segments = [
            seg("old0.ts", None, 0, 0, false),
            seg("old1.ts", None, 1, 2, false),
            // The edge was away: a gap.
            seg("old2.ts", None, 2, 30, false),
            // A new run restarts the names.
            seg("index0.ts", Some(a), 0, 32, true),
            seg("index1.ts", Some(a), 1, 34, false),
            // Flagged by the edge although the times continue.
            seg("index2.ts", Some(a), 2, 36, true),
            // Unflagged new run (an edge that did not set the flag): still a break.
            seg("index0.ts", Some(b), 0, 38, false),
            // A time no one can add to (durations are bounded at the door, times in old rows may not be).
            Segment { end_ts: DateTime::<Utc>::MAX_UTC, ..seg("index1.ts", Some(b), 1, 40, false) },
            seg("index2.ts", Some(b), 2, 42, false),
        ];
        let text = recording(&segments);
        let playlist = parse_media_playlist(text.as_bytes()).unwrap();
        let breaks: Vec<bool> = playlist.segments.iter().map(|s| s.discontinuity).collect();
        assert_eq!(breaks, [false, false, true, true, false, true, true, false, true], "{text}");
        let names: Vec<&str> = playlist.segments.iter().map(|s| s.uri.as_str()).collect();
        assert_eq!(&names[..3], ["old0.ts", "old1.ts", "old2.ts"], "legacy segments keep their names");
        assert_eq!(names[3], format!("{a}-0.ts"));
        assert_eq!(names[6], format!("{b}-0.ts"));
        assert!(text.trim_end().ends_with("#EXT-X-ENDLIST"));
    }

    #[test]
    fn served_names_lead_back_to_their_segment() {
        let run = Ulid::from_parts(7, 9);
        let new = seg("index0.ts", Some(run), 12, 0, false);
        assert_eq!(parse_served_name(&served_name(&new)), SegmentRef::Run { run, seq: 12 });
        let old = seg("cam-12.ts", None, 12, 0, false);
        assert_eq!(parse_served_name(&served_name(&old)), SegmentRef::Legacy("cam-12.ts"));
        for legacy in ["index0.ts", "a-b.ts", "test-video-1704596100.ts", &format!("{run}-x.ts"), &format!("{run}-1")] {
            assert_eq!(parse_served_name(legacy), SegmentRef::Legacy(legacy));
        }
    }

    #[test]
    fn live_playlists_count_discontinuities_before_the_window() {
        let row = |media_seq, discontinuity, disc_seq| LiveSegment {
            media_seq,
            name: format!("s{media_seq}.ts"),
            length_ms: 1000,
            discontinuity,
            disc_seq,
        };
        assert_eq!(live(&[]), None);
        let text = live(&[row(5, true, 2), row(6, false, 2)]).unwrap();
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:5\n"), "{text}");
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{text}");
        // Nonsense from the database never panics.
        let text = live(&[row(-3, true, i64::MIN)]).unwrap();
        assert!(text.contains("s-3.ts") && !text.contains(":-"), "{text}");
    }
}
