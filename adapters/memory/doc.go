// Package memory is an in-memory product.Repository for application unit tests only.
//
// It keeps the behaviour of the Postgres repository that the use cases depend on — SKU
// uniqueness among live products, idempotency keys with the same fingerprint semantics,
// serialised read-modify-write updates, tombstones, one event per version — and publishes the
// events to a Watermill publisher (a GoChannel in tests) instead of an outbox. It is not a
// production store: state lives in one process and is lost with it, and publishing is not
// atomic with the change (see ProductRepository). internal/repotest holds the contract both
// implementations pass.
package memory
