-- Sources, recordings and segments of LiveMix's control node.

CREATE TABLE sources (
    id              UUID PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    segment_length  INTEGER NOT NULL CHECK (segment_length > 0),
    description     TEXT NOT NULL DEFAULT '',
    -- The streaming state the control node wants; the edge learns it from commands and status replies.
    streaming       BOOLEAN NOT NULL DEFAULT FALSE,
    rr_target       TEXT,
    local_time      TIMESTAMPTZ,
    -- By the database's clock, so every replica judges staleness alike.
    last_seen       TIMESTAMPTZ,
    -- Counters behind the live playlist's MEDIA-SEQUENCE and DISCONTINUITY-SEQUENCE; they only grow.
    live_media_seq  BIGINT NOT NULL DEFAULT -1,
    live_disc_seq   BIGINT NOT NULL DEFAULT 0,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE recordings (
    id          TEXT PRIMARY KEY,
    alias       TEXT UNIQUE,
    description TEXT,
    source      UUID NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    start_ts    TIMESTAMPTZ NOT NULL,
    end_ts      TIMESTAMPTZ,
    active      BOOLEAN NOT NULL DEFAULT TRUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX recordings_source ON recordings (source);

-- Segments stored in the object store for recordings.
CREATE TABLE segments (
    id          BIGSERIAL PRIMARY KEY,
    source      UUID NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    start_ts    TIMESTAMPTZ NOT NULL,
    end_ts      TIMESTAMPTZ NOT NULL,
    length_ms   BIGINT NOT NULL,
    size        BIGINT NOT NULL,
    uri         TEXT NOT NULL,
    UNIQUE (source, name)
);

CREATE TABLE recording_segments (
    recording   TEXT NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
    segment     BIGINT NOT NULL REFERENCES segments (id) ON DELETE CASCADE,
    PRIMARY KEY (recording, segment)
);

-- The index of live segments whose bytes sit in the segment cache.
CREATE TABLE live_segments (
    source          UUID NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    media_seq       BIGINT NOT NULL,
    name            TEXT NOT NULL,
    length_ms       BIGINT NOT NULL,
    discontinuity   BOOLEAN NOT NULL,
    disc_seq        BIGINT NOT NULL,
    start_ts        TIMESTAMPTZ NOT NULL,
    received_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (source, media_seq),
    UNIQUE (source, name)
);
