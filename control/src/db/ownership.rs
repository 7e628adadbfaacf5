//! Which edge owns a source (table `source_edges`).

use uuid::Uuid;

use super::{Db, DbResult};

impl Db {
    /// Binds `source` to `edge` unless it is bound already, and returns its owner: `edge` itself, another edge,
    /// or `None` when the source does not exist. One statement, so two edges racing for a source see one winner.
    pub async fn claim_source(&self, source: Uuid, edge: &str) -> DbResult<Option<String>> {
        let owner: Option<(String,)> = sqlx::query_as(
            "WITH claimed AS ( \
                 INSERT INTO source_edges (source, edge_id) SELECT id, $2 FROM sources WHERE id = $1 \
                 ON CONFLICT (source) DO NOTHING RETURNING edge_id) \
             SELECT edge_id FROM claimed UNION ALL SELECT edge_id FROM source_edges WHERE source = $1 LIMIT 1",
        )
        .bind(source)
        .bind(edge)
        .fetch_optional(&self.pool)
        .await?;
        Ok(owner.map(|(id,)| id))
    }

    /// The edge a source is bound to, if any.
    pub async fn source_owner(&self, source: Uuid) -> DbResult<Option<String>> {
        let owner: Option<(String,)> = sqlx::query_as("SELECT edge_id FROM source_edges WHERE source = $1")
            .bind(source)
            .fetch_optional(&self.pool)
            .await?;
        Ok(owner.map(|(id,)| id))
    }

    /// Unbinds a source (its edge moved): the next edge to report it owns it. `true` when it was bound.
    pub async fn release_source(&self, source: Uuid) -> DbResult<bool> {
        let done = sqlx::query("DELETE FROM source_edges WHERE source = $1").bind(source).execute(&self.pool).await?;
        Ok(done.rows_affected() > 0)
    }
}
