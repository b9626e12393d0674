package httpport_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/marketplace/catalog/application"
	"github.com/marketplace/catalog/application/command"
	"github.com/marketplace/catalog/application/query"
	"github.com/marketplace/catalog/domain/product"
)

// store is an in-memory stand-in for the application: its handlers run the real domain
// rules (validation, versions, tombstones) so the HTTP mapping is tested against real
// errors, not hand-made ones.
type store struct {
	mu       sync.Mutex
	products map[product.ID]*product.Product
	keys     map[string]idemEntry
	now      time.Time

	// fail, when set, is returned by every handler: errors the domain cannot produce here.
	fail error
	// panicWith, when set, makes every handler panic with it.
	panicWith any
	// gate, when set, makes create wait for it to close: an in-flight request for the
	// shutdown test.
	gate chan struct{}
	// entered is closed once create is waiting on gate.
	entered chan struct{}

	// lastCreate is the last create command, for fingerprint assertions.
	lastCreate command.CreateProduct
	// lastUpdate is the last update command, for assertions on the decoded input.
	lastUpdate command.UpdateProduct
}

type idemEntry struct {
	fingerprint string
	id          product.ID
}

func newStore() *store {
	return &store{
		products: map[product.ID]*product.Product{},
		keys:     map[string]idemEntry{},
		now:      time.Date(2025, 1, 2, 3, 4, 5, 123456000, time.UTC),
	}
}

func (s *store) app() application.Application {
	return application.Application{
		Commands: application.Commands{
			CreateProduct: fakeCreate{s},
			UpdateProduct: fakeUpdate{s},
			DeleteProduct: fakeDelete{s},
		},
		Queries: application.Queries{ProductByID: fakeGet{s}},
	}
}

func (s *store) tick() time.Time {
	s.now = s.now.Add(time.Second)
	return s.now
}

// seed stores a product with id at the given version (by updating it version-1 times).
func (s *store) seed(id product.ID, sku string, version int64, deleted bool) *product.Product {
	d, err := command.ProductInput{SKU: sku, Name: "Shirt " + sku, Amount: 1999, Currency: "EUR", Stock: 5}.Details()
	if err != nil {
		panic(err)
	}
	p, err := product.New(id, d, s.tick())
	if err != nil {
		panic(err)
	}
	for i := int64(1); i < version; i++ {
		if err := p.ChangeStock(int64(10+i), s.tick()); err != nil {
			panic(err)
		}
	}
	if deleted {
		if err := p.Delete(s.tick()); err != nil {
			panic(err)
		}
	}
	p.PopEvents()
	s.products[id] = p
	return p
}

// copyOf returns an independent product, as a repository's fresh load would.
func copyOf(p *product.Product) *product.Product {
	snap := p.Snapshot()
	c, err := product.UnmarshalProductFromDatabase(snap.ID, snap.Details, snap.Version, snap.CreatedAt, snap.UpdatedAt, snap.DeletedAt)
	if err != nil {
		panic(err)
	}
	return c
}

func (s *store) enter() error {
	if s.panicWith != nil {
		panic(s.panicWith)
	}
	return s.fail
}

type fakeCreate struct{ s *store }

