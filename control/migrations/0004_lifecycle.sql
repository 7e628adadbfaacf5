-- Recordings with a lifecycle: kept when their source goes (unless deleted on purpose), deleted with their
-- objects, expired by retention, held for evidence, and every stored byte accounted for.

-- A recording outlives its source when the caller keeps it (DELETE /v1/source/{id}?recordings=retain): the
-- source id stays as history, the name is kept beside it.
ALTER TABLE recordings DROP CONSTRAINT recordings_source_fkey;
ALTER TABLE recordings
    ADD COLUMN hold BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN source_name TEXT;
UPDATE recordings r SET source_name = s.name FROM sources s WHERE s.id = r.source;

-- Recorded segments belong to recordings (a row lives while a recording refers to it), not to the source row.
ALTER TABLE segments DROP CONSTRAINT segments_source_fkey;
CREATE INDEX segments_source_end ON segments (source, end_ts);
CREATE INDEX segments_uri ON segments (uri COLLATE "C");
CREATE INDEX recording_segments_segment ON recording_segments (segment);

-- Who manages a source (the operator: k8s/<namespace>/<name>/<uid>) and its own retention limits.
ALTER TABLE sources
    ADD COLUMN owner TEXT,
    ADD COLUMN retention_max_age_secs BIGINT CHECK (retention_max_age_secs > 0),
    ADD COLUMN retention_max_bytes BIGINT CHECK (retention_max_bytes > 0);

-- Bytes and segments indexed per source, kept by triggers so no code path can forget them; a storage cap is
-- checked against it on every new segment without summing the table.
CREATE TABLE storage_usage (
    source      UUID PRIMARY KEY,
    bytes       BIGINT NOT NULL DEFAULT 0,
    segments    BIGINT NOT NULL DEFAULT 0
);
INSERT INTO storage_usage (source, bytes, segments) SELECT source, sum(size), count(*) FROM segments GROUP BY source;

CREATE FUNCTION storage_usage_track() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO storage_usage (source, bytes, segments) VALUES (NEW.source, NEW.size, 1)
        ON CONFLICT (source) DO UPDATE
        SET bytes = storage_usage.bytes + EXCLUDED.bytes, segments = storage_usage.segments + 1;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE storage_usage SET bytes = bytes - OLD.size, segments = segments - 1 WHERE source = OLD.source;
    ELSIF NEW.size <> OLD.size THEN
        UPDATE storage_usage SET bytes = bytes + NEW.size - OLD.size WHERE source = NEW.source;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER segments_storage_usage AFTER INSERT OR DELETE OR UPDATE OF size ON segments
    FOR EACH ROW EXECUTE FUNCTION storage_usage_track();

-- Objects to delete from the store, recorded in the transaction that dropped their last reference and carried
-- out by the deletion worker (one replica at a time), retried with backoff until the store confirms.
CREATE TABLE object_deletions (
    key           TEXT PRIMARY KEY,
    source        UUID,
    size          BIGINT NOT NULL DEFAULT 0,
    -- user, source, retention, cap or orphan
    reason        TEXT NOT NULL,
    requested_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts      INTEGER NOT NULL DEFAULT 0,
    not_before    TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error    TEXT
);
CREATE INDEX object_deletions_due ON object_deletions (not_before);
