-- +goose Up
-- Where a rebuild's catch-up ended in the event log, {"0": 1234, "1": 987, ...} (partition ->
-- offset). After the alias switch the rebuild drains the log from there into the new, live
-- index; if its process dies during that drain, recovery finishes it from this position.
ALTER TABLE rebuilds ADD COLUMN drain_from jsonb NOT NULL DEFAULT '{}'::jsonb;

-- +goose Down
ALTER TABLE rebuilds DROP COLUMN drain_from;
