//! Reads of the live index that decide what is public: whether a source streams and already lists a name
//! before a forwarded segment's bytes reach the shared cache, and whether a requested name is listed before the
//! VOD API serves it.

use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::{Db, DbResult, RETRY_WINDOW, not_found};

/// A source's state as a forwarded segment finds it, before anything is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveGate {
    pub source_name: String,
    pub streaming: bool,
    /// The name is listed already and was received within the retry window: this is the edge's retry of a
    /// segment whose bytes are stored (they are not replaced).
    pub retried: bool,
}

impl Db {
    /// Whether `source` streams and lists `name` as a recent segment. 404 for an unknown source.
    pub async fn live_gate(&self, source: Uuid, name: &str) -> DbResult<LiveGate> {
        let row: Option<(String, bool, bool)> = on_pool!(self, |pool, d| {
            let sql = format!(
                "SELECT s.name, s.streaming, EXISTS (SELECT 1 FROM live_segments l WHERE l.source = s.id \
                     AND l.name = $2 AND {} > {} - $3) \
                 FROM sources s WHERE s.id = $1",
                d.secs("l.received_at"),
                d.secs(d.now())
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
