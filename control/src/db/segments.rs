//! Recorded segments (tables `segments` and `recording_segments`): stored as edges report them, linked to their
//! recordings, and read back in playback order.

use chrono::{DateTime, Utc};
use livemix_common::{
    model::{Segment, SegmentInfo},
    segment::MAX_SEGMENT_MSEC,
};
use uuid::Uuid;
// Dynamic SQL here only ever interpolates this module's constants and dialect fragments, never input.
use sqlx::AssertSqlSafe;

use super::{
    Db, DbResult,
    dialect::{Dialect, epoch},
    json, not_found,
};

/// How a recording playlist names one of its segments (see `crate::playlist::RecordedName`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentRef<'a> {
    /// A segment from before segment ids, by its name (unique per source then).
    Legacy(&'a str),
    /// A segment of an encoder run, by run and sequence number.
    Run { run: ulid::Ulid, seq: i64 },
}

impl<'a> SegmentRef<'a> {
    /// The run, name and sequence number as the lookups bind them: `run` NULL selects a legacy name.
    fn binds(self) -> (Option<String>, &'a str, i64) {
        match self {
            Self::Legacy(name) => (None, name, 0),
            Self::Run { run, seq } => (Some(run.to_string()), "", seq),
        }
    }
}

const SEGMENT_COLUMNS: &str = "s.id, s.name, s.source, s.run, s.seq, s.discontinuity, s.start_ts, s.end_ts, \
     s.length_ms, s.size, s.uri, s.sha256";

/// The playback order of recorded segments, as a list of expressions over the segments table aliased `t`:
/// segments from before segment ids (no run) first, in time order as they always played; then encoder runs in
/// the order the edge drew them (ULIDs sort by the edge's clock, compared bytewise), each run in sequence
/// order. The row id makes the order total. No expression is ever NULL (a run's time key is a constant, its
/// sequence number orders it), so the list also serves as a row value that compares with another.
fn playback_key(d: Dialect, t: &str) -> String {
    let start = d.secs(&format!("{t}.start_ts"));
    format!(
        "{}, COALESCE(CASE WHEN {t}.run IS NULL THEN {start} END, 0), {t}.seq, {start}, {t}.id",
        d.bytewise(&format!("COALESCE({t}.run, '')"))
    )
}

