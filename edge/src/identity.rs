//! Segment identity, decided in this one place when the edge accepts a segment.
//!
//! A segment is `SegmentId { source, run, seq }`: `run` is a ULID drawn when this process first sees the source
//! and again whenever the encoder starts over; `seq` is the segment's media sequence number in that run. An
//! encoder that restarts counts from `index0.ts` again, so names say nothing; the run keeps the new segments
//! apart from the old ones.
//!
//! Discontinuities are decided here too, once, and the control node only renders them: the first segment of a
//! run, any the playlist marks, and any that starts [`is_gap`] away from the end of the source's previous segment
//! (an encoder that paused, an edge that was away).

use std::{
    collections::BTreeSet,
    io,
    path::{Path, PathBuf},
};

use chrono::{DateTime, TimeDelta, Utc};
use livemix_common::segment_id::SegmentId;
use serde::{Deserialize, Serialize};
use ulid::Ulid;
use uuid::Uuid;

/// How many sequence numbers per run are remembered as claimed (far more than any playlist lists).
const REMEMBERED: usize = 1024;

/// A listed segment this edge takes on: its identity and whether a discontinuity precedes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub id: SegmentId,
    pub discontinuity: bool,
    /// The first claim of its run (given back by [`EncoderRun::unclaim`], the next claim opens the run instead).
    opens_run: bool,
    /// Where this claim's segment ends, and where the source's previous segment ended (restored by
    /// [`EncoderRun::unclaim`]).
    end: DateTime<Utc>,
    previous_end: Option<DateTime<Utc>>,
}

/// Where a listed segment sits in time, by the edge's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start_ts: DateTime<Utc>,
    /// At least 1.
    pub length_ms: i64,
}

impl Span {
    pub fn end_ts(&self) -> DateTime<Utc> {
        TimeDelta::try_milliseconds(self.length_ms)
            .and_then(|length| self.start_ts.checked_add_signed(length))
            .unwrap_or(self.start_ts)
    }
}

/// A segment's length in whole milliseconds, at least 1: what every index of it keeps.
pub fn length_ms(duration_secs: f64) -> i64 {
    (duration_secs * 1000.0).round().max(1.0) as i64
}

/// The time-gap rule, the one the control node applied before edges decided it: a segment `next` does not
/// continue a segment that ended at `previous_end` when its start is further from that end (either way) than
/// 1.5 times its own length, and at least 2 s.
pub fn is_gap(previous_end: DateTime<Utc>, next: &Span) -> bool {
    let tolerance = TimeDelta::microseconds(next.length_ms.saturating_mul(1500).max(2_000_000));
    next.start_ts.signed_duration_since(previous_end).abs() > tolerance
}

/// One source's current encoder run, as this edge process sees it.
#[derive(Debug)]
pub struct EncoderRun {
    source: Uuid,
    run: Ulid,
    /// `#EXT-X-MEDIA-SEQUENCE` of the last playlist.
    media_sequence: Option<u64>,
    /// Sequence numbers claimed in this run, the newest [`REMEMBERED`].
    claimed: BTreeSet<u64>,
    /// No segment of this run was claimed yet.
    fresh: bool,
    /// Sequence numbers up to this one were claimed by an earlier process of this edge, in this same run.
    claimed_before: Option<u64>,
    /// Where the source's newest claimed segment ends (kept across runs and restarts): a segment starting far
    /// from it follows a gap.
    previous_end: Option<DateTime<Utc>>,
}

/// What a restarted edge must know to go on with a source's run: without it, the segments still listed in the
/// encoder's playlist would be taken in (and recorded) a second time under a new run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunMark {
    pub run: Ulid,
    pub media_sequence: Option<u64>,
    /// The newest sequence number claimed in the run.
    pub newest: Option<u64>,
    /// Where the newest claimed segment ends (absent from marks saved before edges judged gaps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime<Utc>>,
}

