-- +goose Up
-- Product tags (data version 2 of the product events): short labels, a JSON array of strings in
-- the client's order, like attributes a jsonb document. Rows written before tags existed get an
-- empty list. A constant default makes this a catalog-only change in PostgreSQL 11 and later:
-- no table rewrite, no scan, the lock is held for an instant however many products there are
-- (which is also why there is no CHECK here: validating one would scan the table under that lock).
ALTER TABLE products ADD COLUMN tags jsonb NOT NULL DEFAULT '[]'::jsonb;

-- +goose Down
ALTER TABLE products DROP COLUMN tags;
