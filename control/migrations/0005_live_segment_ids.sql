-- Live segments are identified as their edge identifies them: (source, run, seq), decided once at the edge
-- and sent in `Segment-Run` and `Segment-Seq` (see common/src/segment.rs). A forward that finds an entry of the
-- same three is the edge's retry, however late; the edge's discontinuity flag is taken as it is.
--
-- Both columns stay NULL for segments forwarded without a run (LEGACY: edges that predate `Segment-Run`, whose
-- retries are still recognised by name within a minute); NULLs never collide in the unique index.
ALTER TABLE live_segments
    -- The encoder run (a ULID).
    ADD COLUMN run TEXT NULL,
    -- The sequence number within the run.
    ADD COLUMN seq BIGINT NULL;

CREATE UNIQUE INDEX live_segments_run_seq ON live_segments (source, run, seq);
