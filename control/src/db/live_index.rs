//! The live index (table `live_segments`, numbered through `sources.live_media_seq`): the segments an edge
//! forwarded that the live playlist lists, and the reads that decide what is public: whether a source streams
//! and already lists a name before a forwarded segment's bytes reach the shared cache, and whether a requested
//! name is listed before the VOD API serves it.

use std::time::Duration;

use chrono::{DateTime, Utc};
// Dynamic SQL here only ever interpolates this module's constants and dialect fragments, never input.
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::{Db, DbResult, RETRY_WINDOW, dialect::Dialect, not_found};

/// A live segment as indexed for the live playlist.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LiveSegment {
    pub media_seq: i64,
    pub name: String,
    pub length_ms: i64,
    pub discontinuity: bool,
    pub disc_seq: i64,
}

/// What a source's live stream looks like now, for people watching over it (the web console).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LiveSummary {
    /// Segments a player gets in the live playlist now (0: nothing to play).
    pub segments: i64,
    /// When the newest live segment arrived, by the control node's clock; `null` before the first one.
    pub last_segment_at: Option<DateTime<Utc>>,
}

/// A new live segment arriving from an edge.
#[derive(Debug, Clone)]
pub struct NewLiveSegment {
    pub source: Uuid,
    pub name: String,
    pub length_ms: i64,
    pub start_ts: DateTime<Utc>,
    /// The edge saw a discontinuity before this segment.
    pub discontinuity: bool,
}

/// What became of a live segment offered to the index.
#[derive(Debug, Clone)]
pub struct LiveAdmission {
    pub source_name: String,
    pub streaming: bool,
    /// The source's registered segment length, seconds.
    pub segment_length: i32,
    /// The indexed segment (or the one an edge retried); `None` when the source does not stream, or when a
    /// concurrent copy of the same segment was being indexed at that very moment (the edge retries).
    pub segment: Option<LiveSegment>,
}

/// A source's state as a forwarded segment finds it, before anything is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveGate {
    pub source_name: String,
    pub streaming: bool,
    /// The name is listed already and was received within the retry window: this is the edge's retry of a
    /// segment whose bytes are stored (they are not replaced).
    pub retried: bool,
}

/// The columns of a [`LiveSegment`].
const LIVE_COLUMNS: &str = "media_seq, name, length_ms, discontinuity, disc_seq";

/// The entry of source `$1` named `$2` received within the last `window` seconds (a parameter): an edge's retry.
fn retried(d: Dialect, window: &str) -> String {
    format!(
        "SELECT {LIVE_COLUMNS} FROM live_segments WHERE source = $1 AND name = $2 AND {}",
        d.ago("received_at", ">", window)
    )
}

/// The newest other segment of source `$1` (not named `$2`), whose end the new one should start at.
const PREVIOUS: &str = "SELECT start_ts, length_ms FROM live_segments WHERE source = $1 AND name <> $2 \
    ORDER BY media_seq DESC LIMIT 1";

/// Where an insert into `live_segments` meets an old entry of the same name (an encoder that restarted and
/// reuses names), the new segment takes its place.
fn replacing_old(d: Dialect) -> String {
    format!(
        "ON CONFLICT (source, name) DO UPDATE SET media_seq = excluded.media_seq, \
             length_ms = excluded.length_ms, discontinuity = excluded.discontinuity, \
             disc_seq = excluded.disc_seq, start_ts = excluded.start_ts, received_at = {}",
        d.now()
    )
}

/// What the one statement of [`add_in_one_statement`] returns: the source, and the segment if any.
#[derive(sqlx::FromRow)]
struct LiveAdmissionRow {
    source_name: String,
    streaming: bool,
    segment_length: i32,
    media_seq: Option<i64>,
    name: Option<String>,
    length_ms: Option<i64>,
    discontinuity: Option<bool>,
    disc_seq: Option<i64>,
}

