-- Which edge serves a source: bound by the first edge that reports it with per-edge credentials, so another
-- edge's token cannot report for it or forward its segments. Released by an admin (DELETE /v1/source/{id}/edge).
CREATE TABLE source_edges (
    source      UUID PRIMARY KEY REFERENCES sources (id) ON DELETE CASCADE,
    edge_id     TEXT NOT NULL,
    bound_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
