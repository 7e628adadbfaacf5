-- Live segments are identified as their edge identifies them: (source, run, seq). See PostgreSQL's
-- 0005_live_segment_ids.sql.
ALTER TABLE live_segments ADD COLUMN run TEXT NULL;
ALTER TABLE live_segments ADD COLUMN seq INTEGER NULL;

CREATE UNIQUE INDEX live_segments_run_seq ON live_segments (source, run, seq);