impl Db {
    /// The live segments of `source` received within `window` (capped at `playlist_len`, as the live playlist
    /// is) and when the newest of all arrived.
    pub async fn live_summary(&self, source: Uuid, playlist_len: i64, window: Duration) -> DbResult<LiveSummary> {
        let (recent, last_segment_at): (i64, Option<DateTime<Utc>>) = on_pool!(self, |pool, d| {
            let sql = format!(
                "SELECT count(*) FILTER (WHERE {}), max(received_at) FROM live_segments WHERE source = $1",
                d.ago("received_at", ">", "$2")
            );
            sqlx::query_as(AssertSqlSafe(sql)).bind(source).bind(window.as_secs_f64()).fetch_one(pool).await?
        });
        Ok(LiveSummary { segments: recent.min(playlist_len), last_segment_at })
    }

    /// Indexes a live segment, giving it the source's next media sequence number, when the source exists and
    /// streams; atomic against every other writer. A segment already indexed (an edge retry) keeps its number; a
    /// name seen long ago is an encoder that restarted and reuses names (ffmpeg starts again at index0.ts), so
    /// the old entry makes way for the new segment. `gap` marks a discontinuity when the previous segment ended
    /// long before this one started. `NotFound` for an unknown source.
    ///
    /// The one query written per database: PostgreSQL does it all in one statement (every live segment of every
    /// source comes this way, and its replicas serialise on the source row that statement locks), which needs
    /// data-modifying `WITH` clauses SQLite does not have; SQLite takes the same steps in a write transaction,
    /// whose lock serialises numbering as the row lock does. Both share the steps' SQL.
    pub async fn add_live_segment(&self, seg: &NewLiveSegment, gap: Duration) -> DbResult<LiveAdmission> {
        match self {
            Db::Postgres(db) => add_in_one_statement(db.pool(), seg, gap).await,
            Db::Sqlite(db) => add_in_a_transaction(db.write().await?, seg, gap).await,
        }
    }

    /// The newest `count` live segments received within `max_age`, oldest first.
    pub async fn newest_live_segments(
        &self,
        source: Uuid,
        count: i64,
        max_age: Duration,
    ) -> DbResult<Vec<LiveSegment>> {
        let mut rows: Vec<LiveSegment> = on_pool!(self, |pool, d| {
            let sql = format!(
                "SELECT {LIVE_COLUMNS} FROM live_segments WHERE source = $1 AND {} ORDER BY media_seq DESC LIMIT $2",
                d.ago("received_at", ">", "$3")
            );
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(source)
                .bind(count)
                .bind(max_age.as_secs_f64())
                .fetch_all(pool)
                .await?
        });
        rows.reverse();
        Ok(rows)
    }

    /// Drops live index rows older than `max_age`; their bytes have expired from the cache anyway.
    pub async fn prune_live_segments(&self, max_age: Duration) -> DbResult<u64> {
        Ok(on_pool!(self, |pool, d| {
            let sql = format!("DELETE FROM live_segments WHERE {}", d.ago("received_at", "<", "$1"));
            sqlx::query(AssertSqlSafe(sql)).bind(max_age.as_secs_f64()).execute(pool).await?.rows_affected()
        }))
    }

    /// Whether `source` streams and lists `name` as a recent segment. 404 for an unknown source.
    pub async fn live_gate(&self, source: Uuid, name: &str) -> DbResult<LiveGate> {
        let row: Option<(String, bool, bool)> = on_pool!(self, |pool, d| {
            let sql = format!(
                "SELECT s.name, s.streaming, EXISTS (SELECT 1 FROM live_segments l WHERE l.source = s.id \
                     AND l.name = $2 AND {}) \
                 FROM sources s WHERE s.id = $1",
                d.ago("l.received_at", ">", "$3")
            );
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(source)
                .bind(name)
                .bind(RETRY_WINDOW.as_secs_f64())
                .fetch_optional(pool)
                .await?
        });
        let (source_name, streaming, retried) = row.ok_or_else(|| not_found("source", source))?;
        Ok(LiveGate { source_name, streaming, retried })
    }

