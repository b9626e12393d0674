// Package repotest is the contract every product.Repository implementation passes: the
// Postgres system of record and the in-memory adapter of the application tests run the same
// cases, so a use case tested on memory behaves the same on Postgres.
//
// The contract covers what the use cases and the event log rely on (docs/ARCHITECTURE.md, "Guarantees"): round
// trips at microsecond precision, SKU uniqueness among live products, idempotency keys,
// optimistic concurrency, tombstones, and exactly one event per version carrying the full state,
// with no event without a change and no change without an event.
package repotest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/marketplace/catalog/domain/product"
)

// Fixture is one empty repository under test and a view of the events it emitted.
type Fixture struct {
	// Repo is the repository under test. It must be empty and not shared with other fixtures.
	Repo product.Repository
	// Events returns every event the repository emitted so far, decoded from its wire form
	// (the outbox rows for Postgres, the published messages for memory), in commit order.
	// It must fail t when an emitted message cannot be decoded.
	Events func(t *testing.T) []product.Event
}

// RunProductRepositoryContract runs every contract case as a parallel subtest of t, each on a
// fresh fixture from newRepo.
func RunProductRepositoryContract(t *testing.T, newRepo func(t *testing.T) Fixture) {
	t.Helper()
	cases := []struct {
		name string
		run  func(t *testing.T, f Fixture)
	}{
		{"AddGetRoundTrip", testAddGetRoundTrip},
		{"StoredStateIsNotAliased", testStoredStateIsNotAliased},
		{"GetUnknown", testGetUnknown},
		{"UpdateUnknown", testUpdateUnknown},
		{"DuplicateLiveSKU", testDuplicateLiveSKU},
		{"UpdateToDuplicateSKU", testUpdateToDuplicateSKU},
		{"SKUReusableAfterDelete", testSKUReusableAfterDelete},
		{"IdempotencyKey", testIdempotencyKey},
		{"FailedAddDoesNotConsumeIdempotencyKey", testFailedAddKeepsKeyFree},
		{"UpdateWithVersionCheck", testUpdateWithVersionCheck},
		{"UpdateFnErrorWritesNothing", testUpdateFnError},
		{"NoOpUpdateWritesNoEvent", testNoOpUpdate},
		{"SeveralChangesInOneUpdate", testSeveralChangesInOneUpdate},
		{"DeleteKeepsTombstone", testDeleteKeepsTombstone},
		{"OneEventPerVersion", testOneEventPerVersion},
		{"ConcurrentUpdatesOneWinner", testConcurrentUpdates},
		{"ConcurrentAddsOneSKU", testConcurrentAddsOneSKU},
		{"ConcurrentAddsOneIdempotencyKey", testConcurrentAddsOneKey},
		{"RoundTripAtFieldLimits", testRoundTripAtLimits},
		{"CancelledContextWritesNothing", testCancelledContext},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newRepo(t)
			if f.Repo == nil || f.Events == nil {
				t.Fatal("repotest: fixture without Repo or Events")
			}
			if ev := f.Events(t); len(ev) != 0 {
				t.Fatalf("repotest: a fresh fixture already has %d events", len(ev))
			}
			c.run(t, f)
		})
	}
}

// clock hands out strictly increasing times with nanoseconds, so that every test exercises the
// microsecond normalisation.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock {
	return &clock{now: time.Now().UTC().Truncate(time.Second).Add(123456789 * time.Nanosecond)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(1500*time.Microsecond + 321*time.Nanosecond)
	return c.now
}

