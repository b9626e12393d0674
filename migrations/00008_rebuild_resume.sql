-- +goose Up
-- Rebuilds fill in primary-key chunks, each read in a short transaction of its own, and resume
-- after their runner stopped (a process killed or shut down, a lost lock) instead of starting
-- over. The record keeps what the next runner needs to go on with the same rebuild id:
--   catch_up_from  the event-log position captured before the fill ({"0": 1234, ...}, partition
--                  -> offset): the catch-up reads from there, however often the fill resumed.
--                  NULL until captured (and for rebuilds of earlier releases, which cannot resume).
--   fill_after     a database fill's cursor: the id of the last product of the last chunk
--                  written to the new index ('' before the first). Saved together with
--                  docs_done, so a resumed fill never counts backwards.
--   fill_at        a Kafka fill's position: every event before these offsets is in the new index.
-- and what operators read besides documents: events read from the log (a Kafka fill, every
-- catch-up and drain), the current phase's rate over a recent window (documents or events per
-- second; the ETA is derived from it) and how often the rebuild was resumed.
ALTER TABLE rebuilds
    ADD COLUMN catch_up_from jsonb,
    ADD COLUMN fill_after    text             NOT NULL DEFAULT '',
    ADD COLUMN fill_at       jsonb            NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN events_done   bigint           NOT NULL DEFAULT 0,
    ADD COLUMN events_total  bigint           NOT NULL DEFAULT 0,
    ADD COLUMN rate          double precision NOT NULL DEFAULT 0,
    ADD COLUMN resumes       integer          NOT NULL DEFAULT 0;

-- Validation no longer compares with a recorded snapshot (there is no snapshot: the database is
-- read again, chunk by chunk, and rows that moved on are settled against the event log), so the
-- scratch table of recorded versions goes.
DROP TABLE rebuild_snapshots;

-- +goose Down
CREATE UNLOGGED TABLE rebuild_snapshots (
    rebuild_id text    NOT NULL,
    id         uuid    NOT NULL,
    version    bigint  NOT NULL,
    deleted    boolean NOT NULL,
    PRIMARY KEY (rebuild_id, id)
);
ALTER TABLE rebuilds
    DROP COLUMN resumes,
    DROP COLUMN rate,
    DROP COLUMN events_total,
    DROP COLUMN events_done,
    DROP COLUMN fill_at,
    DROP COLUMN fill_after,
    DROP COLUMN catch_up_from;