    /// Whether the live index lists `name` for `source`: only such segments are served to players.
    pub async fn is_live_listed(&self, source: Uuid, name: &str) -> DbResult<bool> {
        Ok(on_pool!(self, |pool, _d| {
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM live_segments WHERE source = $1 AND name = $2)")
                .bind(source)
                .bind(name)
                .fetch_one(pool)
                .await?
        }))
    }
}

/// [`Db::add_live_segment`] on PostgreSQL, in one round trip: the `UPDATE` of the source row hands out the
/// numbers (its row lock serialises replicas numbering the same source) and only runs when the segment is new
/// and the source streams; the discontinuity rule is [`is_gap`]'s, in SQL.
async fn add_in_one_statement(pool: &sqlx::PgPool, seg: &NewLiveSegment, gap: Duration) -> DbResult<LiveAdmission> {
    let d = Dialect::Postgres;
    let sql = format!(
        "WITH src AS (SELECT name, streaming, segment_length FROM sources WHERE id = $1), \
         retry AS ({retry}), \
         previous AS ({PREVIOUS}), \
         flag AS ( \
             SELECT $5::boolean OR COALESCE((SELECT abs(extract(epoch FROM \
                 $4::timestamptz - (p.start_ts + p.length_ms * interval '1 millisecond'))) > $7 \
                 FROM previous p), false) AS discontinuity), \
         numbered AS ( \
             UPDATE sources SET live_media_seq = live_media_seq + 1, \
                 live_disc_seq = live_disc_seq + CASE WHEN (SELECT discontinuity FROM flag) THEN 1 ELSE 0 END \
             WHERE id = $1 AND streaming AND NOT EXISTS (SELECT 1 FROM retry) \
             RETURNING live_media_seq, live_disc_seq), \
         inserted AS ( \
             INSERT INTO live_segments (source, media_seq, name, length_ms, discontinuity, disc_seq, start_ts) \
             SELECT $1, n.live_media_seq, $2, $3, f.discontinuity, n.live_disc_seq, $4 FROM numbered n, flag f \
             {replace} WHERE {old} \
             RETURNING {LIVE_COLUMNS}) \
         SELECT s.name AS source_name, s.streaming, s.segment_length, \
             l.media_seq, l.name, l.length_ms, l.discontinuity, l.disc_seq \
         FROM src s LEFT JOIN (SELECT * FROM inserted UNION ALL SELECT * FROM retry) l ON true",
        retry = retried(d, "$6"),
        replace = replacing_old(d),
        old = d.ago("live_segments.received_at", "<=", "$6"),
    );
    let row = sqlx::query_as::<_, LiveAdmissionRow>(AssertSqlSafe(sql))
        .bind(seg.source)
        .bind(&seg.name)
        .bind(seg.length_ms)
        .bind(seg.start_ts)
        .bind(seg.discontinuity)
        .bind(RETRY_WINDOW.as_secs_f64())
        .bind(gap.as_secs_f64())
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| not_found("source", seg.source))?;
    let segment = match (row.media_seq, row.name, row.length_ms, row.discontinuity, row.disc_seq) {
        (Some(media_seq), Some(name), Some(length_ms), Some(discontinuity), Some(disc_seq)) => {
            Some(LiveSegment { media_seq, name, length_ms, discontinuity, disc_seq })
        }
        _ => None,
    };
    Ok(LiveAdmission {
        source_name: row.source_name,
        streaming: row.streaming,
        segment_length: row.segment_length,
        segment,
    })
}