func ctxOf(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func newProduct(t *testing.T, c *clock, sku string) *product.Product {
	t.Helper()
	d, err := product.NewDetails(sku, "Product "+sku, "Line one.\nLine \"two\" — ünïcode 🎉", "kitchen/coffee", "Acme",
		129_999, "EUR", 17, map[string]string{"color": "red", "größe": "XL", "empty": "", "json": `{"a":[1,2]}`},
		"sale", "Größe \"XL\"", "🎉")
	if err != nil {
		t.Fatalf("NewDetails: %v", err)
	}
	now := c.Now()
	p, err := product.New(product.NewID(now), d, now)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func add(t *testing.T, f Fixture, p *product.Product) *product.Product {
	t.Helper()
	stored, replayed, err := f.Repo.Add(ctxOf(t), p, nil)
	if err != nil {
		t.Fatalf("Add %s: %v", p.ID(), err)
	}
	if replayed {
		t.Fatalf("Add %s without a key: replayed=true", p.ID())
	}
	return stored
}

func get(t *testing.T, f Fixture, id product.ID) *product.Product {
	t.Helper()
	p, err := f.Repo.Get(ctxOf(t), id)
	if err != nil {
		t.Fatalf("Get %s: %v", id, err)
	}
	return p
}

// change runs an Update whose updateFn checks the expected version and applies fn.
func change(t *testing.T, f Fixture, id product.ID, expected int64, fn func(p *product.Product) error) *product.Product {
	t.Helper()
	p, err := f.Repo.Update(ctxOf(t), id, func(_ context.Context, p *product.Product) (*product.Product, error) {
		if err := p.CheckVersion(expected); err != nil {
			return nil, err
		}
		if err := fn(p); err != nil {
			return nil, err
		}
		return p, nil
	})
	if err != nil {
		t.Fatalf("Update %s at version %d: %v", id, expected, err)
	}
	return p
}

func money(t *testing.T, amount int64, currency string) product.Money {
	t.Helper()
	m, err := product.NewMoney(amount, currency)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func timeEqual(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(*b)
}

// diffSnapshots describes how got differs from want, "" when they are the same state.
func diffSnapshots(got, want product.Snapshot) string {
	var diffs []string
	check := func(field string, equal bool, g, w any) {
		if !equal {
			diffs = append(diffs, fmt.Sprintf("%s = %v, want %v", field, g, w))
		}
	}
	gd, wd := got.Details, want.Details
	check("id", got.ID == want.ID, got.ID, want.ID)
	check("sku", gd.SKU == wd.SKU, gd.SKU, wd.SKU)
	check("name", gd.Name == wd.Name, gd.Name, wd.Name)
	check("description", gd.Description == wd.Description, gd.Description, wd.Description)
	check("category", gd.Category == wd.Category, gd.Category, wd.Category)
	check("brand", gd.Brand == wd.Brand, gd.Brand, wd.Brand)
	check("price", gd.Price == wd.Price, gd.Price, wd.Price)
	check("stock", gd.Stock == wd.Stock, gd.Stock, wd.Stock)
	check("attributes", maps.Equal(gd.Attributes, wd.Attributes), gd.Attributes, wd.Attributes)
	check("tags", slices.Equal(gd.Tags, wd.Tags) && gd.Tags != nil, gd.Tags, wd.Tags)
	check("version", got.Version == want.Version, got.Version, want.Version)
	check("created_at", got.CreatedAt.Equal(want.CreatedAt), got.CreatedAt, want.CreatedAt)
	check("updated_at", got.UpdatedAt.Equal(want.UpdatedAt), got.UpdatedAt, want.UpdatedAt)
	check("deleted_at", timeEqual(got.DeletedAt, want.DeletedAt), got.DeletedAt, want.DeletedAt)
	if len(diffs) == 0 {
		return ""
	}
	return fmt.Sprint(diffs)
}

func requireState(t *testing.T, what string, got *product.Product, want product.Snapshot) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: nil product", what)
	}
	if d := diffSnapshots(got.Snapshot(), want); d != "" {
		t.Fatalf("%s: %s", what, d)
	}
	for name, ts := range map[string]time.Time{"created_at": got.CreatedAt(), "updated_at": got.UpdatedAt()} {
		if ts.Nanosecond()%1000 != 0 {
			t.Errorf("%s: %s %v has sub-microsecond digits", what, name, ts)
		}
		if ts.Location() != time.UTC {
			t.Errorf("%s: %s %v is not in UTC", what, name, ts)
		}
	}
}

// eventsOf returns the events of one aggregate, in the order the fixture reports them.
func eventsOf(events []product.Event, id product.ID) []product.Event {
	var out []product.Event
	for _, e := range events {
		if e.AggregateID == id {
			out = append(out, e)
		}
	}
	return out
}

// requireEvents checks the events of one aggregate: the types in order, versions 1..n, each
// carrying the full state of its version (states[i] is the state at version i+1).
func requireEvents(t *testing.T, f Fixture, id product.ID, types []product.EventType, states []product.Snapshot) {
	t.Helper()
	all := f.Events(t)
	events := eventsOf(all, id)
	if len(events) != len(types) {
		got := make([]string, len(events))
		for i, e := range events {
			got[i] = fmt.Sprintf("%s@v%d", e.Type, e.AggregateVersion)
		}
		t.Fatalf("product %s: %d events %v, want %d %v", id, len(events), got, len(types), types)
	}
	seen := map[product.ID]bool{}
	for _, e := range all {
		if seen[e.ID] {
			t.Fatalf("event id %s emitted twice", e.ID)
		}
		seen[e.ID] = true
	}
	for i, e := range events {
		if e.Type != types[i] {
			t.Errorf("product %s event %d: type %s, want %s", id, i, e.Type, types[i])
		}
		if e.AggregateVersion != int64(i+1) || e.State.Version != e.AggregateVersion {
			t.Errorf("product %s event %d: aggregate_version %d state version %d, want %d", id, i, e.AggregateVersion, e.State.Version, i+1)
		}
		if e.ID == "" || e.ID == id {
			t.Errorf("product %s event %d: event id %q", id, i, e.ID)
		}
		if !e.OccurredAt.Equal(e.State.UpdatedAt) {
			t.Errorf("product %s event %d: occurred_at %v, state updated_at %v", id, i, e.OccurredAt, e.State.UpdatedAt)
		}
		if (e.Type == product.EventDeleted) != e.State.Deleted() {
			t.Errorf("product %s event %d: %s with deleted_at %v", id, i, e.Type, e.State.DeletedAt)
		}
		if states != nil {
			if d := diffSnapshots(e.State, states[i]); d != "" {
				t.Errorf("product %s event %d (%s) state: %s", id, i, e.Type, d)
			}
		}
	}
}

func requireEventCount(t *testing.T, f Fixture, want int) {
	t.Helper()
	if got := len(f.Events(t)); got != want {
		t.Fatalf("%d events emitted in total, want %d", got, want)
	}
}

func testAddGetRoundTrip(t *testing.T, f Fixture) {
	c := newClock()
	p := newProduct(t, c, "SKU-RT-1")
	want := p.Snapshot()
	if want.CreatedAt.Nanosecond()%1000 != 0 {
		t.Fatal("repotest: the domain did not normalise timestamps")
	}
	stored := add(t, f, p)
	requireState(t, "Add result", stored, want)
	got := get(t, f, want.ID)
	requireState(t, "Get", got, want)
	if got.IsDeleted() || got.DeletedAt() != nil {
		t.Fatal("new product reads back deleted")
	}
	if ev := got.PopEvents(); len(ev) != 0 {
		t.Fatalf("Get returned a product with %d pending events", len(ev))
	}

	// A product without optional fields and attributes round-trips too.
	d, err := product.NewDetails("SKU-RT-2", "Bare", "", "", "", 0, "JPY", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := c.Now()
	bare, err := product.New(product.NewID(now), d, now)
	if err != nil {
		t.Fatal(err)
	}
	bareWant := bare.Snapshot()
	add(t, f, bare)
	requireState(t, "Get bare", get(t, f, bareWant.ID), bareWant)

	requireEvents(t, f, want.ID, []product.EventType{product.EventCreated}, []product.Snapshot{want})
	requireEvents(t, f, bareWant.ID, []product.EventType{product.EventCreated}, []product.Snapshot{bareWant})
	requireEventCount(t, f, 2)
}

func testStoredStateIsNotAliased(t *testing.T, f Fixture) {
	c := newClock()
	p := newProduct(t, c, "SKU-ALIAS")
	want := p.Snapshot()
	stored := add(t, f, p)

	// Changing the products the caller holds, without Update, changes nothing stored.
	if err := p.ChangeStock(1, c.Now()); err != nil {
		t.Fatal(err)
	}
	if err := stored.ChangePrice(money(t, 1, "USD"), c.Now()); err != nil {
		t.Fatal(err)
	}
	got := get(t, f, want.ID)
	got.Details().Attributes["color"] = "green"
	if err := got.Delete(c.Now()); err != nil {
		t.Fatal(err)
	}
	requireState(t, "Get after changing returned copies", get(t, f, want.ID), want)

	// The product handed to updateFn is not stored either unless Update returns it.
	_, err := f.Repo.Update(ctxOf(t), want.ID, func(_ context.Context, p *product.Product) (*product.Product, error) {
		if err := p.ChangeStock(99, c.Now()); err != nil {
			return nil, err
		}
		return nil, errors.New("repotest: abort")
	})
	if err == nil {
		t.Fatal("Update: updateFn error swallowed")
	}
	updated := change(t, f, want.ID, 1, func(p *product.Product) error { return p.ChangeStock(3, c.Now()) })
	wantV2 := updated.Snapshot()
	if err := updated.ChangeStock(4, c.Now()); err != nil {
		t.Fatal(err)
	}
	requireState(t, "Get after changing the Update result", get(t, f, want.ID), wantV2)
	requireEventCount(t, f, 2)
}

func testGetUnknown(t *testing.T, f Fixture) {
	id := product.NewID(time.Now())
	p, err := f.Repo.Get(ctxOf(t), id)
	if !errors.Is(err, product.ErrNotFound) {
		t.Fatalf("Get unknown: %v, %v; want ErrNotFound", p, err)
	}
	if errors.Is(err, product.ErrDeleted) {
		t.Fatal("unknown product reported as deleted")
	}
}

func testUpdateUnknown(t *testing.T, f Fixture) {
	called := false
	_, err := f.Repo.Update(ctxOf(t), product.NewID(time.Now()), func(_ context.Context, p *product.Product) (*product.Product, error) {
		called = true
		return p, nil
	})
	if !errors.Is(err, product.ErrNotFound) {
		t.Fatalf("Update unknown: %v, want ErrNotFound", err)
	}
	if called {
		t.Fatal("updateFn called for an unknown product")
	}
	requireEventCount(t, f, 0)
}

func testDuplicateLiveSKU(t *testing.T, f Fixture) {
	c := newClock()
	first := newProduct(t, c, "SKU-DUP")
	add(t, f, first)
	second := newProduct(t, c, "SKU-DUP")
	stored, replayed, err := f.Repo.Add(ctxOf(t), second, nil)
	if !errors.Is(err, product.ErrDuplicateSKU) {
		t.Fatalf("Add duplicate SKU: %v, %v, %v; want ErrDuplicateSKU", stored, replayed, err)
	}
	if _, err := f.Repo.Get(ctxOf(t), second.ID()); !errors.Is(err, product.ErrNotFound) {
		t.Fatalf("Get refused product: %v, want ErrNotFound", err)
	}
	// SKUs are case-sensitive and exact: a different SKU is fine.
	add(t, f, newProduct(t, c, "sku-dup"))
	requireEventCount(t, f, 2)
	requireEvents(t, f, second.ID(), nil, nil)
}

func testUpdateToDuplicateSKU(t *testing.T, f Fixture) {
	c := newClock()
	a := newProduct(t, c, "SKU-A")
	add(t, f, a)
	b := newProduct(t, c, "SKU-B")
	bWant := b.Snapshot()
	add(t, f, b)
	_, err := f.Repo.Update(ctxOf(t), bWant.ID, func(_ context.Context, p *product.Product) (*product.Product, error) {
		d := p.Details()
		d.SKU = "SKU-A"
		if err := p.Update(d, c.Now()); err != nil {
			return nil, err
		}
		return p, nil
	})
	if !errors.Is(err, product.ErrDuplicateSKU) {
		t.Fatalf("Update to a live product's SKU: %v, want ErrDuplicateSKU", err)
	}
	requireState(t, "Get after refused update", get(t, f, bWant.ID), bWant)
	requireEventCount(t, f, 2)

	// Renaming to a free SKU frees the old one.
	change(t, f, bWant.ID, 1, func(p *product.Product) error {
		d := p.Details()
		d.SKU = "SKU-C"
		return p.Update(d, c.Now())
	})
	add(t, f, newProduct(t, c, "SKU-B"))
	requireEventCount(t, f, 4)
}

func testSKUReusableAfterDelete(t *testing.T, f Fixture) {
	c := newClock()
	old := newProduct(t, c, "SKU-REUSE")
	oldID := old.ID()
	add(t, f, old)
	deleted := change(t, f, oldID, 1, func(p *product.Product) error { return p.Delete(c.Now()) })
	reuse := newProduct(t, c, "SKU-REUSE")
	reuseWant := reuse.Snapshot()
	add(t, f, reuse)
	requireState(t, "Get new owner of the SKU", get(t, f, reuseWant.ID), reuseWant)
	tomb := get(t, f, oldID)
	requireState(t, "Get tombstone", tomb, deleted.Snapshot())
	if tomb.Details().SKU != "SKU-REUSE" {
		t.Fatal("the tombstone lost its SKU")
	}
	// The live product still guards the SKU.
	if _, _, err := f.Repo.Add(ctxOf(t), newProduct(t, c, "SKU-REUSE"), nil); !errors.Is(err, product.ErrDuplicateSKU) {
		t.Fatalf("third product with the SKU: %v, want ErrDuplicateSKU", err)
	}
	requireEventCount(t, f, 3)
}

func testIdempotencyKey(t *testing.T, f Fixture) {
	c := newClock()
	ctx := ctxOf(t)
	key := &product.IdempotencyKey{Key: "key-" + string(product.NewID(time.Now())), Fingerprint: "fp-1"}
	first := newProduct(t, c, "SKU-IDEM-1")
	firstWant := first.Snapshot()
	stored, replayed, err := f.Repo.Add(ctx, first, key)
	if err != nil || replayed {
		t.Fatalf("first Add with key: replayed=%v err=%v", replayed, err)
	}
	requireState(t, "first Add", stored, firstWant)

	// Same key and fingerprint: the first product, replayed, whatever the retry carries (a
	// retry builds a new product with a new id; here even its SKU differs).
	retry := newProduct(t, c, "SKU-IDEM-2")
	stored, replayed, err = f.Repo.Add(ctx, retry, &product.IdempotencyKey{Key: key.Key, Fingerprint: key.Fingerprint})
	if err != nil || !replayed {
		t.Fatalf("replay: replayed=%v err=%v, want replayed=true", replayed, err)
	}
	requireState(t, "replayed product", stored, firstWant)
	if _, err := f.Repo.Get(ctx, retry.ID()); !errors.Is(err, product.ErrNotFound) {
		t.Fatalf("the replayed request stored a second product: %v", err)
	}
	// A replay with the same SKU as the first product is a replay, not a duplicate SKU.
	sameSKU := newProduct(t, c, "SKU-IDEM-1")
	if stored, replayed, err = f.Repo.Add(ctx, sameSKU, key); err != nil || !replayed || stored.ID() != firstWant.ID {
		t.Fatalf("replay with the same SKU: %v, replayed=%v, err=%v", stored, replayed, err)
	}

	// Same key, other fingerprint: refused, nothing stored.
	other := newProduct(t, c, "SKU-IDEM-3")
	stored, replayed, err = f.Repo.Add(ctx, other, &product.IdempotencyKey{Key: key.Key, Fingerprint: "fp-2"})
	if !errors.Is(err, product.ErrIdempotencyKeyReused) {
		t.Fatalf("key reused with another fingerprint: %v, %v, %v; want ErrIdempotencyKeyReused", stored, replayed, err)
	}
	if _, err := f.Repo.Get(ctx, other.ID()); !errors.Is(err, product.ErrNotFound) {
		t.Fatalf("refused request stored a product: %v", err)
	}
	// The empty fingerprint is a fingerprint like any other.
	if _, _, err := f.Repo.Add(ctx, newProduct(t, c, "SKU-IDEM-4"), &product.IdempotencyKey{Key: key.Key}); !errors.Is(err, product.ErrIdempotencyKeyReused) {
		t.Fatalf("key reused with an empty fingerprint: %v", err)
	}
	requireEventCount(t, f, 1)

	// A replay returns the product as it is now.
	v2 := change(t, f, firstWant.ID, 1, func(p *product.Product) error { return p.ChangeStock(1, c.Now()) })
	stored, replayed, err = f.Repo.Add(ctx, newProduct(t, c, "SKU-IDEM-5"), key)
	if err != nil || !replayed {
		t.Fatalf("replay after update: replayed=%v err=%v", replayed, err)
	}
	requireState(t, "replay after update", stored, v2.Snapshot())

	// Another key with the same fingerprint is another request.
	key2 := &product.IdempotencyKey{Key: key.Key + "-2", Fingerprint: key.Fingerprint}
	fresh := newProduct(t, c, "SKU-IDEM-6")
	if stored, replayed, err = f.Repo.Add(ctx, fresh, key2); err != nil || replayed || stored.ID() != fresh.ID() {
		t.Fatalf("Add with a second key: %v, replayed=%v, err=%v", stored, replayed, err)
	}
	requireEventCount(t, f, 3)
	requireEvents(t, f, firstWant.ID, []product.EventType{product.EventCreated, product.EventStockChanged}, []product.Snapshot{firstWant, v2.Snapshot()})
}

func testFailedAddKeepsKeyFree(t *testing.T, f Fixture) {
	c := newClock()
	ctx := ctxOf(t)
	add(t, f, newProduct(t, c, "SKU-TAKEN"))
	key := &product.IdempotencyKey{Key: "key-" + string(product.NewID(time.Now())), Fingerprint: "fp-1"}
	if _, _, err := f.Repo.Add(ctx, newProduct(t, c, "SKU-TAKEN"), key); !errors.Is(err, product.ErrDuplicateSKU) {
		t.Fatalf("Add with key and duplicate SKU: %v, want ErrDuplicateSKU", err)
	}
	// The failed request did not claim the key: the corrected request (other body, so another
	// fingerprint) creates its product.
	next := newProduct(t, c, "SKU-FREE")
	stored, replayed, err := f.Repo.Add(ctx, next, &product.IdempotencyKey{Key: key.Key, Fingerprint: "fp-2"})
	if err != nil || replayed || stored.ID() != next.ID() {
		t.Fatalf("Add after a failed add with the same key: %v, replayed=%v, err=%v", stored, replayed, err)
	}
	requireEventCount(t, f, 2)
}

func testUpdateWithVersionCheck(t *testing.T, f Fixture) {
	c := newClock()
	p := newProduct(t, c, "SKU-VER")
	v1 := p.Snapshot()
	add(t, f, p)
	d := p.Details()
	d.Name = "Renamed"
	d.Attributes = map[string]string{"color": "blue"}
	updated := change(t, f, v1.ID, 1, func(p *product.Product) error { return p.Update(d, c.Now()) })
	v2 := updated.Snapshot()
	if v2.Version != 2 || v2.Details.Name != "Renamed" || !v2.UpdatedAt.After(v1.UpdatedAt) || !v2.CreatedAt.Equal(v1.CreatedAt) {
		t.Fatalf("Update result %+v", v2)
	}
	requireState(t, "Get after update", get(t, f, v1.ID), v2)

	_, err := f.Repo.Update(ctxOf(t), v1.ID, func(_ context.Context, p *product.Product) (*product.Product, error) {
		if err := p.CheckVersion(1); err != nil {
			return nil, err
		}
		if err := p.ChangeStock(0, c.Now()); err != nil {
			return nil, err
		}
		return p, nil
	})
	if !errors.Is(err, product.ErrVersionConflict) {
		t.Fatalf("Update at a stale version: %v, want ErrVersionConflict", err)
	}
	var vc *product.VersionConflictError
	if !errors.As(err, &vc) || vc.Expected != 1 || vc.Actual != 2 {
		t.Fatalf("conflict %v does not carry expected 1 and stored 2", err)
	}
	requireState(t, "Get after conflict", get(t, f, v1.ID), v2)
	requireEvents(t, f, v1.ID, []product.EventType{product.EventCreated, product.EventUpdated}, []product.Snapshot{v1, v2})
}

func testUpdateFnError(t *testing.T, f Fixture) {
	c := newClock()
	p := newProduct(t, c, "SKU-FNERR")
	want := p.Snapshot()
	add(t, f, p)
	errAbort := errors.New("repotest: abort")
	_, err := f.Repo.Update(ctxOf(t), want.ID, func(_ context.Context, p *product.Product) (*product.Product, error) {
		// Change first, then fail: the change must not be stored or announced.
		if err := p.ChangeStock(1, c.Now()); err != nil {
			return nil, err
		}
		if err := p.Delete(c.Now()); err != nil {
			return nil, err
		}
		return p, errAbort
	})
	if !errors.Is(err, errAbort) {
		t.Fatalf("Update: %v, want the updateFn error", err)
	}
	// Domain errors from updateFn keep their identity too.
	_, err = f.Repo.Update(ctxOf(t), want.ID, func(_ context.Context, p *product.Product) (*product.Product, error) {
		return nil, p.ChangeStock(-1, c.Now())
	})
	var ve *product.ValidationError
	if !errors.Is(err, product.ErrInvalid) || !errors.As(err, &ve) {
		t.Fatalf("Update with a validation error: %v", err)
	}
	requireState(t, "Get after failed updates", get(t, f, want.ID), want)
	requireEvents(t, f, want.ID, []product.EventType{product.EventCreated}, []product.Snapshot{want})
}

func testNoOpUpdate(t *testing.T, f Fixture) {
	c := newClock()
	p := newProduct(t, c, "SKU-NOOP")
	want := p.Snapshot()
	add(t, f, p)
	got := change(t, f, want.ID, 1, func(p *product.Product) error { return p.Update(p.Details(), c.Now()) })
	requireState(t, "no-op Update result", got, want)
	got = change(t, f, want.ID, 1, func(p *product.Product) error { return nil })
	requireState(t, "untouched Update result", got, want)
	requireState(t, "Get after no-op updates", get(t, f, want.ID), want)
	requireEvents(t, f, want.ID, []product.EventType{product.EventCreated}, []product.Snapshot{want})
}

func testSeveralChangesInOneUpdate(t *testing.T, f Fixture) {
	c := newClock()
	p := newProduct(t, c, "SKU-MULTI")
	v1 := p.Snapshot()
	add(t, f, p)
	var states []product.Snapshot
	got := change(t, f, v1.ID, 1, func(p *product.Product) error {
		if err := p.ChangePrice(money(t, 100, "USD"), c.Now()); err != nil {
			return err
		}
		states = append(states, p.Snapshot())
		if err := p.ChangeStock(0, c.Now()); err != nil {
			return err
		}
		states = append(states, p.Snapshot())
		return nil
	})
	if got.Version() != 3 {
		t.Fatalf("version %d, want 3", got.Version())
	}
	requireState(t, "Get", get(t, f, v1.ID), states[1])
	requireEvents(t, f, v1.ID,
		[]product.EventType{product.EventCreated, product.EventPriceChanged, product.EventStockChanged},
		append([]product.Snapshot{v1}, states...))
}

func testDeleteKeepsTombstone(t *testing.T, f Fixture) {
	c := newClock()
	p := newProduct(t, c, "SKU-DEL")
	v1 := p.Snapshot()
	add(t, f, p)
	deletedAt := c.Now()
	deleted := change(t, f, v1.ID, 1, func(p *product.Product) error { return p.Delete(deletedAt) })
	v2 := deleted.Snapshot()
	if !deleted.IsDeleted() || v2.Version != 2 || !v2.DeletedAt.Equal(deletedAt.Truncate(time.Microsecond)) {
		t.Fatalf("Delete result %+v", v2)
	}
	tomb := get(t, f, v1.ID)
	requireState(t, "Get tombstone", tomb, v2)
	if !tomb.IsDeleted() || tomb.DeletedAt().Nanosecond()%1000 != 0 || tomb.DeletedAt().Location() != time.UTC {
		t.Fatalf("tombstone deleted_at %v", tomb.DeletedAt())
	}
	if d := tomb.Details(); d.Name != v1.Details.Name || d.Stock != v1.Details.Stock {
		t.Fatal("the tombstone lost the last details")
	}

	// A tombstone cannot be changed or deleted again.
	for name, fn := range map[string]func(*product.Product) error{
		"delete": func(p *product.Product) error { return p.Delete(c.Now()) },
		"update": func(p *product.Product) error { return p.ChangeStock(1, c.Now()) },
	} {
		_, err := f.Repo.Update(ctxOf(t), v1.ID, func(_ context.Context, p *product.Product) (*product.Product, error) {
			if err := fn(p); err != nil {
				return nil, err
			}
			return p, nil
		})
		if !errors.Is(err, product.ErrDeleted) {
			t.Fatalf("%s of a tombstone: %v, want ErrDeleted", name, err)
		}
	}
	requireState(t, "Get tombstone again", get(t, f, v1.ID), v2)
	requireEvents(t, f, v1.ID, []product.EventType{product.EventCreated, product.EventDeleted}, []product.Snapshot{v1, v2})
}

func testOneEventPerVersion(t *testing.T, f Fixture) {
	c := newClock()
	a, b := newProduct(t, c, "SKU-EV-A"), newProduct(t, c, "SKU-EV-B")
	aStates, bStates := []product.Snapshot{a.Snapshot()}, []product.Snapshot{b.Snapshot()}
	add(t, f, a)
	add(t, f, b)
	step := func(p product.ID, states *[]product.Snapshot, fn func(*product.Product) error) {
		t.Helper()
		got := change(t, f, p, int64(len(*states)), fn)
		if got.Version() != int64(len(*states)) {
			*states = append(*states, got.Snapshot())
		}
	}
	step(a.ID(), &aStates, func(p *product.Product) error { return p.ChangePrice(money(t, 5, "EUR"), c.Now()) })
	step(b.ID(), &bStates, func(p *product.Product) error { return p.ChangeStock(3, c.Now()) })
	step(a.ID(), &aStates, func(p *product.Product) error { return p.ChangeStock(3, c.Now()) })
	step(a.ID(), &aStates, func(p *product.Product) error { return p.ChangeStock(3, c.Now()) }) // no-op
	step(b.ID(), &bStates, func(p *product.Product) error {
		d := p.Details()
		d.Description = "new"
		return p.Update(d, c.Now())
	})
	step(a.ID(), &aStates, func(p *product.Product) error {
		d := p.Details()
		d.Price, d.Stock = money(t, 6, "EUR"), 4
		return p.Update(d, c.Now())
	})
	step(b.ID(), &bStates, func(p *product.Product) error { return p.Delete(c.Now()) })
	step(a.ID(), &aStates, func(p *product.Product) error { return p.Delete(c.Now()) })

	requireEvents(t, f, a.ID(), []product.EventType{product.EventCreated, product.EventPriceChanged, product.EventStockChanged,
		product.EventUpdated, product.EventDeleted}, aStates)
	requireEvents(t, f, b.ID(), []product.EventType{product.EventCreated, product.EventStockChanged, product.EventUpdated,
		product.EventDeleted}, bStates)
	requireEventCount(t, f, len(aStates)+len(bStates))
	requireState(t, "Get a", get(t, f, a.ID()), aStates[len(aStates)-1])
	requireState(t, "Get b", get(t, f, b.ID()), bStates[len(bStates)-1])
}

func testConcurrentUpdates(t *testing.T, f Fixture) {
	const writers = 16
	c := newClock()
	p := newProduct(t, c, "SKU-RACE")
	v1 := p.Snapshot()
	add(t, f, p)
	ctx := ctxOf(t)

	start := make(chan struct{})
	results := make([]*product.Product, writers)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			<-start
			results[i], errs[i] = f.Repo.Update(ctx, v1.ID, func(_ context.Context, p *product.Product) (*product.Product, error) {
				if err := p.CheckVersion(1); err != nil {
					return nil, err
				}
				if err := p.ChangeStock(int64(1000+i), c.Now()); err != nil {
					return nil, err
				}
				return p, nil
			})
		})
	}
	close(start)
	wg.Wait()

	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("writers %d and %d both succeeded at version 1", winner, i)
			}
			winner = i
		case !errors.Is(err, product.ErrVersionConflict):
			t.Errorf("writer %d: %v, want ErrVersionConflict", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer succeeded")
	}
	got := get(t, f, v1.ID)
	if got.Version() != 2 || got.Details().Stock != int64(1000+winner) {
		t.Fatalf("stored version %d stock %d, want version 2 stock %d", got.Version(), got.Details().Stock, 1000+winner)
	}
	requireState(t, "winner's result", results[winner], got.Snapshot())
	requireEvents(t, f, v1.ID, []product.EventType{product.EventCreated, product.EventStockChanged}, []product.Snapshot{v1, got.Snapshot()})
}