impl EncoderRun {
    /// A new run: the source is seen for the first time by this process.
    pub fn new(source: Uuid) -> Self {
        Self {
            source,
            run: Ulid::new(),
            media_sequence: None,
            claimed: BTreeSet::new(),
            fresh: true,
            claimed_before: None,
            previous_end: None,
        }
    }

    /// Goes on with the run an earlier process of this edge left at `mark`.
    pub fn resume(source: Uuid, mark: RunMark) -> Self {
        Self {
            run: mark.run,
            media_sequence: mark.media_sequence,
            fresh: mark.newest.is_none(),
            claimed_before: mark.newest,
            previous_end: mark.end,
            ..Self::new(source)
        }
    }

    /// Where this run stands, for [`RunMarks::save`].
    pub fn mark(&self) -> RunMark {
        RunMark { run: self.run, media_sequence: self.media_sequence, newest: self.newest(), end: self.previous_end }
    }

    fn newest(&self) -> Option<u64> {
        self.claimed.last().copied().max(self.claimed_before)
    }

    pub fn run(&self) -> Ulid {
        self.run
    }

    /// Notes a playlist (its media sequence and the sequence number of its last segment). A playlist never goes
    /// back within a run (RFC 8216 6.2.1), so when either number does, the encoder started over: a new run is
    /// drawn and true returned.
    pub fn observe(&mut self, media_sequence: u64, last_sequence: Option<u64>) -> bool {
        let sequence_back = self.media_sequence.is_some_and(|previous| media_sequence < previous);
        let newest_back = last_sequence.zip(self.newest()).is_some_and(|(last, newest)| last < newest);
        self.media_sequence = Some(media_sequence);
        let restarted = sequence_back || newest_back;
        if restarted {
            self.start_over();
        }
        restarted
    }

    fn start_over(&mut self) {
        // ULIDs drawn within one millisecond need not sort in order; runs of a source must.
        let drawn = Ulid::new();
        self.run = if drawn > self.run { drawn } else { self.run.increment().unwrap_or(drawn) };
        self.claimed.clear();
        self.claimed_before = None;
        self.fresh = true;
    }

    /// Claims the segment listed at media sequence `seq` that plays over `span`: its identity and whether a
    /// discontinuity precedes it (the first of a run, marked in the playlist, or a time gap from the source's
    /// previous segment), or `None` when it was claimed already.
    pub fn claim(&mut self, seq: u64, listed_discontinuity: bool, span: Span) -> Option<Claim> {
        let forgotten = self.claimed.len() >= REMEMBERED && self.claimed.first().is_some_and(|oldest| seq < *oldest);
        let claimed_before = self.claimed_before.is_some_and(|newest| seq <= newest);
        if forgotten || claimed_before || !self.claimed.insert(seq) {
            return None;
        }
        while self.claimed.len() > REMEMBERED {
            self.claimed.pop_first();
        }
        let opens_run = std::mem::take(&mut self.fresh);
        let gap = self.previous_end.is_some_and(|end| is_gap(end, &span));
        let (end, previous_end) = (span.end_ts(), self.previous_end.replace(span.end_ts()));
        Some(Claim {
            id: SegmentId { source: self.source, run: self.run, seq },
            discontinuity: listed_discontinuity || opens_run || gap,
            opens_run,
            end,
            previous_end,
        })
    }

    /// Gives a claim back (its bytes could not be read) so the next playlist retries it.
    pub fn unclaim(&mut self, claim: &Claim) {
        if claim.id.run != self.run {
            return;
        }
        self.claimed.remove(&claim.id.seq);
        if claim.opens_run {
            self.fresh = true;
        }
        if self.previous_end == Some(claim.end) {
            self.previous_end = claim.previous_end;
        }
    }
}

/// The [`RunMark`]s of this edge's sources, one small JSON file each, so a restarted edge goes on where it was.
#[derive(Debug, Clone)]
pub struct RunMarks {
    dir: PathBuf,
}

