//! Recordings (table `recordings`): made, listed and stopped. Their segments are in [`super::segments`], their
//! deletion, hold and retention in [`super::lifecycle`].

use chrono::{DateTime, Utc};
use livemix_common::model::{Recording, VerificationSummary};
// Dynamic SQL here only ever interpolates this module's constants and dialect fragments, never input.
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::{Db, DbError, DbResult, is_unique_violation, not_found};

pub(super) const RECORDING_COLUMNS: &str = "id, alias, description, source, start_ts, end_ts, active, hold, \
     source_name, continuous, verification, created_at, updated_at";

impl Db {
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
        let id = ulid::Ulid::new().to_string();
        let made: Result<Option<Recording>, sqlx::Error> = on_pool!(self, |pool, _d| {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(id)
                .bind(alias)
                .bind(description)
                .bind(source)
                .bind(start_ts)
                .fetch_optional(pool)
                .await
        });
        made.map_err(|err| {
            if is_unique_violation(&err) {
                DbError::Conflict(format!("a recording with alias {:?} already exists", alias.unwrap_or("")))
            } else {
                err.into()
            }
        })?
        .ok_or_else(|| not_found("source", source))
    }

    /// The recordings of `source` (of every source when `None`), only the active ones with `only_active`, oldest
    /// first.
    pub async fn list_recordings(&self, source: Option<Uuid>, only_active: bool) -> DbResult<Vec<Recording>> {
        // sqlx tells PostgreSQL each parameter's type, so `$1 IS NULL` needs no cast.
        let sql = format!(
            "SELECT {RECORDING_COLUMNS} FROM recordings WHERE ($1 IS NULL OR source = $1) \
             AND (NOT $2 OR active) ORDER BY id"
        );
        Ok(on_pool!(self, |pool, _d| {
            sqlx::query_as(AssertSqlSafe(sql)).bind(source).bind(only_active).fetch_all(pool).await?
        }))
    }

    pub async fn get_recording(&self, id: &str) -> DbResult<Recording> {
        let sql = format!("SELECT {RECORDING_COLUMNS} FROM recordings WHERE id = $1");
        let recording: Option<Recording> =
            on_pool!(self, |pool, _d| sqlx::query_as(AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await?);
        recording.ok_or_else(|| not_found("recording", id))
    }

    /// The active continuous recording of `source`, made now if it has none (one per source, whichever replica
    /// asks: a unique index decides a race). `NotFound` for an unknown source.
    pub async fn continuous_recording(&self, source: Uuid) -> DbResult<Recording> {
        let active = format!("SELECT {RECORDING_COLUMNS} FROM recordings WHERE source = $1 AND continuous AND active");
        let insert = format!(
            "INSERT INTO recordings (id, description, source, start_ts, source_name, continuous) \
             SELECT $2, 'continuous recording', id, $3, name, true FROM sources WHERE id = $1 \
             ON CONFLICT DO NOTHING RETURNING {RECORDING_COLUMNS}"
        );
        for _ in 0..2 {
            let found: Option<Recording> = on_pool!(self, |pool, _d| {
                sqlx::query_as(AssertSqlSafe(active.clone())).bind(source).fetch_optional(pool).await?
            });
            if let Some(recording) = found {
                return Ok(recording);
            }
            let made: Option<Recording> = on_pool!(self, |pool, _d| {
                sqlx::query_as(AssertSqlSafe(insert.clone()))
                    .bind(source)
                    .bind(ulid::Ulid::new().to_string())
                    .bind(Utc::now())
                    .fetch_optional(pool)
                    .await?
            });
            if let Some(recording) = made {
                return Ok(recording);
            }
            // Either the source is unknown or another replica made it meanwhile: the next look tells.
            self.get_source(source).await?;
        }
        Err(DbError::Conflict(format!("source {source}'s continuous recording keeps changing; try again")))
    }

    /// Stops the active continuous recording of `source`, if any; returns it.
    pub async fn stop_continuous_recording(&self, source: Uuid) -> DbResult<Option<Recording>> {
        Ok(on_pool!(self, |pool, d| {
            let sql = format!(
                "UPDATE recordings SET active = false, end_ts = COALESCE(end_ts, {now}), updated_at = {now} \
                 WHERE source = $1 AND continuous AND active RETURNING {RECORDING_COLUMNS}",
                now = d.now()
            );
            sqlx::query_as(AssertSqlSafe(sql)).bind(source).fetch_optional(pool).await?
        }))
    }

    /// Keeps the outcome of a verification with the recording.
    pub async fn record_verification(&self, id: &str, summary: &VerificationSummary) -> DbResult<()> {
        let summary = sqlx::types::Json(summary);
        let updated = on_pool!(self, |pool, _d| {
            sqlx::query("UPDATE recordings SET verification = $2 WHERE id = $1")
                .bind(id)
                .bind(summary)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if updated == 0 {
            return Err(not_found("recording", id));
        }
        Ok(())
    }

    /// Marks a recording stopped (idempotent: a stopped recording keeps its first end time).
    pub async fn stop_recording(&self, id: &str) -> DbResult<Recording> {
        let recording: Option<Recording> = on_pool!(self, |pool, d| {
            let sql = format!(
                "UPDATE recordings SET active = false, end_ts = COALESCE(end_ts, {now}), updated_at = {now} \
                 WHERE id = $1 RETURNING {RECORDING_COLUMNS}",
                now = d.now()
            );
            sqlx::query_as(AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await?
        });
        recording.ok_or_else(|| not_found("recording", id))
    }
}