func testCancelledContext(t *testing.T, f Fixture) {
	c := newClock()
	p := newProduct(t, c, "SKU-CTX")
	want := p.Snapshot()
	add(t, f, p)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	q := newProduct(t, c, "SKU-CTX-2")
	if _, _, err := f.Repo.Add(ctx, q, nil); err == nil {
		t.Fatal("Add with a cancelled context succeeded")
	}
	_, err := f.Repo.Update(ctx, want.ID, func(_ context.Context, p *product.Product) (*product.Product, error) {
		if err := p.ChangeStock(0, c.Now()); err != nil {
			return nil, err
		}
		return p, nil
	})
	if err == nil {
		t.Fatal("Update with a cancelled context succeeded")
	}
	if _, err := f.Repo.Get(ctxOf(t), q.ID()); !errors.Is(err, product.ErrNotFound) {
		t.Fatalf("Add with a cancelled context stored the product: %v", err)
	}
	requireState(t, "Get after cancelled update", get(t, f, want.ID), want)
	requireEventCount(t, f, 1)
}

func testConcurrentAddsOneSKU(t *testing.T, f Fixture) {
	const writers = 8
	c := newClock()
	ctx := ctxOf(t)
	products := make([]*product.Product, writers)
	for i := range products {
		products[i] = newProduct(t, c, "SKU-RACE-ADD")
	}
	errs := make([]error, writers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			<-start
			_, _, errs[i] = f.Repo.Add(ctx, products[i], nil)
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("products %d and %d both stored with one SKU", winner, i)
			}
			winner = i
		case !errors.Is(err, product.ErrDuplicateSKU):
			t.Errorf("writer %d: %v, want ErrDuplicateSKU", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no product stored")
	}
	for i, p := range products {
		_, err := f.Repo.Get(ctx, p.ID())
		if (i == winner) != (err == nil) {
			t.Errorf("Get product %d (winner %d): %v", i, winner, err)
		}
	}
	requireEventCount(t, f, 1)
}

