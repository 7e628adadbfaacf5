//! Sources (table `sources`): registration, lookups, the settings an admin changes and the status edges report.

use chrono::{DateTime, Utc};
use livemix_common::{
    management_api::NewSource,
    model::{RecordingMode, Source},
};
// Dynamic SQL here only ever interpolates this module's constants, column literals and dialect fragments, never
// input.
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::{Db, DbError, DbResult, dialect::Dialect, name_conflict, name_taken, not_found};

/// The columns of a source plus its reachability, judged by the database clock; `$1` is the staleness delay in
/// seconds, `edge` the edge it is bound to (see [`super::bindings`]).
fn source_columns(d: Dialect) -> String {
    format!(
        "id, name, segment_length, description, streaming, rr_target, local_time, last_seen, \
         COALESCE({}, false) AS reachable, owner, retention_max_age_secs, retention_max_bytes, recording_mode, \
         created_at, updated_at, (SELECT edge_id FROM source_edges se WHERE se.source = sources.id) AS edge",
        d.ago("last_seen", ">", "$1")
    )
}

impl Db {
    /// Registers a source, bound to its edge when `new.edge` names one; `segment_len`, name, description and
    /// edge id are validated by the caller.
    pub async fn create_source(&self, new: &NewSource) -> DbResult<Source> {
        let retention = new.retention.unwrap_or_default();
        let reachable = self.reachable_secs();
        let mut source: Source = on_pool!(self, |pool, d| {
            let sql = format!(
                "INSERT INTO sources (id, name, segment_length, description, owner, retention_max_age_secs, \
                     retention_max_bytes, recording_mode) VALUES ($2, $3, $4, $5, $6, $7, $8, $9) \
                 RETURNING {}",
                source_columns(d)
            );
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(reachable)
                .bind(Uuid::new_v4())
                .bind(&new.name)
                .bind(new.segment_len)
                .bind(new.description.as_deref().unwrap_or_default())
                .bind(new.owner.as_deref())
                .bind(retention.max_age_secs)
                .bind(retention.max_bytes)
                .bind(new.recording.unwrap_or_default().as_str())
                .fetch_one(pool)
                .await
                .map_err(|err| name_conflict(err, &new.name))?
        });
        if let Some(edge) = &new.edge {
            if let Err(err) = self.bind_source(source.id, edge).await {
                // Not half-registered: the caller retries the whole registration, which the name would refuse.
                if let Err(undo) = self.delete_source(source.id, None).await {
                    tracing::error!(id = %source.id, %undo, "removing a source whose edge binding failed");
                }
                return Err(err);
            }
            source.edge = Some(edge.clone());
        }
        Ok(source)
    }

    /// Every source, or the one named `name`, by name.
    pub async fn list_sources(&self, name: Option<&str>) -> DbResult<Vec<Source>> {
        let reachable = self.reachable_secs();
        Ok(on_pool!(self, |pool, d| {
            // sqlx tells PostgreSQL each parameter's type, so `$2 IS NULL` needs no cast.
            let sql =
                format!("SELECT {} FROM sources WHERE ($2 IS NULL OR name = $2) ORDER BY name", source_columns(d));
            sqlx::query_as(AssertSqlSafe(sql)).bind(reachable).bind(name).fetch_all(pool).await?
        }))
    }

    pub async fn get_source(&self, id: Uuid) -> DbResult<Source> {
        let reachable = self.reachable_secs();
        let source: Option<Source> = on_pool!(self, |pool, d| {
            let sql = format!("SELECT {} FROM sources WHERE id = $2", source_columns(d));
            sqlx::query_as(AssertSqlSafe(sql)).bind(reachable).bind(id).fetch_optional(pool).await?
        });
        source.ok_or_else(|| not_found("source", id))
    }

    /// Sets one column; `column` is always a literal of this module, never input.
    async fn update_source<T>(&self, id: Uuid, column: &str, value: T) -> DbResult<Source>
    where
        T: for<'q> sqlx::Encode<'q, sqlx::Postgres>
            + sqlx::Type<sqlx::Postgres>
            + for<'q> sqlx::Encode<'q, sqlx::Sqlite>
            + sqlx::Type<sqlx::Sqlite>
            + Send
            + 'static,
    {
        let reachable = self.reachable_secs();
        let source: Option<Source> = on_pool!(self, |pool, d| {
            let sql = format!(
                "UPDATE sources SET {column} = $3, updated_at = {} WHERE id = $2 RETURNING {}",
                d.now(),
                source_columns(d)
            );
            sqlx::query_as(AssertSqlSafe(sql)).bind(reachable).bind(id).bind(value).fetch_optional(pool).await?
        });
        source.ok_or_else(|| not_found("source", id))
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

    pub async fn set_recording_mode(&self, id: Uuid, mode: RecordingMode) -> DbResult<Source> {
        self.update_source(id, "recording_mode", mode.as_str().to_owned()).await
    }

    /// Records an edge's status report: which edge serves the source and that it is alive now.
    pub async fn record_status(
        &self,
        id: Uuid,
        rr_target: &str,
        local_time: Option<DateTime<Utc>>,
    ) -> DbResult<Source> {
        let reachable = self.reachable_secs();
        let source: Option<Source> = on_pool!(self, |pool, d| {
            let sql = format!(
                "UPDATE sources SET rr_target = $3, local_time = $4, last_seen = {now}, updated_at = {now} \
                 WHERE id = $2 RETURNING {}",
                source_columns(d),
                now = d.now()
            );
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(reachable)
                .bind(id)
                .bind(rr_target)
                .bind(local_time)
                .fetch_optional(pool)
                .await?
        });
        source.ok_or_else(|| not_found("source", id))
    }

    /// The segment length (seconds) sources are registered with, which never changes.
    pub async fn segment_length(&self, source: Uuid) -> DbResult<i32> {
        let length: Option<i32> = on_pool!(self, |pool, _d| {
            sqlx::query_scalar("SELECT segment_length FROM sources WHERE id = $1")
                .bind(source)
                .fetch_optional(pool)
                .await?
        });
        length.ok_or_else(|| not_found("source", source))
    }
}
