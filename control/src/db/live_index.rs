//! The live index (table `live_segments`, numbered through `sources.live_media_seq`): the segments an edge
//! forwarded that the live playlist lists, and the reads that decide what is public: whether a source streams
//! and already lists a segment before a forwarded segment's bytes reach the shared cache, and whether a
//! requested name is listed before the VOD API serves it.
//!
//! A forwarded segment is its edge's [`SegmentRecord`](livemix_common::segment::SegmentRecord): it is the same
//! segment as an entry of the same (source, run, seq), whenever that was received, and it follows a
//! discontinuity when the edge says so; the index decides neither. LEGACY, to delete once no edge predates
//! `Segment-Run` ([`NewSegment::Legacy`]): a forward without a run is the same segment as an entry of the same
//! name received within [`RETRY_WINDOW`], and follows a discontinuity also when its times leave a gap from the
//! previous entry ([`is_gap`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use livemix_common::segment::NewSegment;
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
    /// The segment is listed already (see [`Key`]): this is the edge's retry of a segment whose bytes are stored
    /// (they are not replaced).
    pub retried: bool,
}

/// The columns of a [`LiveSegment`].
const LIVE_COLUMNS: &str = "media_seq, name, length_ms, discontinuity, disc_seq";

/// What makes an entry of `live_segments` the segment an edge forwards again (its retry), in the parameters
/// `$2` and `$3` of every statement that looks for it (the source is `$1`).
#[derive(Debug, Clone, PartialEq)]
enum Key<'a> {
    /// The edge's identity of the segment: the same (source, run, seq), whenever it was received.
    Run { run: String, seq: i64 },
    /// LEGACY (a forward without a run): the same name, received within the last `window` seconds.
    Name { name: &'a str, window: f64 },
}

impl<'a> Key<'a> {
    fn of(seg: &'a NewSegment) -> Self {
        match seg {
            NewSegment::Record(record) => Key::Run {
                run: record.id.run.to_string(),
                // Checked when the headers were decoded: a sequence number fits.
                seq: i64::try_from(record.id.seq).unwrap_or(i64::MAX),
            },
            NewSegment::Legacy(legacy) => Key::Name { name: &legacy.name, window: RETRY_WINDOW.as_secs_f64() },
        }
    }

    /// The condition on the columns of `live_segments` (as `table`) that find the segment.
    fn matches(&self, d: Dialect, table: &str) -> String {
        match self {
            Key::Run { .. } => format!("{table}.run = $2 AND {table}.seq = $3"),
            Key::Name { .. } => format!("{table}.name = $2 AND {}", d.ago(&format!("{table}.received_at"), ">", "$3")),
        }
    }

    /// The entry an old one of the same name must be for the new segment to take its place (PostgreSQL's
    /// `ON CONFLICT ... WHERE`; SQLite found no retry before it inserts): another segment, or (LEGACY) one
    /// received before the retry window.
    fn replaceable(&self, d: Dialect) -> String {
        match self {
            Key::Run { .. } => "live_segments.run IS DISTINCT FROM excluded.run \
                OR live_segments.seq IS DISTINCT FROM excluded.seq"
                .to_owned(),
            Key::Name { .. } => d.ago("live_segments.received_at", "<=", "$3"),
        }
    }

    /// The `run` and `seq` values an insert stores: the key's own parameters, or none (LEGACY).
    fn stored(&self) -> &'static str {
        match self {
            Key::Run { .. } => "$2, $3",
            Key::Name { .. } => "CAST(NULL AS TEXT), CAST(NULL AS BIGINT)",
        }
    }
}

/// Binds a [`Key`]'s two parameters (`$2`, `$3`) to a query.
macro_rules! bind_key {
    ($query:expr, $key:expr) => {
        match $key {
            Key::Run { run, seq } => $query.bind(run.clone()).bind(*seq),
            Key::Name { name, window } => $query.bind(*name).bind(*window),
        }
    };
}

/// The entry of source `$1` that is the segment `key` finds: the edge's retry.
fn retried(d: Dialect, key: &Key) -> String {
    format!("SELECT {LIVE_COLUMNS} FROM live_segments WHERE source = $1 AND {}", key.matches(d, "live_segments"))
}

