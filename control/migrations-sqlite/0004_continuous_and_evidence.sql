-- Recording any moment and proving what was recorded. See PostgreSQL's 0006_continuous_and_evidence.sql.
ALTER TABLE sources ADD COLUMN recording_mode TEXT NOT NULL DEFAULT 'on_demand'
    CHECK (recording_mode IN ('on_demand', 'continuous'));
ALTER TABLE recordings ADD COLUMN continuous BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE recordings ADD COLUMN verification TEXT NULL;
CREATE UNIQUE INDEX recordings_one_continuous ON recordings (source) WHERE continuous AND active;

ALTER TABLE segments ADD COLUMN sha256 TEXT NULL;
CREATE INDEX segments_source_start ON segments (source, start_ts);
CREATE INDEX segments_source_run_seq ON segments (source, run, seq);
