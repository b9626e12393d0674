-- +goose Up
-- Who runs a rebuild, and when it last proved it is alive. The runner beats heartbeat_at every
-- second or so; an unfinished record whose heartbeat is older than the timeout has a dead
-- runner, which every replica reports and which recovery takes over by setting owner to itself
-- (only then, so a live rebuild that merely lost its lock's session is never touched). Saves
-- are conditional on owner, so a runner that was taken over cannot overwrite its successor.
ALTER TABLE rebuilds ADD COLUMN owner text NOT NULL DEFAULT '';
ALTER TABLE rebuilds ADD COLUMN heartbeat_at timestamptz;
UPDATE rebuilds SET heartbeat_at = updated_at;
ALTER TABLE rebuilds ALTER COLUMN heartbeat_at SET NOT NULL;

-- Where an index stands in the event log when it does not receive every event: it holds every
-- product event before complete_before ({"0": 1234, "1": 987, ...}, partition -> offset) and may
-- miss those from there on. A row is written for the index the alias leaves, just before the
-- switch (the live projector's committed offsets, below which it has applied everything to it),
-- and for an index the alias moves to before its drain has finished; it is deleted once the
-- live index has caught up, and with the index. So the live index has a row only while it is
-- behind (catalog status reports it), and a rollback catches the previous index up from its row.
CREATE TABLE index_positions (
    index_name      text        PRIMARY KEY,
    complete_before jsonb       NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE index_positions;
ALTER TABLE rebuilds DROP COLUMN heartbeat_at;
ALTER TABLE rebuilds DROP COLUMN owner;