impl Db {
    /// Stores a recorded segment and links it to the recordings of its source among `recording_ids`; returns
    /// those recordings. The object key is the idempotency key: a report the bus delivers again finds the row
    /// it made the first time (and links it once), while a restarted encoder's segment, under a new key, gets a
    /// row of its own. `NotFound` when none of the recordings exists (deleted, or never made): nothing is kept.
    pub async fn add_recorded_segment(&self, recording_ids: &[String], info: &SegmentInfo) -> DbResult<Vec<String>> {
        // The ids travel as one JSON array: one statement whatever their number.
        let ids = json(recording_ids)?;
        let recordings = on_tx!(self, |tx, d| {
            // On a repeat, keep the first report's row; an edge from before segment ids rewrote the object under
            // the same key, so its size follows the bytes as it always did.
            let segment_id: i64 = sqlx::query_scalar(
                "INSERT INTO segments (source, name, run, seq, discontinuity, start_ts, end_ts, length_ms, size, \
                     uri, sha256) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (source, uri) DO UPDATE \
                 SET size = CASE WHEN segments.run IS NULL THEN excluded.size ELSE segments.size END \
                 RETURNING id",
            )
            .bind(info.source)
            .bind(&info.name)
            .bind(info.run.map(|run| run.to_string()))
            .bind(info.seq)
            .bind(info.discontinuity)
            .bind(info.start_ts)
            .bind(info.end_ts)
            .bind(info.length_ms)
            .bind(info.size)
            .bind(&info.uri)
            .bind(&info.sha256)
            .fetch_one(&mut *tx)
            .await?;
            let wanted = format!("FROM recordings WHERE {} AND source = $2", d.in_texts("id", "$1"));
            let recordings: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!("SELECT id {wanted} ORDER BY id")))
                .bind(&ids)
                .bind(info.source)
                .fetch_all(&mut *tx)
                .await?;
            if recordings.is_empty() {
                // Dropping the transaction rolls the segment row back.
                return Err(not_found("recording", recording_ids.join(",")));
            }
            let link = format!(
                "INSERT INTO recording_segments (recording, segment) SELECT id, $3 {wanted} ON CONFLICT DO NOTHING"
            );
            sqlx::query(AssertSqlSafe(link)).bind(&ids).bind(info.source).bind(segment_id).execute(&mut *tx).await?;
            // A report delivered again after the object's last recording was deleted brings the segment back to a
            // recording that still wants it: its deletion, if not yet carried out, must not happen.
            sqlx::query("DELETE FROM object_deletions WHERE key = $1").bind(&info.uri).execute(&mut *tx).await?;
            recordings
        });
        Ok(recordings)
    }

    /// The segments of a recording in playback order: segments from before segment ids (no run) first, in time
    /// order; then encoder runs in the order the edge drew them (ULIDs, compared bytewise), each run in sequence
    /// order; the row id makes the order total.
    pub async fn recording_segments(&self, recording: &str) -> DbResult<Vec<Segment>> {
        self.recording_segments_upto(recording, i64::MAX).await
    }

    /// The first `limit` segments of a recording in playback order (see [`Db::recording_segments`]).
    pub async fn recording_segments_upto(&self, recording: &str, limit: i64) -> DbResult<Vec<Segment>> {
        Ok(on_pool!(self, |pool, d| {
            let sql = format!(
                "SELECT {SEGMENT_COLUMNS} FROM segments s JOIN recording_segments rs ON rs.segment = s.id \
                 WHERE rs.recording = $1 ORDER BY {} LIMIT $2",
                playback_key(d, "s")
            );
            sqlx::query_as(AssertSqlSafe(sql)).bind(recording).bind(limit).fetch_all(pool).await?
        }))
    }

    /// The segment `wanted` of a recording followed by up to `following` next ones in playback order (empty
    /// when the recording has no such segment). A player asks for every segment, so this must not load them all.
    pub async fn recording_segment_and_next(
        &self,
        recording: &str,
        wanted: SegmentRef<'_>,
        following: i64,
    ) -> DbResult<Vec<Segment>> {
        let (run, name, seq) = wanted.binds();
        Ok(on_pool!(self, |pool, d| {
            let (key_s, key_t) = (playback_key(d, "s"), playback_key(d, "t"));
            // sqlx tells PostgreSQL each parameter's type, so `$2 IS NULL` needs no cast.
            let sql = format!(
                "SELECT {SEGMENT_COLUMNS} FROM segments s JOIN recording_segments rs ON rs.segment = s.id \
                 WHERE rs.recording = $1 AND ({key_s}) >= ( \
                     SELECT {key_t} FROM segments t JOIN recording_segments rt ON rt.segment = t.id \
                     WHERE rt.recording = $1 \
                       AND (($2 IS NULL AND t.run IS NULL AND t.name = $3) OR (t.run = $2 AND t.seq = $4)) \
                     ORDER BY {key_t} LIMIT 1) \
                 ORDER BY {key_s} LIMIT $5"
            );
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(recording)
                .bind(&run)
                .bind(name)
                .bind(seq)
                .bind(following.saturating_add(1))
                .fetch_all(pool)
                .await?
        }))
    }

    /// The recorded segments of `source` that overlap `[start, end)`, in time order, at most `limit`. Segments
    /// last at most [`MAX_SEGMENT_MSEC`], so the index on start times bounds the scan to the range and that much
    /// before it, and gives the order without a sort (SQLite's stored times sort as text in time order).
    pub async fn source_segments_between(
        &self,
        source: Uuid,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        limit: i64,
    ) -> DbResult<Vec<Segment>> {
        let (start, end) = (epoch(start), epoch(end));
        let earliest = start - MAX_SEGMENT_MSEC as f64 / 1000.0;
        Ok(on_pool!(self, |pool, d| {
            let sql = format!(
                "SELECT {SEGMENT_COLUMNS} FROM segments s WHERE s.source = $1 AND {} AND {} AND {} \
                 ORDER BY s.start_ts, s.seq, s.id LIMIT $5",
                d.cmp_time("s.start_ts", ">=", "$2"),
                d.cmp_time("s.start_ts", "<", "$3"),
                d.cmp_time("s.end_ts", ">", "$4"),
            );
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(source)
                .bind(earliest)
                .bind(end)
                .bind(start)
                .bind(limit)
                .fetch_all(pool)
                .await?
        }))
    }

    /// A recorded segment of `source` by the name a playlist gave it, and up to `following` segments that start
    /// after it, in time order (empty when the source has no such segment).
    pub async fn source_segment_and_next(
        &self,
        source: Uuid,
        wanted: SegmentRef<'_>,
        following: i64,
    ) -> DbResult<Vec<Segment>> {
        let (run, name, seq) = wanted.binds();
        let found: Option<Segment> = on_pool!(self, |pool, _d| {
            // sqlx tells PostgreSQL each parameter's type, so `$2 IS NULL` needs no cast.
            let sql = format!(
                "SELECT {SEGMENT_COLUMNS} FROM segments s WHERE s.source = $1 \
                 AND (($2 IS NULL AND s.run IS NULL AND s.name = $3) OR (s.run = $2 AND s.seq = $4)) \
                 ORDER BY s.id LIMIT 1"
            );
            sqlx::query_as(AssertSqlSafe(sql)).bind(source).bind(&run).bind(name).bind(seq).fetch_optional(pool).await?
        });
        let Some(found) = found else { return Ok(Vec::new()) };
        let after = epoch(found.start_ts);
        let next: Vec<Segment> = on_pool!(self, |pool, d| {
            let sql = format!(
                "SELECT {SEGMENT_COLUMNS} FROM segments s WHERE s.source = $1 AND {} AND s.id <> $2 \
                 ORDER BY s.start_ts, s.seq, s.id LIMIT $3",
                d.cmp_time("s.start_ts", ">=", "$4"),
            );
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(source)
                .bind(found.id)
                .bind(following)
                .bind(after)
                .fetch_all(pool)
                .await?
        });
        Ok(std::iter::once(found).chain(next).collect())
    }
}
