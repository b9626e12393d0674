-- +goose Up
-- Products are the system of record. Deletes are tombstones: deleted_at is set and the version
-- bumped, the row stays, so a rebuild from the database reproduces tombstones in the read model.
CREATE TABLE products (
    id             uuid        PRIMARY KEY,
    sku            text        NOT NULL,
    name           text        NOT NULL,
    description    text        NOT NULL DEFAULT '',
    category       text        NOT NULL DEFAULT '',
    brand          text        NOT NULL DEFAULT '',
    price_amount   bigint      NOT NULL CHECK (price_amount >= 0),
    price_currency char(3)     NOT NULL,
    stock          bigint      NOT NULL CHECK (stock >= 0),
    attributes     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    version        bigint      NOT NULL CHECK (version >= 1),
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    deleted_at     timestamptz
);

-- A SKU is unique among live products; a deleted product's SKU may be reused.
CREATE UNIQUE INDEX products_sku_live ON products (sku) WHERE deleted_at IS NULL;

-- Idempotency keys of POST /v1/products: a retried create returns the first result.
CREATE TABLE idempotency_keys (
    key         text        PRIMARY KEY,
    fingerprint text        NOT NULL,
    product_id  uuid        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

-- +goose Down
DROP TABLE idempotency_keys;
DROP TABLE products;
