package product

import "context"

// IdempotencyKey ties a create request to its first result, so a client retrying after a
// timeout never creates the product twice.
type IdempotencyKey struct {
	// Key is the client's Idempotency-Key.
	Key string
	// Fingerprint identifies the request body; the same key with another body is refused.
	Fingerprint string
}

// Repository stores products. Implementations write the events a product recorded in the
// same transaction as the product, so there is never a change without its event or an event
// without its change.
type Repository interface {
	// Add stores a new product. With a key, a replay of the same request returns the product
	// first created for it and replayed=true; the key with another request fails with
	// ErrIdempotencyKeyReused. A SKU in use fails with ErrDuplicateSKU.
	Add(ctx context.Context, p *Product, key *IdempotencyKey) (stored *Product, replayed bool, err error)
	// Get returns the product with id, tombstones included (callers decide how to show them).
	Get(ctx context.Context, id ID) (*Product, error)
	// Update loads the product, lets updateFn change it and stores the result with its events,
	// all in one transaction that holds the row; a concurrent change fails with a version conflict.
	Update(ctx context.Context, id ID, updateFn func(ctx context.Context, p *Product) (*Product, error)) (*Product, error)
}
