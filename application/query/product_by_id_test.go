package query_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/marketplace/catalog/adapters/memory"
	"github.com/marketplace/catalog/application/decorator"
	"github.com/marketplace/catalog/application/query"
	"github.com/marketplace/catalog/domain/product"
)

type fakeMetrics struct {
	mu    sync.Mutex
	names []string
	errs  []error
}

func (m *fakeMetrics) ObserveUseCase(name string, _ time.Duration, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.names = append(m.names, name)
	m.errs = append(m.errs, err)
}

type fixture struct {
	repo    *memory.ProductRepository
	metrics *fakeMetrics
	byID    query.ProductByIDHandler
	waiter  *query.VersionWaiter
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	pubsub := gochannel.NewGoChannel(gochannel.Config{}, nil)
	t.Cleanup(func() { _ = pubsub.Close() })
	repo, err := memory.NewProductRepository(pubsub, memory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	m := &fakeMetrics{}
	waiter, err := query.NewVersionWaiter(repo, query.VersionWaiterConfig{ReadModel: "products", Interval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	h, err := query.NewProductByIDHandler(repo, waiter, decorator.Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	return fixture{repo: repo, metrics: m, byID: h, waiter: waiter}
}

func (f fixture) add(t *testing.T, sku string) *product.Product {
	t.Helper()
	d, err := product.NewDetails(sku, "Lamp", "", "", "", 4999, "EUR", 2, map[string]string{"watt": "40"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	p, err := product.New(product.NewID(now), d, now)
	if err != nil {
		t.Fatal(err)
	}
	stored, _, err := f.repo.Add(context.Background(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	return stored
}

func TestProductByID(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	p := f.add(t, "SKU-1")
	for _, id := range []string{p.ID().String(), strings.ToUpper(p.ID().String())} {
		res, err := f.byID.Handle(context.Background(), query.ProductByID{ID: id})
		got := res.Product
		if err != nil {
			t.Fatalf("ProductByID(%s): %v", id, err)
		}
		if got.ID() != p.ID() || got.Version() != 1 || got.Details().SKU != "SKU-1" || got.Details().Attributes["watt"] != "40" {
			t.Fatalf("ProductByID(%s) = %+v", id, got.Snapshot())
		}
	}
	// The use-case name itself is covered by the decorator's tests.
	if len(f.metrics.names) != 2 || f.metrics.errs[0] != nil || f.metrics.errs[1] != nil {
		t.Fatalf("metrics %v %v, want two successful observations", f.metrics.names, f.metrics.errs)
	}
}

func TestProductByIDTombstone(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	p := f.add(t, "SKU-1")
	_, err := f.repo.Update(context.Background(), p.ID(), func(_ context.Context, p *product.Product) (*product.Product, error) {
		return p, p.Delete(time.Now())
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.byID.Handle(context.Background(), query.ProductByID{ID: p.ID().String()})
	if !errors.Is(err, product.ErrDeleted) {
		t.Fatalf("tombstone: %v, want ErrDeleted", err)
	}
	if errors.Is(err, product.ErrNotFound) {
		t.Fatal("a tombstone must be told apart from an unknown product")
	}
	// The tombstone comes along so a port can show its version and deleted_at (410 Gone).
	if got := res.Product; got == nil || !got.IsDeleted() || got.Version() != 2 {
		t.Fatalf("tombstone product %v", got)
	}
	if last := f.metrics.errs[len(f.metrics.errs)-1]; !errors.Is(last, product.ErrDeleted) {
		t.Fatalf("metrics saw %v", last)
	}
}

func TestProductByIDErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, id := range []string{"", "abc", "123e4567-e89b-12d3-a456-42661417400", "123e4567e89b12d3a456426614174000", "123e4567-e89b-12d3-a456-4266141740000"} {
		res, err := f.byID.Handle(context.Background(), query.ProductByID{ID: id})
		if !errors.Is(err, product.ErrInvalidID) || res.Product != nil {
			t.Errorf("ProductByID(%q) = %v, %v; want ErrInvalidID", id, res.Product, err)
		}
	}
	res, err := f.byID.Handle(context.Background(), query.ProductByID{ID: product.NewID(time.Now()).String()})
	if !errors.Is(err, product.ErrNotFound) || res.Product != nil {
		t.Fatalf("unknown id: %v, %v; want ErrNotFound", res.Product, err)
	}
	if _, err := query.NewProductByIDHandler(nil, f.waiter, decorator.Deps{}); err == nil {
		t.Fatal("nil read model accepted")
	}
	if _, err := query.NewProductByIDHandler(f.repo, nil, decorator.Deps{}); err == nil {
		t.Fatal("nil version waiter accepted")
	}
}

type failingReadModel struct{ err error }

func (r failingReadModel) Get(context.Context, product.ID) (*product.Product, error) {
	return nil, r.err
}

func TestProductByIDReadModelFailure(t *testing.T) {
	t.Parallel()
	boom := errors.New("connection refused")
	h, err := query.NewProductByIDHandler(failingReadModel{boom}, newFixture(t).waiter, decorator.Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Handle(context.Background(), query.ProductByID{ID: product.NewID(time.Now()).String()}); !errors.Is(err, boom) {
		t.Fatalf("err %v, want the read model's error wrapped", err)
	}
}
