-- +goose Up
-- The DLQ audit log records resolutions beside replays: an operator who decides that a dead
-- letter will not be replayed (`catalog dlq resolve`) leaves an entry with action 'resolve',
-- the reason in note, and result 'ok' at once. A retained dead letter with an ok replay or a
-- resolution is handled; the others are what `catalog status` and catalog_dlq_unhandled report.
ALTER TABLE dlq_replays
    ADD COLUMN action text NOT NULL DEFAULT 'replay' CHECK (action IN ('replay', 'resolve')),
    ADD COLUMN note   text NOT NULL DEFAULT '';
-- A resolution publishes nothing: it has no target and cannot be pending or failed.
ALTER TABLE dlq_replays ADD CONSTRAINT dlq_replays_resolution_shape
    CHECK (action = 'replay' OR (result = 'ok' AND target_topic = '' AND target_partition IS NULL AND note <> ''));
-- "Which retained dead letters are handled?" (the status and the metrics ask every few seconds).
CREATE INDEX dlq_replays_handled ON dlq_replays (dlq_topic, dlq_partition, dlq_offset) WHERE result = 'ok';

-- +goose Down
DROP INDEX dlq_replays_handled;
DELETE FROM dlq_replays WHERE action = 'resolve';
ALTER TABLE dlq_replays DROP CONSTRAINT dlq_replays_resolution_shape;
ALTER TABLE dlq_replays DROP COLUMN note, DROP COLUMN action;
