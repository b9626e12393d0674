package memory

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/marketplace/catalog/api/envelope"
	"github.com/marketplace/catalog/application/query"
	"github.com/marketplace/catalog/domain/product"
)

// DefaultTopic is the topic events are published on when Config.Topic is empty; it matches the
// service's PRODUCT_EVENTS_TOPIC default.
const DefaultTopic = "product.events"

// Config configures the in-memory product repository.
type Config struct {
	// Topic is the topic every event is published on. Empty means DefaultTopic.
	Topic string
}

func (c *Config) setDefaults() {
	if c.Topic == "" {
		c.Topic = DefaultTopic
	}
}

// Validate reports a configuration that cannot work. NewProductRepository applies the defaults
// first, so an empty Config is valid there.
func (c Config) Validate() error {
	if c.Topic == "" {
		return errors.New("memory: topic is empty")
	}
	return nil
}

// ProductRepository implements product.Repository in memory, for application unit tests.
//
// One mutex serialises every operation of the repository; Update holds it across updateFn, so
// a read-modify-write never interleaves with another write (updateFn must therefore not call
// back into the same repository). Products are copied in and out through
// product.UnmarshalProductFromDatabase, so no caller can change stored state by keeping a
// pointer. Each write publishes the events the product popped, encoded with envelope.Marshal,
// to the publisher while the lock is held, i.e. in commit order; a publisher that blocks until a
// subscriber acks (GoChannel's BlockPublishUntilSubscriberAck) makes that subscriber see every
// event before the write returns. If publishing fails the change is not stored, but events
// already handed to the publisher in that call stay published: unlike the Postgres outbox,
// this adapter cannot make a change and its events atomic.
type ProductRepository struct {
	pub message.Publisher
	cfg Config

	mu       sync.Mutex
	products map[product.ID]product.Snapshot
	liveSKUs map[string]product.ID
	keys     map[string]idempotencyRecord
}

type idempotencyRecord struct {
	fingerprint string
	productID   product.ID
}

var (
	_ product.Repository          = (*ProductRepository)(nil)
	_ query.VisibleVersionsReader = (*ProductRepository)(nil)
)