func testConcurrentAddsOneKey(t *testing.T, f Fixture) {
	const writers = 8
	c := newClock()
	ctx := ctxOf(t)
	key := product.IdempotencyKey{Key: "key-" + string(product.NewID(time.Now())), Fingerprint: "fp"}
	type result struct {
		stored   *product.Product
		replayed bool
		err      error
	}
	products := make([]*product.Product, writers)
	for i := range products {
		products[i] = newProduct(t, c, fmt.Sprintf("SKU-RACE-KEY-%d", i))
	}
	results := make([]result, writers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			<-start
			k := key
			r := &results[i]
			r.stored, r.replayed, r.err = f.Repo.Add(ctx, products[i], &k)
		})
	}
	close(start)
	wg.Wait()
	var created product.ID
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("writer %d: %v", i, r.err)
		}
		if !r.replayed {
			if created != "" {
				t.Fatalf("two products created for one idempotency key: %s and %s", created, r.stored.ID())
			}
			created = r.stored.ID()
		}
	}
	if created == "" {
		t.Fatal("every request was a replay")
	}
	for i, r := range results {
		if r.stored.ID() != created {
			t.Errorf("writer %d got product %s, want %s", i, r.stored.ID(), created)
		}
	}
	requireEventCount(t, f, 1)
}