impl RunMarks {
    pub fn open(dir: PathBuf) -> io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    fn path(&self, source: Uuid) -> PathBuf {
        self.dir.join(format!("{source}.json"))
    }

    /// The mark an earlier process left for `source`; an unreadable one is ignored (a new run starts).
    pub fn load(&self, source: Uuid) -> Option<RunMark> {
        let path = self.path(source);
        let bytes = std::fs::read(&path).ok()?;
        serde_json::from_slice(&bytes)
            .inspect_err(|err| tracing::warn!(path = %path.display(), %err, "ignoring an unreadable run mark"))
            .ok()
    }

    /// Replaces the mark atomically. Called under the sources lock, once per accepted segment: a write of a few
    /// dozen bytes to the page cache (a process crash keeps it; no fsync, a power cut may re-record a segment).
    pub fn save(&self, source: Uuid, mark: &RunMark) {
        let path = self.path(source);
        if let Err(err) = write_atomically(&path, &serde_json::to_vec(mark).unwrap_or_default()) {
            tracing::warn!(path = %path.display(), %err, "could not save the run mark");
        }
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The span of a 2 s segment that continues the one before it, at media sequence `seq`.
    fn at(seq: u64) -> Span {
        let start = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        Span { start_ts: start + TimeDelta::seconds(2 * seq as i64), length_ms: 2000 }
    }

    #[test]
    fn a_run_claims_each_sequence_number_once() {
        let mut run = EncoderRun::new(Uuid::new_v4());
        assert!(!run.observe(0, Some(1)));
        let first = run.claim(0, false, at(0)).unwrap();
        assert!(first.discontinuity, "the first segment of a run follows a discontinuity");
        let second = run.claim(1, false, at(1)).unwrap();
        assert!(!second.discontinuity);
        assert_eq!((first.id.run, first.id.seq, second.id.seq), (run.run(), 0, 1));
        assert_eq!(run.claim(1, false, at(1)), None, "already claimed");
        assert!(run.claim(2, true, at(2)).unwrap().discontinuity, "marked in the playlist");
        assert!(!run.observe(1, Some(3)), "the playlist moved on");
    }

    #[test]
    fn ffmpeg_restarting_from_index0_starts_a_new_run() {
        let source = Uuid::new_v4();
        let mut run = EncoderRun::new(source);
        // The first run got to index0..index4 (media sequence 0, list size 5).
        run.observe(0, Some(4));
        let old: Vec<SegmentId> = (0..5).map(|seq| run.claim(seq, false, at(seq)).unwrap().id).collect();
        // ffmpeg restarts: its playlist lists index0.ts again at media sequence 0.
        assert!(run.observe(0, Some(0)), "the newest listed went back from 4 to 0");
        let again = run.claim(0, false, at(0)).expect("a new segment, not the old index0");
        assert!(again.discontinuity);
        assert_ne!(again.id.run, old[0].run);
        assert!(again.id.run > old[0].run, "runs sort in order");
        assert!(!old.contains(&again.id), "no collision with the old run's segments");
        assert_eq!(again.id.source, source);
        assert!(!run.claim(1, false, at(1)).unwrap().discontinuity, "only the first of the run");

        // A restart later in a run: the media sequence goes back.
        run.observe(40, Some(44));
        assert!(run.observe(0, Some(2)));
    }

    #[test]
    fn a_time_gap_from_the_previous_segment_is_a_discontinuity() {
        let mut run = EncoderRun::new(Uuid::new_v4());
        assert!(run.claim(0, false, at(0)).unwrap().discontinuity, "opens the run");
        assert!(!run.claim(1, false, at(1)).unwrap().discontinuity, "continues");
        // Up to 1.5 times the length (3 s here) either way is jitter, not a gap.
        let late = |seq, ms| Span { start_ts: at(seq).start_ts + TimeDelta::milliseconds(ms), ..at(seq) };
        assert!(!run.claim(2, false, late(2, 3000)).unwrap().discontinuity);
        assert!(run.claim(3, false, late(3, 3000 + 3001)).unwrap().discontinuity, "the encoder paused: a gap");
        assert!(run.claim(4, false, at(1)).unwrap().discontinuity, "times jumped back");
        // At least 2 s: a short segment's gap is judged against 2 s.
        let short = |start_ms| Span { start_ts: at(2).start_ts + TimeDelta::milliseconds(start_ms), length_ms: 500 };
        assert!(!run.claim(5, false, short(1999)).unwrap().discontinuity);
        assert!(run.claim(6, false, short(1999 + 500 + 2001)).unwrap().discontinuity);

        // A claim given back leaves the previous end as it was, so the retry is judged as the first try was.
        let mut run = EncoderRun::new(Uuid::new_v4());
        run.claim(0, false, at(0)).unwrap();
        let far = Span { start_ts: at(10).start_ts, length_ms: 2000 };
        let gap = run.claim(10, false, far).unwrap();
        assert!(gap.discontinuity);
        run.unclaim(&gap);
        assert!(run.claim(10, false, far).unwrap().discontinuity, "still a gap on the retry");
        assert!(is_gap(DateTime::<Utc>::MIN_UTC, &Span { start_ts: DateTime::<Utc>::MAX_UTC, length_ms: i64::MAX }));
    }

    #[test]
    fn a_failed_first_claim_leaves_the_discontinuity_to_the_retry() {
        let mut run = EncoderRun::new(Uuid::new_v4());
        let first = run.claim(7, false, at(7)).unwrap();
        run.unclaim(&first);
        let retried = run.claim(7, false, at(7)).unwrap();
        assert!(retried.discontinuity);
        assert_eq!(retried.id, first.id, "same segment, same identity");
    }

    #[test]
    fn only_recent_sequence_numbers_are_remembered() {
        let mut run = EncoderRun::new(Uuid::new_v4());
        for seq in 0..(REMEMBERED as u64 + 10) {
            run.claim(seq, false, at(seq)).unwrap();
        }
        assert_eq!(run.claimed.len(), REMEMBERED);
        assert_eq!(run.claim(3, false, at(3)), None, "older than anything remembered: long done");
    }

    #[test]
    fn a_restarted_edge_goes_on_with_the_run_and_takes_nothing_twice() {
        let dir = std::env::temp_dir().join(format!("livemix-runs-{}", Uuid::new_v4()));
        let marks = RunMarks::open(dir.clone()).unwrap();
        let source = Uuid::new_v4();
        let mut before = EncoderRun::new(source);
        before.observe(3, Some(7));
        let taken: Vec<SegmentId> = (3..=7).map(|seq| before.claim(seq, false, at(seq)).unwrap().id).collect();
        marks.save(source, &before.mark());

        // The edge is killed and started again; the encoder's playlist still lists 4..=7, then 8.
        let mut after = EncoderRun::resume(source, marks.load(source).unwrap());
        assert!(!after.observe(4, Some(8)), "the same run goes on");
        assert!((4..=7).all(|seq| after.claim(seq, false, at(seq)).is_none()), "nothing taken twice");
        let next = after.claim(8, false, at(8)).unwrap();
        assert_eq!(next.id.run, taken[0].run);
        assert!(!next.discontinuity, "the run continues, and so do the times");
        let mut away = EncoderRun::resume(source, after.mark());
        assert!(away.claim(20, false, at(20)).unwrap().discontinuity, "the edge was away: a gap");

        // The encoder restarted while the edge was down: its playlist went back.
        let mut restarted = EncoderRun::resume(source, after.mark());
        assert!(restarted.observe(0, Some(1)));
        let first = restarted.claim(0, false, at(0)).unwrap();
        assert!(first.discontinuity && first.id.run > next.id.run);

        std::fs::write(dir.join(format!("{source}.json")), b"garbage").unwrap();
        assert_eq!(marks.load(source), None, "an unreadable mark starts a new run");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