// NewProductRepository returns an empty repository that publishes events to pub.
func NewProductRepository(pub message.Publisher, cfg Config) (*ProductRepository, error) {
	if pub == nil {
		return nil, errors.New("memory: nil publisher")
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &ProductRepository{
		pub:      pub,
		cfg:      cfg,
		products: map[product.ID]product.Snapshot{},
		liveSKUs: map[string]product.ID{},
		keys:     map[string]idempotencyRecord{},
	}, nil
}

// Add implements product.Repository. As in Postgres, the idempotency key is looked at first:
// a replay returns the product first created for the key (in its current state) and
// replayed=true without writing anything; a failed add stores neither the product nor the key.
func (r *ProductRepository) Add(ctx context.Context, p *product.Product, key *product.IdempotencyKey) (*product.Product, bool, error) {
	if p == nil {
		return nil, false, errors.New("add product: nil product")
	}
	if err := ctx.Err(); err != nil {
		return nil, false, fmt.Errorf("add product %s: %w", p.ID(), err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()

	if key != nil {
		if rec, ok := r.keys[key.Key]; ok {
			if rec.fingerprint != key.Fingerprint {
				return nil, false, fmt.Errorf("add product %s: %w", p.ID(), product.ErrIdempotencyKeyReused)
			}
			stored, err := r.load(rec.productID)
			if err != nil {
				return nil, false, fmt.Errorf("add product: replay of idempotency key: %w", err)
			}
			return stored, true, nil
		}
	}
	snap := p.Snapshot()
	if _, ok := r.products[snap.ID]; ok {
		return nil, false, fmt.Errorf("add product %s: a product with this id is already stored", snap.ID)
	}
	if err := r.checkSKU(snap); err != nil {
		return nil, false, fmt.Errorf("add product %s: %w", snap.ID, err)
	}
	if err := r.publish(p.PopEvents()); err != nil {
		return nil, false, fmt.Errorf("add product %s: %w", snap.ID, err)
	}
	r.store(snap, "")
	if key != nil {
		r.keys[key.Key] = idempotencyRecord{fingerprint: key.Fingerprint, productID: snap.ID}
	}
	stored, err := r.load(snap.ID)
	if err != nil {
		return nil, false, fmt.Errorf("add product %s: %w", snap.ID, err)
	}
	return stored, false, nil
}

// Get implements product.Repository. It returns a copy; tombstones are included.
func (r *ProductRepository) Get(ctx context.Context, id product.ID) (*product.Product, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get product %s: %w", id, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	p, err := r.load(id)
	if err != nil {
		return nil, fmt.Errorf("get product %s: %w", id, err)
	}
	return p, nil
}

// VisibleVersions returns the stored version of each probed product, tombstones included
// (query.VisibleVersionsReader): the system of record has every write at once.
func (r *ProductRepository) VisibleVersions(ctx context.Context, probes []query.VersionProbe) (map[query.VersionProbe]int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("product versions: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[query.VersionProbe]int64, len(probes))
	for _, p := range probes {
		if s, ok := r.products[p.ID]; ok {
			out[p] = s.Version
		}
	}
	return out, nil
}

// Update implements product.Repository. The repository's lock is held from the read through
// updateFn to the write, so concurrent updates of one product are serialised and the second
// of two based on the same version sees the first one's result (and fails its version check).
// An updateFn error, or a returned product at the version read, writes nothing and publishes
// nothing.
func (r *ProductRepository) Update(ctx context.Context, id product.ID, updateFn func(context.Context, *product.Product) (*product.Product, error)) (*product.Product, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("update product %s: %w", id, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()

	p, err := r.load(id)
	if err != nil {
		return nil, fmt.Errorf("update product %s: %w", id, err)
	}
	readVersion := p.Version()
	updated, err := updateFn(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("update product %s: %w", id, err)
	}
	switch {
	case updated == nil:
		return nil, fmt.Errorf("update product %s: updateFn returned no product", id)
	case updated.ID() != id:
		return nil, fmt.Errorf("update product %s: updateFn returned product %s", id, updated.ID())
	case updated.Version() == readVersion:
		return updated, nil // nothing changed: no write, no event
	case updated.Version() < readVersion:
		return nil, fmt.Errorf("update product %s: %w", id, &product.VersionConflictError{Expected: readVersion, Actual: updated.Version()})
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("update product %s: %w", id, err)
	}
	snap := updated.Snapshot()
	if err := r.checkSKU(snap); err != nil {
		return nil, fmt.Errorf("update product %s: %w", id, err)
	}
	if err := r.publish(updated.PopEvents()); err != nil {
		return nil, fmt.Errorf("update product %s: %w", id, err)
	}
	r.store(snap, r.products[id].Details.SKU)
	out, err := r.load(id)
	if err != nil {
		return nil, fmt.Errorf("update product %s: %w", id, err)
	}
	return out, nil
}

// checkSKU fails with ErrDuplicateSKU when another live product uses the SKU of s (the
// products_sku_live index of the Postgres schema). Tombstones never hold a SKU.
func (r *ProductRepository) checkSKU(s product.Snapshot) error {
	if s.Deleted() {
		return nil
	}
	if owner, ok := r.liveSKUs[s.Details.SKU]; ok && owner != s.ID {
		return product.ErrDuplicateSKU
	}
	return nil
}

// store writes s and moves the live-SKU index from oldSKU ("" for a new product). s must
// come from Product.Snapshot, which already copied the attributes.
func (r *ProductRepository) store(s product.Snapshot, oldSKU string) {
	if owner, ok := r.liveSKUs[oldSKU]; ok && oldSKU != "" && owner == s.ID {
		delete(r.liveSKUs, oldSKU)
	}
	if !s.Deleted() {
		r.liveSKUs[s.Details.SKU] = s.ID
	}
	r.products[s.ID] = s
}

// load returns a fresh copy of the stored product.
func (r *ProductRepository) load(id product.ID) (*product.Product, error) {
	s, ok := r.products[id]
	if !ok {
		return nil, product.ErrNotFound
	}
	return product.UnmarshalProductFromDatabase(s.ID, s.Details, s.Version, s.CreatedAt, s.UpdatedAt, s.DeletedAt)
}

// publish encodes events with the wire envelope and publishes them in one call, in order.
func (r *ProductRepository) publish(events []product.Event) error {
	if len(events) == 0 {
		return nil
	}
	msgs := make([]*message.Message, 0, len(events))
	for _, e := range events {
		m, err := envelope.Marshal(e)
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
	}
	if err := r.pub.Publish(r.cfg.Topic, msgs...); err != nil {
		return fmt.Errorf("publish to %s: %w", r.cfg.Topic, err)
	}
	return nil
}