func testRoundTripAtLimits(t *testing.T, f Fixture) {
	c := newClock()
	rep := func(s string, n int) string {
		out := make([]rune, 0, n)
		for len(out) < n {
			out = append(out, []rune(s)...)
		}
		return string(out[:n])
	}
	attrs := make(map[string]string, product.MaxAttributes)
	for i := range product.MaxAttributes - 1 {
		attrs[fmt.Sprintf("k%02d \"quoted\" \\ \u2028", i)] = fmt.Sprintf("v%d <&> \t\n", i)
	}
	attrs[rep("ключ", product.MaxAttributeKey)] = rep("значение🎉", product.MaxAttributeValue)
	tags := make([]string, product.MaxTags)
	for i := range tags {
		tags[i] = rep(fmt.Sprintf("%02d \"tag\" ü🎉", i), product.MaxTagLength)
	}
	d, err := product.NewDetails(rep("A-._/9", product.MaxSKULength), rep("名前", product.MaxNameLength),
		rep("descr\u00e9 \r\n", product.MaxDescriptionLength), rep("cat", product.MaxCategoryLength), rep("brand", product.MaxBrandLength),
		product.MaxAmount, "CHF", product.MaxStock, attrs, tags...)
	if err != nil {
		t.Fatal(err)
	}
	now := c.Now()
	p, err := product.New(product.NewID(now), d, now)
	if err != nil {
		t.Fatal(err)
	}
	want := p.Snapshot()
	add(t, f, p)
	requireState(t, "Get", get(t, f, want.ID), want)
	requireEvents(t, f, want.ID, []product.EventType{product.EventCreated}, []product.Snapshot{want})
}
