-- +goose Up
-- The audit log of DLQ replays (docs/ARCHITECTURE.md, "Kafka and the DLQ"): what was replayed, when, by which
-- operator and with which result. `catalog dlq replay` records an entry as 'pending' before it
-- publishes and completes it after, so every publish attempt leaves a row even when the
-- publish fails ('error') or the process dies in between (the row stays 'pending': the event
-- may or may not have reached Kafka; replaying again is safe). Dry runs record nothing.
CREATE TABLE dlq_replays (
    id               bigserial   PRIMARY KEY,
    -- Groups the entries of one replay command.
    run_id           text        NOT NULL,
    replayed_at      timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    operator         text        NOT NULL CHECK (operator <> ''),
    -- The DLQ message: topic, partition and offset (`catalog dlq show <partition>:<offset>`).
    dlq_topic        text        NOT NULL,
    dlq_partition    integer     NOT NULL CHECK (dlq_partition >= 0),
    dlq_offset       bigint      NOT NULL CHECK (dlq_offset >= 0),
    error_class      text        NOT NULL DEFAULT '',
    -- Text, not uuid: an undecodable message has no (valid) aggregate id; '' when unknown.
    aggregate_id     text        NOT NULL DEFAULT '',
    event_id         text        NOT NULL DEFAULT '',
    -- Where the event was republished; the position is known once Kafka acknowledged it.
    target_topic     text        NOT NULL,
    target_partition integer,
    target_offset    bigint,
    result           text        NOT NULL DEFAULT 'pending' CHECK (result IN ('pending', 'ok', 'error')),
    error            text        NOT NULL DEFAULT '',
    CHECK ((result = 'pending') = (finished_at IS NULL))
);
-- "Was this message replayed already?" (replays skip what an earlier replay published).
CREATE INDEX dlq_replays_message ON dlq_replays (dlq_topic, dlq_partition, dlq_offset);
-- "What happened to this product?"
CREATE INDEX dlq_replays_aggregate ON dlq_replays (aggregate_id, replayed_at) WHERE aggregate_id <> '';
CREATE INDEX dlq_replays_newest_first ON dlq_replays (replayed_at DESC, id DESC);

-- +goose Down
DROP TABLE dlq_replays;
