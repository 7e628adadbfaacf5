//! The PostgreSQL implementation of [`super::Db`]: the production database, shared by every control replica.
//!
//! Replicas serialise through row locks and single statements, so any number can write at once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use livemix_common::{
    management_api::NewSource,
    model::{Recording, Segment, SegmentInfo, Source},
};
// Dynamic SQL here only ever interpolates this module's column-list constants, never input.
use sqlx::{AssertSqlSafe, PgPool, postgres::PgPoolOptions};
use uuid::Uuid;

use super::{
    DbError, DbResult, LiveAdmission, LiveSegment, LiveSummary, NewLiveSegment, RETRY_WINDOW, SegmentRef,
    is_unique_violation, name_conflict, name_taken, not_found,
};

/// The columns of a source plus its reachability, judged by the database clock; `$1` is the staleness delay in
/// seconds.
const SOURCE_COLUMNS: &str = "id, name, segment_length, description, streaming, rr_target, local_time, \
    last_seen, COALESCE(last_seen > now() - make_interval(secs => $1), false) AS reachable, owner, \
    retention_max_age_secs, retention_max_bytes, created_at, updated_at, \
    (SELECT edge_id FROM source_edges se WHERE se.source = sources.id) AS edge";

const RECORDING_COLUMNS: &str =
    "id, alias, description, source, start_ts, end_ts, active, hold, source_name, created_at, updated_at";

const SEGMENT_COLUMNS: &str =
    "s.id, s.name, s.source, s.run, s.seq, s.discontinuity, s.start_ts, s.end_ts, s.length_ms, s.size, s.uri";

/// The playback order of recorded segments, as a list of expressions over the segments table aliased `t`:
/// segments from before segment ids (no run) first, in time order as they always played; then encoder runs in
/// the order the edge drew them (ULIDs sort by the edge's clock, compared bytewise), each run in sequence
/// order. The row id makes the order total.
fn playback_order(t: &str) -> String {
    format!(
        "COALESCE({t}.run, '') COLLATE \"C\", \
         CASE WHEN {t}.run IS NULL THEN {t}.start_ts ELSE '-infinity'::timestamptz END, \
         {t}.seq, {t}.start_ts, {t}.id"
    )
}

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

#[derive(Clone)]
pub struct PgDb {
    pool: PgPool,
    reachable_secs: f64,
}

