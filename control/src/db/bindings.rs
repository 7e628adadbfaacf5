//! Which edge serves a source (table `source_edges`): set when the source is registered or by an admin, never by
//! an edge's own report, so no edge credential can take over another edge's source.

use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::{Db, DbResult, not_found};

impl Db {
    /// Binds `source` to `edge`, replacing any earlier binding (the camera moved). 404 for an unknown source.
    pub async fn bind_source(&self, source: Uuid, edge: &str) -> DbResult<()> {
        let bound = on_pool!(self, |pool, d| {
            let sql = format!(
                "INSERT INTO source_edges (source, edge_id) SELECT id, $2 FROM sources WHERE id = $1 \
                 ON CONFLICT (source) DO UPDATE SET edge_id = excluded.edge_id, bound_at = {}",
                d.now()
            );
            sqlx::query(AssertSqlSafe(sql)).bind(source).bind(edge).execute(pool).await?.rows_affected()
        });
        if bound == 0 {
            return Err(not_found("source", source));
        }
        Ok(())
    }

    /// Binds every source bound to no edge to `edge` (a single-edge deployment upgrading from first-report
    /// binding); returns how many.
    pub async fn bind_unbound(&self, edge: &str) -> DbResult<u64> {
        let done = on_pool!(self, |pool, _d| {
            sqlx::query(
                "INSERT INTO source_edges (source, edge_id) SELECT id, $1 FROM sources s \
                 WHERE NOT EXISTS (SELECT 1 FROM source_edges e WHERE e.source = s.id)",
            )
            .bind(edge)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(done)
    }

    /// The edge a source is bound to, if any.
    pub async fn source_owner(&self, source: Uuid) -> DbResult<Option<String>> {
        Ok(on_pool!(self, |pool, _d| {
            sqlx::query_scalar("SELECT edge_id FROM source_edges WHERE source = $1")
                .bind(source)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Unbinds a source: until it is bound again, no per-edge credential may act for it. `true` when it was bound.
    pub async fn release_source(&self, source: Uuid) -> DbResult<bool> {
        let done = on_pool!(self, |pool, _d| {
            sqlx::query("DELETE FROM source_edges WHERE source = $1").bind(source).execute(pool).await?.rows_affected()
        });
        Ok(done > 0)
    }
}
