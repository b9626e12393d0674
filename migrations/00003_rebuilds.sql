-- +goose Up
-- Projection rebuilds (docs/ARCHITECTURE.md, "Rebuild"). The record lives in the system of record so every
-- replica can answer GetRebuild, and a crash leaves a trace an operator can read.
CREATE TABLE rebuilds (
    id               text        PRIMARY KEY,
    source           text        NOT NULL,
    phase            text        NOT NULL,
    from_index       text        NOT NULL DEFAULT '',
    to_index         text        NOT NULL DEFAULT '',
    docs_done        bigint      NOT NULL DEFAULT 0,
    docs_total       bigint      NOT NULL DEFAULT 0,
    started_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    finished_at      timestamptz,
    error            text        NOT NULL DEFAULT '',
    -- When each phase began, {"fill": "2025-01-02T03:04:05.123456Z", ...}: the timings of a
    -- finished rebuild without a table per phase.
    phase_starts     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- Set by CancelRebuild on whichever replica received it; the replica running the rebuild
    -- polls it. Saving progress never clears it.
    cancel_requested boolean     NOT NULL DEFAULT false
);
-- Listing is "newest first"; id breaks ties so pages are stable.
CREATE INDEX rebuilds_newest_first ON rebuilds (started_at DESC, id DESC);

-- (id, version, deleted) of every product as of a rebuild's snapshot, for validation: the new
-- index must hold every one of them at that version or later.
--
-- UNLOGGED because this is scratch data: it is needed only while its rebuild runs, can be
-- recorded again from products at any time, and is up to a million rows per rebuild. Skipping
-- the WAL makes recording it several times cheaper and keeps it out of replication and backups.
-- The price is that a database crash empties the table (and standbys never see its rows); a
-- rebuild interrupted by a crash is failed or re-recorded anyway, so nothing is lost.
CREATE UNLOGGED TABLE rebuild_snapshots (
    rebuild_id text    NOT NULL,
    id         uuid    NOT NULL,
    version    bigint  NOT NULL,
    deleted    boolean NOT NULL,
    -- Validation pages through one rebuild's rows in id order: a range scan of this key.
    PRIMARY KEY (rebuild_id, id)
);

-- +goose Down
DROP TABLE rebuild_snapshots;
DROP TABLE rebuilds;