impl PgDb {
    /// Connects and applies the migrations under `control/migrations/`.
    pub async fn connect(url: &str, max_connections: u32, reachable_within: Duration) -> DbResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self::from_pool(pool, reachable_within))
    }

    /// A handle on a pool the caller built (e.g. one that connects lazily, for tests of what is decided
    /// before the database). Migrations are not applied.
    pub fn from_pool(pool: PgPool, reachable_within: Duration) -> Self {
        Self { pool, reachable_secs: reachable_within.as_secs_f64() }
    }

    /// The pool, for tests that read the catalog.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn ping(&self) -> DbResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The live segments of `source` received within `window` (capped at `playlist_len`, as the live playlist
    /// is) and when the newest of all arrived.
    pub async fn live_summary(&self, source: Uuid, playlist_len: i64, window: Duration) -> DbResult<LiveSummary> {
        let (recent, last_segment_at): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE received_at > now() - make_interval(secs => $2)), max(received_at) \
             FROM live_segments WHERE source = $1",
        )
        .bind(source)
        .bind(window.as_secs_f64())
        .fetch_one(&self.pool)
        .await?;
        Ok(LiveSummary { segments: recent.min(playlist_len), last_segment_at })
    }

    // ---- sources ----

    pub async fn create_source(&self, new: &NewSource) -> DbResult<Source> {
        let sql = format!(
            "INSERT INTO sources (id, name, segment_length, description, owner, retention_max_age_secs, \
                 retention_max_bytes) VALUES ($2, $3, $4, $5, $6, $7, $8) \
             RETURNING {SOURCE_COLUMNS}"
        );
        let retention = new.retention.unwrap_or_default();
        sqlx::query_as::<_, Source>(AssertSqlSafe(sql))
            .bind(self.reachable_secs)
            .bind(Uuid::new_v4())
            .bind(&new.name)
            .bind(new.segment_len)
            .bind(new.description.as_deref().unwrap_or_default())
            .bind(new.owner.as_deref())
            .bind(retention.max_age_secs)
            .bind(retention.max_bytes)
            .fetch_one(&self.pool)
            .await
            .map_err(|err| name_conflict(err, &new.name))
    }

    pub async fn list_sources(&self, name: Option<&str>) -> DbResult<Vec<Source>> {
        let sql = format!("SELECT {SOURCE_COLUMNS} FROM sources WHERE ($2::text IS NULL OR name = $2) ORDER BY name");
        Ok(sqlx::query_as::<_, Source>(AssertSqlSafe(sql))
            .bind(self.reachable_secs)
            .bind(name)
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn get_source(&self, id: Uuid) -> DbResult<Source> {
        let sql = format!("SELECT {SOURCE_COLUMNS} FROM sources WHERE id = $2");
        sqlx::query_as::<_, Source>(AssertSqlSafe(sql))
            .bind(self.reachable_secs)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found("source", id))
    }

    /// Sets one column; `column` is always a literal of this module, never input.
    async fn update_source<T>(&self, id: Uuid, column: &str, value: T) -> DbResult<Source>
    where
        T: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + 'static,
    {
        let sql =
            format!("UPDATE sources SET {column} = $3, updated_at = now() WHERE id = $2 RETURNING {SOURCE_COLUMNS}");
        sqlx::query_as::<_, Source>(AssertSqlSafe(sql))
            .bind(self.reachable_secs)
            .bind(id)
            .bind(value)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found("source", id))
    }

    pub async fn rename_source(&self, id: Uuid, new_name: &str) -> DbResult<Source> {
        self.update_source(id, "name", new_name.to_owned()).await.map_err(|err| match err {
            DbError::Rejected { reason: "unique", .. } => name_taken(new_name),
            other => other,
        })
    }

    pub async fn set_description(&self, id: Uuid, description: &str) -> DbResult<Source> {
        self.update_source(id, "description", description.to_owned()).await
    }

    pub async fn set_streaming(&self, id: Uuid, streaming: bool) -> DbResult<Source> {
        self.update_source(id, "streaming", streaming).await
    }

    /// Records an edge's status report: which edge serves the source and that it is alive now.
    pub async fn record_status(
        &self,
        id: Uuid,
        rr_target: &str,
        local_time: Option<DateTime<Utc>>,
    ) -> DbResult<Source> {
        let sql = format!(
            "UPDATE sources SET rr_target = $3, local_time = $4, last_seen = now(), updated_at = now() \
             WHERE id = $2 RETURNING {SOURCE_COLUMNS}"
        );
        sqlx::query_as::<_, Source>(AssertSqlSafe(sql))
            .bind(self.reachable_secs)
            .bind(id)
            .bind(rr_target)
            .bind(local_time)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found("source", id))
    }

    // ---- recordings ----

    pub async fn create_recording(
        &self,
        source: Uuid,
        alias: Option<&str>,
        description: Option<&str>,
        start_ts: DateTime<Utc>,
    ) -> DbResult<Recording> {
        let sql = format!(
            "INSERT INTO recordings (id, alias, description, source, start_ts, source_name) \
             SELECT $1, $2, $3, $4, $5, name FROM sources WHERE id = $4 \
             RETURNING {RECORDING_COLUMNS}"
        );
        sqlx::query_as::<_, Recording>(AssertSqlSafe(sql))
            .bind(ulid::Ulid::new().to_string())
            .bind(alias)
            .bind(description)
            .bind(source)
            .bind(start_ts)
            .fetch_optional(&self.pool)
            .await
            .map_err(|err| {
                if is_unique_violation(&err) {
                    DbError::Conflict(format!("a recording with alias {:?} already exists", alias.unwrap_or("")))
                } else {
                    err.into()
                }
            })?
            .ok_or_else(|| not_found("source", source))
    }

    pub async fn list_recordings(&self, source: Option<Uuid>, only_active: bool) -> DbResult<Vec<Recording>> {
        let sql = format!(
            "SELECT {RECORDING_COLUMNS} FROM recordings WHERE ($1::uuid IS NULL OR source = $1) \
             AND (NOT $2 OR active) ORDER BY id"
        );
        Ok(sqlx::query_as::<_, Recording>(AssertSqlSafe(sql))
            .bind(source)
            .bind(only_active)
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn get_recording(&self, id: &str) -> DbResult<Recording> {
        let sql = format!("SELECT {RECORDING_COLUMNS} FROM recordings WHERE id = $1");
        sqlx::query_as::<_, Recording>(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found("recording", id))
    }

    /// Marks a recording stopped (idempotent: a stopped recording keeps its first end time).
    pub async fn stop_recording(&self, id: &str) -> DbResult<Recording> {
        let sql = format!(
            "UPDATE recordings SET active = false, end_ts = COALESCE(end_ts, now()), updated_at = now() \
             WHERE id = $1 RETURNING {RECORDING_COLUMNS}"
        );
        sqlx::query_as::<_, Recording>(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found("recording", id))
    }

    // ---- recorded segments ----

    /// Stores a recorded segment and links it to the recordings of its source among `recording_ids`; returns
    /// those recordings. The object key is the idempotency key: a report the bus delivers again finds the row
    /// it made the first time (and links it once), while a restarted encoder's segment, under a new key, gets a
    /// row of its own. `NotFound` when none of the recordings exists (deleted, or never made): nothing is kept.
    pub async fn add_recorded_segment(&self, recording_ids: &[String], info: &SegmentInfo) -> DbResult<Vec<String>> {
        let mut tx = self.pool.begin().await?;
        // On a repeat, keep the first report's row; an edge from before segment ids rewrote the object under the
        // same key, so its size follows the bytes as it always did.
        let segment_id: i64 = sqlx::query_scalar(
            "INSERT INTO segments (source, name, run, seq, discontinuity, start_ts, end_ts, length_ms, size, uri) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (source, uri) DO UPDATE \
             SET size = CASE WHEN segments.run IS NULL THEN EXCLUDED.size ELSE segments.size END \
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
        .fetch_one(&mut *tx)
        .await?;
        let recordings: Vec<String> = sqlx::query_scalar(
            "WITH wanted AS (SELECT id FROM recordings WHERE id = ANY($1) AND source = $3), \
             linked AS (INSERT INTO recording_segments (recording, segment) SELECT id, $2 FROM wanted \
                        ON CONFLICT DO NOTHING) \
             SELECT id FROM wanted ORDER BY id",
        )
        .bind(recording_ids)
        .bind(segment_id)
        .bind(info.source)
        .fetch_all(&mut *tx)
        .await?;
        if recordings.is_empty() {
            // Dropping the transaction rolls the segment row back.
            return Err(not_found("recording", recording_ids.join(",")));
        }
        // A report delivered again after the object's last recording was deleted brings the segment back to a
        // recording that still wants it: its deletion, if not yet carried out, must not happen.
        sqlx::query("DELETE FROM object_deletions WHERE key = $1").bind(&info.uri).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(recordings)
    }

    /// The segments of a recording in playback order.
    pub async fn recording_segments(&self, recording: &str) -> DbResult<Vec<Segment>> {
        let order = playback_order("s");
        let sql = format!(
            "SELECT {SEGMENT_COLUMNS} FROM segments s JOIN recording_segments rs ON rs.segment = s.id \
             WHERE rs.recording = $1 ORDER BY {order}"
        );
        Ok(sqlx::query_as::<_, Segment>(AssertSqlSafe(sql)).bind(recording).fetch_all(&self.pool).await?)
    }

    /// The segment `wanted` of a recording followed by up to `following` next ones in playback order (empty
    /// when the recording has no such segment). A player asks for every segment, so this must not load them all.
    pub async fn recording_segment_and_next(
        &self,
        recording: &str,
        wanted: SegmentRef<'_>,
        following: i64,
    ) -> DbResult<Vec<Segment>> {
        let (order, order_t) = (playback_order("s"), playback_order("t"));
        let sql = format!(
            "SELECT {SEGMENT_COLUMNS} FROM segments s JOIN recording_segments rs ON rs.segment = s.id \
             WHERE rs.recording = $1 AND ({order}) >= ( \
                 SELECT {order_t} FROM segments t JOIN recording_segments rt ON rt.segment = t.id \
                 WHERE rt.recording = $1 \
                   AND (($2::text IS NULL AND t.run IS NULL AND t.name = $3) OR (t.run = $2 AND t.seq = $4)) \
                 ORDER BY {order_t} LIMIT 1) \
             ORDER BY {order} LIMIT $5"
        );
        let (run, name, seq) = match wanted {
            SegmentRef::Legacy(name) => (None, name, 0),
            SegmentRef::Run { run, seq } => (Some(run.to_string()), "", seq),
        };
        Ok(sqlx::query_as::<_, Segment>(AssertSqlSafe(sql))
            .bind(recording)
            .bind(run)
            .bind(name)
            .bind(seq)
            .bind(following.saturating_add(1))
            .fetch_all(&self.pool)
            .await?)
    }

    // ---- live segments ----

    /// Indexes a live segment in one round trip, giving it the source's next media sequence number, when the
    /// source exists and streams. A segment already indexed (an edge retry) keeps its number; a name seen long ago
    /// is an encoder that restarted and reuses names (ffmpeg starts again at index0.ts), so the old entry makes
    /// way for the new segment. `gap` marks a discontinuity when the previous segment ended long before this one
    /// started. `NotFound` for an unknown source.
    ///
    /// One statement: the `UPDATE` of the source row hands out the numbers (its row lock serialises replicas
    /// numbering the same source) and only runs when the segment is new and the source streams.
    pub async fn add_live_segment(&self, seg: &NewLiveSegment, gap: Duration) -> DbResult<LiveAdmission> {
        let row = sqlx::query_as::<_, LiveAdmissionRow>(
            "WITH src AS (SELECT name, streaming, segment_length FROM sources WHERE id = $1), \
             retry AS ( \
                 SELECT media_seq, name, length_ms, discontinuity, disc_seq FROM live_segments \
                 WHERE source = $1 AND name = $2 AND received_at > now() - make_interval(secs => $6)), \
             previous AS ( \
                 SELECT start_ts, length_ms FROM live_segments WHERE source = $1 AND name <> $2 \
                 ORDER BY media_seq DESC LIMIT 1), \
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
                 ON CONFLICT (source, name) DO UPDATE SET media_seq = EXCLUDED.media_seq, \
                     length_ms = EXCLUDED.length_ms, discontinuity = EXCLUDED.discontinuity, \
                     disc_seq = EXCLUDED.disc_seq, start_ts = EXCLUDED.start_ts, received_at = now() \
                 WHERE live_segments.received_at <= now() - make_interval(secs => $6) \
                 RETURNING media_seq, name, length_ms, discontinuity, disc_seq) \
             SELECT s.name AS source_name, s.streaming, s.segment_length, \
                 l.media_seq, l.name, l.length_ms, l.discontinuity, l.disc_seq \
             FROM src s LEFT JOIN (SELECT * FROM inserted UNION ALL SELECT * FROM retry) l ON true",
        )
        .bind(seg.source)
        .bind(&seg.name)
        .bind(seg.length_ms)
        .bind(seg.start_ts)
        .bind(seg.discontinuity)
        .bind(RETRY_WINDOW.as_secs_f64())
        .bind(gap.as_secs_f64())
        .fetch_optional(&self.pool)
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

    /// The segment length (seconds) sources are registered with, which never changes.
    pub async fn segment_length(&self, source: Uuid) -> DbResult<i32> {
        sqlx::query_scalar("SELECT segment_length FROM sources WHERE id = $1")
            .bind(source)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found("source", source))
    }

    /// The newest `count` live segments received within `max_age`, oldest first.
    pub async fn newest_live_segments(
        &self,
        source: Uuid,
        count: i64,
        max_age: Duration,
    ) -> DbResult<Vec<LiveSegment>> {
        let mut rows = sqlx::query_as::<_, LiveSegment>(
            "SELECT media_seq, name, length_ms, discontinuity, disc_seq FROM live_segments \
             WHERE source = $1 AND received_at > now() - make_interval(secs => $3) \
             ORDER BY media_seq DESC LIMIT $2",
        )
        .bind(source)
        .bind(count)
        .bind(max_age.as_secs_f64())
        .fetch_all(&self.pool)
        .await?;
        rows.reverse();
        Ok(rows)
    }

    /// Drops live index rows older than `max_age`; their bytes have expired from the cache anyway.
    pub async fn prune_live_segments(&self, max_age: Duration) -> DbResult<u64> {
        let done = sqlx::query("DELETE FROM live_segments WHERE received_at < now() - make_interval(secs => $1)")
            .bind(max_age.as_secs_f64())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