/// LEGACY: the newest other segment of source `$1` (not named `$2`), whose end the new one should start at.
const PREVIOUS: &str = "SELECT start_ts, length_ms FROM live_segments WHERE source = $1 AND name <> $2 \
    ORDER BY media_seq DESC LIMIT 1";

/// Where an insert into `live_segments` meets an old entry of the same name (an encoder that restarted and
/// reuses names), the new segment takes its place.
fn replacing_old(d: Dialect) -> String {
    format!(
        "ON CONFLICT (source, name) DO UPDATE SET media_seq = excluded.media_seq, \
             length_ms = excluded.length_ms, discontinuity = excluded.discontinuity, \
             disc_seq = excluded.disc_seq, start_ts = excluded.start_ts, run = excluded.run, seq = excluded.seq, \
             received_at = {}",
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
    /// streams; atomic against every other writer. A segment already indexed (an edge retry, see [`Key`]) keeps
    /// its number; another segment under a listed name is an encoder that restarted and reuses names (ffmpeg
    /// starts again at index0.ts), so the old entry makes way for the new segment. The segment follows a
    /// discontinuity when its edge says so. LEGACY (a forward without a run): also when the previous segment
    /// ended more than `gap` before this one started (or after). `NotFound` for an unknown source.
    ///
    /// The one query written per database: PostgreSQL does it all in one statement (every live segment of every
    /// source comes this way, and its replicas serialise on the source row that statement locks), which needs
    /// data-modifying `WITH` clauses SQLite does not have; SQLite takes the same steps in a write transaction,
    /// whose lock serialises numbering as the row lock does. Both share the steps' SQL.
    pub async fn add_live_segment(&self, seg: &NewSegment, gap: Duration) -> DbResult<LiveAdmission> {
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

    /// Whether the segment's source streams and lists it already (see [`Key`]). 404 for an unknown source.
    pub async fn live_gate(&self, seg: &NewSegment) -> DbResult<LiveGate> {
        let (source, key) = (seg.source(), Key::of(seg));
        let row: Option<(String, bool, bool)> = on_pool!(self, |pool, d| {
            let sql = format!(
                "SELECT s.name, s.streaming, EXISTS (SELECT 1 FROM live_segments l WHERE l.source = s.id AND {}) \
                 FROM sources s WHERE s.id = $1",
                key.matches(d, "l")
            );
            let query = sqlx::query_as(AssertSqlSafe(sql)).bind(source);
            bind_key!(query, &key).fetch_optional(pool).await?
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
/// and the source streams. The edge's flag is the discontinuity; LEGACY: [`is_gap`]'s rule is added, in SQL.
async fn add_in_one_statement(pool: &sqlx::PgPool, seg: &NewSegment, gap: Duration) -> DbResult<LiveAdmission> {
    let d = Dialect::Postgres;
    let key = Key::of(seg);
    // $1 source, $2 and $3 the key, $4 name, $5 length, $6 start, $7 the edge's flag; LEGACY: $8 the gap.
    let flag = match key {
        Key::Run { .. } => "SELECT $7::boolean AS discontinuity".to_owned(),
        Key::Name { .. } => format!(
            "SELECT $7::boolean OR COALESCE((SELECT abs(extract(epoch FROM \
                 $6::timestamptz - (p.start_ts + p.length_ms * interval '1 millisecond'))) > $8 \
                 FROM ({PREVIOUS}) p), false) AS discontinuity"
        ),
    };
    let sql = format!(
        "WITH src AS (SELECT name, streaming, segment_length FROM sources WHERE id = $1), \
         retry AS ({retry}), \
         flag AS ({flag}), \
         numbered AS ( \
             UPDATE sources SET live_media_seq = live_media_seq + 1, \
                 live_disc_seq = live_disc_seq + CASE WHEN (SELECT discontinuity FROM flag) THEN 1 ELSE 0 END \
             WHERE id = $1 AND streaming AND NOT EXISTS (SELECT 1 FROM retry) \
             RETURNING live_media_seq, live_disc_seq), \
         inserted AS ( \
             INSERT INTO live_segments \
                 (source, media_seq, name, length_ms, discontinuity, disc_seq, start_ts, run, seq) \
             SELECT $1, n.live_media_seq, $4, $5, f.discontinuity, n.live_disc_seq, $6, {stored} \
             FROM numbered n, flag f \
             {replace} WHERE {replaceable} \
             RETURNING {LIVE_COLUMNS}) \
         SELECT s.name AS source_name, s.streaming, s.segment_length, \
             l.media_seq, l.name, l.length_ms, l.discontinuity, l.disc_seq \
         FROM src s LEFT JOIN (SELECT * FROM inserted UNION ALL SELECT * FROM retry) l ON true",
        retry = retried(d, &key),
        stored = key.stored(),
        replace = replacing_old(d),
        replaceable = key.replaceable(d),
    );
    let query = bind_key!(sqlx::query_as::<_, LiveAdmissionRow>(AssertSqlSafe(sql)).bind(seg.source()), &key)
        .bind(seg.name())
        .bind(seg.length_ms())
        .bind(seg.start_ts())
        .bind(seg.discontinuity());
    let query = match key {
        Key::Run { .. } => query,
        Key::Name { .. } => query.bind(gap.as_secs_f64()),
    };
    let row = query.fetch_optional(pool).await?.ok_or_else(|| not_found("source", seg.source()))?;
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
    seg: &NewSegment,
    gap: Duration,
) -> DbResult<LiveAdmission> {
    let d = Dialect::Sqlite;
    let (source, key) = (seg.source(), Key::of(seg));
    let (source_name, streaming, segment_length): (String, bool, i32) =
        sqlx::query_as("SELECT name, streaming, segment_length FROM sources WHERE id = $1")
            .bind(source)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| not_found("source", source))?;
    let admission = |segment| LiveAdmission { source_name, streaming, segment_length, segment };
    let retry: Option<LiveSegment> =
        bind_key!(sqlx::query_as(AssertSqlSafe(retried(d, &key))).bind(source), &key).fetch_optional(&mut *tx).await?;
    if retry.is_some() || !streaming {
        // Nothing written: dropping the transaction ends it.
        return Ok(admission(retry));
    }
    let discontinuity = match &key {
        Key::Run { .. } => seg.discontinuity(),
        Key::Name { name, .. } => {
            let previous: Option<(DateTime<Utc>, i64)> =
                sqlx::query_as(PREVIOUS).bind(source).bind(*name).fetch_optional(&mut *tx).await?;
            seg.discontinuity() || previous.is_some_and(|(start, length)| is_gap(start, length, seg.start_ts(), gap))
        }
    };
    let (media_seq, disc_seq): (i64, i64) = sqlx::query_as(
        "UPDATE sources SET live_media_seq = live_media_seq + 1, live_disc_seq = live_disc_seq + $2 \
         WHERE id = $1 RETURNING live_media_seq, live_disc_seq",
    )
    .bind(source)
    .bind(i64::from(discontinuity))
    .fetch_one(&mut *tx)
    .await?;
    // No retry was found, so a row of the same name is another segment: an encoder that restarted and reuses
    // names.
    let sql = format!(
        "INSERT INTO live_segments (source, media_seq, name, length_ms, discontinuity, disc_seq, start_ts, run, seq) \
         SELECT $1, $4, $5, $6, $7, $8, $9, {} WHERE true {} RETURNING {LIVE_COLUMNS}",
        key.stored(),
        replacing_old(d)
    );
    let insert = bind_key!(sqlx::query_as(AssertSqlSafe(sql)).bind(source), &key);
    let segment: LiveSegment = insert
        .bind(media_seq)
        .bind(seg.name())
        .bind(seg.length_ms())
        .bind(discontinuity)
        .bind(disc_seq)
        .bind(seg.start_ts())
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(admission(Some(segment)))
}

/// LEGACY: the discontinuity rule of `add_live_segment` for forwards without a run (the edges that send one
/// apply it themselves, `edge/src/identity.rs`): PostgreSQL applies it in SQL (this is its specification), SQLite
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
