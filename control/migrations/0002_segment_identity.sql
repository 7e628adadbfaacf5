-- Segment identity (source, encoder run, sequence number), decided once at the edge.
--
-- A segment's object key is derived from that identity, so the key is what makes a reported segment unique:
-- a restarted encoder's `index0.ts` (a new run, a new key) gets a row of its own and never reuses or replaces
-- an older recording's, and a report the bus delivers twice finds the same row.
ALTER TABLE segments
    -- The encoder run (a ULID, so runs sort by the edge's clock); NULL for segments reported before segment ids.
    ADD COLUMN run TEXT NULL,
    -- The edge saw a discontinuity before this segment (a new run, or #EXT-X-DISCONTINUITY).
    ADD COLUMN discontinuity BOOLEAN NOT NULL DEFAULT FALSE;

ALTER TABLE segments DROP CONSTRAINT segments_source_name_key;
ALTER TABLE segments ADD CONSTRAINT segments_source_uri_key UNIQUE (source, uri);