func (f fakeCreate) Handle(ctx context.Context, cmd command.CreateProduct) (command.CreateProductResult, error) {
	s := f.s
	if s.gate != nil {
		close(s.entered)
		<-s.gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastCreate = cmd
	if err := s.enter(); err != nil {
		return command.CreateProductResult{}, err
	}
	d, err := cmd.Input.Details()
	if err != nil {
		return command.CreateProductResult{}, err
	}
	if cmd.IdempotencyKey != "" {
		if e, ok := s.keys[cmd.IdempotencyKey]; ok {
			if e.fingerprint != cmd.Fingerprint {
				return command.CreateProductResult{}, fmt.Errorf("create product: %w", product.ErrIdempotencyKeyReused)
			}
			return command.CreateProductResult{Product: copyOf(s.products[e.id]), Replayed: true}, nil
		}
	}
	for _, p := range s.products {
		if p.Details().SKU == d.SKU {
			return command.CreateProductResult{}, fmt.Errorf("create product: %w", product.ErrDuplicateSKU)
		}
	}
	now := s.tick()
	p, err := product.New(product.NewID(now), d, now)
	if err != nil {
		return command.CreateProductResult{}, err
	}
	s.products[p.ID()] = p
	if cmd.IdempotencyKey != "" {
		s.keys[cmd.IdempotencyKey] = idemEntry{fingerprint: cmd.Fingerprint, id: p.ID()}
	}
	return command.CreateProductResult{Product: copyOf(p)}, nil
}

type fakeGet struct{ s *store }

func (f fakeGet) Handle(ctx context.Context, q query.ProductByID) (query.ProductByIDResult, error) {
	s := f.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enter(); err != nil {
		return query.ProductByIDResult{}, err
	}
	id, err := product.ParseID(q.ID)
	if err != nil {
		return query.ProductByIDResult{}, err
	}
	// Versions not stored yet are behind, as a real waiter reports them after its timeout.
	var behind []query.Lag
	for _, w := range q.Consistency.WaitFor {
		var have int64
		if p, ok := s.products[w.ID]; ok {
			have = p.Version()
		}
		if have < w.Version {
			behind = append(behind, query.Lag{ID: w.ID, Want: w.Version, Have: have})
		}
	}
	if len(behind) > 0 && q.Consistency.Strict {
		return query.ProductByIDResult{}, fmt.Errorf("product by id: %w", &query.BehindError{Lags: behind})
	}
	p, ok := s.products[id]
	if !ok {
		return query.ProductByIDResult{}, fmt.Errorf("product by id: %w", product.ErrNotFound)
	}
	res := query.ProductByIDResult{Product: copyOf(p), Behind: behind}
	if p.IsDeleted() {
		return res, fmt.Errorf("product by id %s: %w", id, product.ErrDeleted)
	}
	return res, nil
}

type fakeUpdate struct{ s *store }

func (f fakeUpdate) Handle(ctx context.Context, cmd command.UpdateProduct) (*product.Product, error) {
	s := f.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastUpdate = cmd
	if err := s.enter(); err != nil {
		return nil, err
	}
	id, err := product.ParseID(cmd.ID)
	if err != nil {
		return nil, err
	}
	d, err := cmd.Input.Details()
	if err != nil {
		return nil, err
	}
	p, ok := s.products[id]
	if !ok {
		return nil, fmt.Errorf("update product: %w", product.ErrNotFound)
	}
	if p.IsDeleted() {
		return nil, fmt.Errorf("update product: %w", product.ErrDeleted)
	}
	if err := p.CheckVersion(cmd.ExpectedVersion); err != nil {
		return nil, fmt.Errorf("update product: %w", err)
	}
	if err := p.Update(d, s.tick()); err != nil {
		return nil, fmt.Errorf("update product: %w", err)
	}
	return copyOf(p), nil
}

type fakeDelete struct{ s *store }

func (f fakeDelete) Handle(ctx context.Context, cmd command.DeleteProduct) (*product.Product, error) {
	s := f.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enter(); err != nil {
		return nil, err
	}
	id, err := product.ParseID(cmd.ID)
	if err != nil {
		return nil, err
	}
	p, ok := s.products[id]
	if !ok {
		return nil, fmt.Errorf("delete product: %w", product.ErrNotFound)
	}
	if p.IsDeleted() {
		return nil, fmt.Errorf("delete product: %w", product.ErrDeleted)
	}
	if cmd.ExpectedVersion != nil {
		if err := p.CheckVersion(*cmd.ExpectedVersion); err != nil {
			return nil, fmt.Errorf("delete product: %w", err)
		}
	}
	if err := p.Delete(s.tick()); err != nil {
		return nil, fmt.Errorf("delete product: %w", err)
	}
	return copyOf(p), nil
}
