-- no-transaction
-- Recordings with a lifecycle (see PostgreSQL's 0004_lifecycle.sql). SQLite cannot drop a foreign key, so the
-- recordings and segments tables are rebuilt as its manual prescribes (foreign keys off while tables swap).
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;

CREATE TABLE recordings_new (
    id          TEXT NOT NULL PRIMARY KEY,
    alias       TEXT UNIQUE,
    description TEXT,
    source      BLOB NOT NULL,
    start_ts    TEXT NOT NULL,
    end_ts      TEXT,
    active      BOOLEAN NOT NULL DEFAULT TRUE,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    hold        BOOLEAN NOT NULL DEFAULT FALSE,
    source_name TEXT
);
INSERT INTO recordings_new (id, alias, description, source, start_ts, end_ts, active, created_at, updated_at,
                            source_name)
    SELECT r.id, r.alias, r.description, r.source, r.start_ts, r.end_ts, r.active, r.created_at, r.updated_at,
           (SELECT s.name FROM sources s WHERE s.id = r.source)
    FROM recordings r;
DROP TABLE recordings;
ALTER TABLE recordings_new RENAME TO recordings;
CREATE INDEX recordings_source ON recordings (source);

CREATE TABLE segments_new (
    id            INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    source        BLOB NOT NULL,
    name          TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    start_ts      TEXT NOT NULL,
    end_ts        TEXT NOT NULL,
    length_ms     INTEGER NOT NULL,
    size          INTEGER NOT NULL,
    uri           TEXT NOT NULL,
    run           TEXT NULL,
    discontinuity BOOLEAN NOT NULL DEFAULT FALSE,
    UNIQUE (source, uri)
);
INSERT INTO segments_new SELECT id, source, name, seq, start_ts, end_ts, length_ms, size, uri, run, discontinuity
    FROM segments;
DROP TABLE segments;
ALTER TABLE segments_new RENAME TO segments;
CREATE INDEX segments_source_end ON segments (source, end_ts);
CREATE INDEX segments_uri ON segments (uri);

ALTER TABLE sources ADD COLUMN owner TEXT;
ALTER TABLE sources ADD COLUMN retention_max_age_secs INTEGER CHECK (retention_max_age_secs > 0);
ALTER TABLE sources ADD COLUMN retention_max_bytes INTEGER CHECK (retention_max_bytes > 0);

CREATE TABLE storage_usage (
    source      BLOB NOT NULL PRIMARY KEY,
    bytes       INTEGER NOT NULL DEFAULT 0,
    segments    INTEGER NOT NULL DEFAULT 0
);
INSERT INTO storage_usage (source, bytes, segments) SELECT source, sum(size), count(*) FROM segments GROUP BY source;

CREATE TRIGGER segments_usage_insert AFTER INSERT ON segments BEGIN
    INSERT OR IGNORE INTO storage_usage (source) VALUES (NEW.source);
    UPDATE storage_usage SET bytes = bytes + NEW.size, segments = segments + 1 WHERE source = NEW.source;
END;
CREATE TRIGGER segments_usage_delete AFTER DELETE ON segments BEGIN
    UPDATE storage_usage SET bytes = bytes - OLD.size, segments = segments - 1 WHERE source = OLD.source;
END;
CREATE TRIGGER segments_usage_resize AFTER UPDATE OF size ON segments WHEN NEW.size <> OLD.size BEGIN
    UPDATE storage_usage SET bytes = bytes + NEW.size - OLD.size WHERE source = NEW.source;
END;

CREATE TABLE object_deletions (
    key           TEXT NOT NULL PRIMARY KEY,
    source        BLOB,
    size          INTEGER NOT NULL DEFAULT 0,
    reason        TEXT NOT NULL,
    requested_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    not_before    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    last_error    TEXT
);
CREATE INDEX object_deletions_due ON object_deletions (not_before);

PRAGMA foreign_key_check;
COMMIT;
PRAGMA foreign_keys = ON;
