-- Sources, recordings and segments of LiveMix's control node, for SQLite (the standalone `livemix` binary).
--
-- The same tables and columns as PostgreSQL's `migrations/` after all of them (a test compares the two
-- catalogs); SQLite starts at that schema in one file. Types as SQLite and sqlx store them: UUIDs as 16-byte
-- BLOBs, times as RFC 3339 TEXT (always compared through unixepoch()), booleans as 0/1. Written by this
-- process's clock: `now` is strftime('%Y-%m-%dT%H:%M:%f+00:00').

CREATE TABLE sources (
    id              BLOB NOT NULL PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    segment_length  INTEGER NOT NULL CHECK (segment_length > 0),
    description     TEXT NOT NULL DEFAULT '',
    streaming       BOOLEAN NOT NULL DEFAULT FALSE,
    rr_target       TEXT,
    local_time      TEXT,
    last_seen       TEXT,
    live_media_seq  INTEGER NOT NULL DEFAULT -1,
    live_disc_seq   INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    updated_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))
);

CREATE TABLE recordings (
    id          TEXT NOT NULL PRIMARY KEY,
    alias       TEXT UNIQUE,
    description TEXT,
    source      BLOB NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    start_ts    TEXT NOT NULL,
    end_ts      TEXT,
    active      BOOLEAN NOT NULL DEFAULT TRUE,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))
);
CREATE INDEX recordings_source ON recordings (source);

-- Segments stored in the object store for recordings; the object key (uri) identifies one.
CREATE TABLE segments (
    id            INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    source        BLOB NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    start_ts      TEXT NOT NULL,
    end_ts        TEXT NOT NULL,
    length_ms     INTEGER NOT NULL,
    size          INTEGER NOT NULL,
    uri           TEXT NOT NULL,
    -- The encoder run (a ULID); NULL for segments reported before segment ids.
    run           TEXT NULL,
    discontinuity BOOLEAN NOT NULL DEFAULT FALSE,
    UNIQUE (source, uri)
);

CREATE TABLE recording_segments (
    recording   TEXT NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
    segment     INTEGER NOT NULL REFERENCES segments (id) ON DELETE CASCADE,
    PRIMARY KEY (recording, segment)
);
CREATE INDEX recording_segments_segment ON recording_segments (segment);

-- The index of live segments whose bytes sit in the segment cache.
CREATE TABLE live_segments (
    source          BLOB NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    media_seq       INTEGER NOT NULL,
    name            TEXT NOT NULL,
    length_ms       INTEGER NOT NULL,
    discontinuity   BOOLEAN NOT NULL,
    disc_seq        INTEGER NOT NULL,
    start_ts        TEXT NOT NULL,
    received_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    PRIMARY KEY (source, media_seq),
    UNIQUE (source, name)
);

-- Which edge serves a source (see PostgreSQL's 0003_source_edges.sql).
CREATE TABLE source_edges (
    source      BLOB NOT NULL PRIMARY KEY REFERENCES sources (id) ON DELETE CASCADE,
    edge_id     TEXT NOT NULL,
    bound_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))
);