/// [`Db::add_live_segment`] on SQLite: PostgreSQL's one statement as the steps of write transaction `tx`.
async fn add_in_a_transaction(
    mut tx: sqlx::Transaction<'static, sqlx::Sqlite>,
    seg: &NewLiveSegment,
    gap: Duration,
) -> DbResult<LiveAdmission> {
    let d = Dialect::Sqlite;
    let (source_name, streaming, segment_length): (String, bool, i32) =
        sqlx::query_as("SELECT name, streaming, segment_length FROM sources WHERE id = $1")
            .bind(seg.source)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| not_found("source", seg.source))?;
    let admission = |segment| LiveAdmission { source_name, streaming, segment_length, segment };
    let retry: Option<LiveSegment> = sqlx::query_as(AssertSqlSafe(retried(d, "$3")))
        .bind(seg.source)
        .bind(&seg.name)
        .bind(RETRY_WINDOW.as_secs_f64())
        .fetch_optional(&mut *tx)
        .await?;
    if retry.is_some() || !streaming {
        // Nothing written: dropping the transaction ends it.
        return Ok(admission(retry));
    }
    let previous: Option<(DateTime<Utc>, i64)> =
        sqlx::query_as(PREVIOUS).bind(seg.source).bind(&seg.name).fetch_optional(&mut *tx).await?;
    let discontinuity =
        seg.discontinuity || previous.is_some_and(|(start, length)| is_gap(start, length, seg.start_ts, gap));
    let (media_seq, disc_seq): (i64, i64) = sqlx::query_as(
        "UPDATE sources SET live_media_seq = live_media_seq + 1, live_disc_seq = live_disc_seq + $2 \
         WHERE id = $1 RETURNING live_media_seq, live_disc_seq",
    )
    .bind(seg.source)
    .bind(i64::from(discontinuity))
    .fetch_one(&mut *tx)
    .await?;
    // No retry was found, so a row of the same name is old: an encoder that restarted and reuses names.
    let sql = format!(
        "INSERT INTO live_segments (source, media_seq, name, length_ms, discontinuity, disc_seq, start_ts) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) {} RETURNING {LIVE_COLUMNS}",
        replacing_old(d)
    );
    let segment: LiveSegment = sqlx::query_as(AssertSqlSafe(sql))
        .bind(seg.source)
        .bind(media_seq)
        .bind(&seg.name)
        .bind(seg.length_ms)
        .bind(discontinuity)
        .bind(disc_seq)
        .bind(seg.start_ts)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(admission(Some(segment)))
}

/// The discontinuity rule of `add_live_segment`: PostgreSQL applies it in SQL (this is its specification), SQLite
/// through this function. Whether a segment starting at `next` leaves more than `gap` after (or overlaps by more
/// than `gap`) the one that started at `start` and lasted `length_ms`. Checked throughout: stored times come from
/// edges, and no value may make this panic (a time that cannot be computed counts as a gap).
fn is_gap(start: DateTime<Utc>, length_ms: i64, next: DateTime<Utc>, gap: Duration) -> bool {
    use chrono::TimeDelta;
    let Some(end) = TimeDelta::try_milliseconds(length_ms).and_then(|length| start.checked_add_signed(length)) else {
        return true;
    };
    let gap = TimeDelta::from_std(gap).unwrap_or(TimeDelta::MAX);
    next.signed_duration_since(end).abs() > gap
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    #[test]
    fn gaps_are_judged_without_panicking_on_any_time() {
        let start = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let gap = Duration::from_secs(2);
        let after = |ms| start + TimeDelta::milliseconds(ms);
        assert!(!is_gap(start, 1000, after(1000), gap));
        assert!(!is_gap(start, 1000, after(2900), gap));
        assert!(is_gap(start, 1000, after(3100), gap));
        assert!(is_gap(start, 1000, after(-1500), gap), "a jump back is a gap too");
        assert!(is_gap(DateTime::<Utc>::MAX_UTC, i64::MAX, start, gap));
        assert!(is_gap(start, i64::MIN, DateTime::<Utc>::MIN_UTC, Duration::MAX));
        assert!(is_gap(DateTime::<Utc>::MIN_UTC, 0, DateTime::<Utc>::MAX_UTC, gap));
    }
}
