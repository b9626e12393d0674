-- +goose Up
-- The transactional outbox, in the layout of watermill-sql's PostgreSQL schema (offset,
-- transaction_id as xid8, per-consumer-group offsets) with one addition: a lane column. Events
-- are split into lanes by a hash of the aggregate id; one forwarder relays each lane, so the
-- relay scales past one reader while each product's events stay in commit order.
CREATE TABLE outbox_messages (
    lane           smallint    NOT NULL,
    "offset"       bigserial   NOT NULL,
    uuid           varchar(36) NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    payload        bytea       NOT NULL,
    metadata       json,
    transaction_id xid8        NOT NULL,
    -- The relay's poll is a range scan of this key: (lane, transaction_id, offset) > last acked.
    PRIMARY KEY (lane, transaction_id, "offset")
);
CREATE INDEX outbox_messages_created_at ON outbox_messages (created_at);

CREATE TABLE outbox_offsets (
    lane                          smallint    NOT NULL,
    consumer_group                text        NOT NULL,
    offset_acked                  bigint      NOT NULL DEFAULT 0,
    last_processed_transaction_id xid8        NOT NULL DEFAULT '0',
    updated_at                    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (lane, consumer_group)
);

-- Wake the relay on commit instead of waiting for its next poll. NOTIFY is delivered at
-- commit and identical payloads of one transaction are folded into one.
-- +goose StatementBegin
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('catalog_outbox', NEW.lane::text);
    RETURN NULL;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER outbox_messages_notify AFTER INSERT ON outbox_messages
    FOR EACH ROW EXECUTE FUNCTION outbox_notify();

-- +goose Down
DROP TRIGGER outbox_messages_notify ON outbox_messages;
DROP FUNCTION outbox_notify();
DROP TABLE outbox_offsets;
DROP TABLE outbox_messages;
