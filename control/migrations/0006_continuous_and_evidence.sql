-- Recording any moment and proving what was recorded.
--
-- A source records continuously or on demand; a continuous source has one open-ended recording the control node
-- keeps active (`recordings.continuous`), so its segments travel the same spool, keys and retention as any
-- recording's.
ALTER TABLE sources
    ADD COLUMN recording_mode TEXT NOT NULL DEFAULT 'on_demand'
        CHECK (recording_mode IN ('on_demand', 'continuous'));
ALTER TABLE recordings
    ADD COLUMN continuous BOOLEAN NOT NULL DEFAULT FALSE,
    -- The last verification's summary (`VerificationSummary` as JSON); NULL until one ran.
    ADD COLUMN verification JSONB NULL;
-- At most one active continuous recording per source, whichever replica switches the mode on.
CREATE UNIQUE INDEX recordings_one_continuous ON recordings (source) WHERE continuous AND active;

-- Each recorded segment's SHA-256, taken by the edge when it spooled the bytes (NULL for earlier segments).
ALTER TABLE segments ADD COLUMN sha256 TEXT NULL;
-- Time-range playback reads a source's segments by start time.
CREATE INDEX segments_source_start ON segments (source, start_ts);
-- ... and serves their segments by run and sequence number.
CREATE INDEX segments_source_run_seq ON segments (source, run, seq);
