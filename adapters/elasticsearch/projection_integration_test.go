package elasticsearch_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/marketplace/catalog/adapters/elasticsearch"
	"github.com/marketplace/catalog/application/command"
	"github.com/marketplace/catalog/application/query"
	"github.com/marketplace/catalog/domain/readmodel"
	"github.com/marketplace/catalog/internal/readmodeltest"
)

func TestApplyIsOrderIndependentAndIdempotent(t *testing.T) {
	e := rmSetup(t, nil)
	e.ensure()
	p := e.projection()
	ctx := e.ctx()
	id := readmodeltest.NewID()
	v := func(n int64) readmodeltest.Product {
		return readmodeltest.Product{ID: id, Version: n, Name: fmt.Sprintf("Name v%d", n), Amount: 100 * n, Stock: n}
	}
	for _, n := range []int64{3, 1, 2, 3, 1} {
		if err := p.Apply(ctx, v(n).Snapshot(t)); err != nil {
			t.Fatalf("Apply v%d: %v", n, err)
		}
	}
	d := e.getDoc(id)
	if !d.Found || d.Version != 3 {
		t.Fatalf("document found=%v version=%d, want version 3", d.Found, d.Version)
	}
	if d.Source["name"] != "Name v3" || d.Source["version"] != float64(3) || d.Source["deleted"] != false {
		t.Fatalf("document holds %v, want v3 content", d.Source)
	}
	if price := d.Source["price"].(map[string]any); price["amount"] != float64(300) || price["currency"] != "EUR" {
		t.Fatalf("price = %v", price)
	}
}

func TestTombstoneBeatsOlderEventsAfterGCDeletes(t *testing.T) {
	e := rmSetup(t, func(c *elasticsearch.Config) {
		c.ExtraIndexSettings = map[string]any{"index.gc_deletes": "1s"}
	})
	e.ensure()
	p := e.projection()
	ctx := e.ctx()
	id := readmodeltest.NewID()
	live := readmodeltest.Product{ID: id, Version: 1, Name: "Phoenix lamp", Amount: 500, Stock: 1}
	if err := p.Apply(ctx, live.Snapshot(t)); err != nil {
		t.Fatal(err)
	}
	tomb := live
	tomb.Version, tomb.Deleted = 2, true
	if err := p.Apply(ctx, tomb.Snapshot(t)); err != nil {
		t.Fatal(err)
	}
	// Longer than gc_deletes: a real delete would have been forgotten by now.
	time.Sleep(1500 * time.Millisecond)
	if err := p.Apply(ctx, live.Snapshot(t)); err != nil {
		t.Fatalf("replayed create: %v", err)
	}
	e.refresh()
	d := e.getDoc(id)
	if !d.Found || d.Version != 2 || d.Source["deleted"] != true || d.Source["deleted_at"] == nil {
		t.Fatalf("document = %+v, want the v2 tombstone", d)
	}
	res, err := e.search().Search(ctx, query.SearchProducts{Text: "phoenix"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Total != 0 || len(res.Items) != 0 {
		t.Fatalf("tombstone is visible: %+v", res)
	}
	if live, tombs, err := e.ix.Count(ctx, ""); err != nil || live != 0 || tombs != 1 {
		t.Fatalf("Count = %d, %d, %v; want 0 live, 1 tombstone", live, tombs, err)
	}
}

func TestApplyMappingRejectionIsPermanent(t *testing.T) {
	e := rmSetup(t, nil)
	ctx := e.ctx()
	// An index with a narrower mapping than the code's: price.amount is an integer.
	narrow := readmodel.IndexName(e.cfg.Alias, elasticsearch.MappingVersion, time.Now())
	status := e.rawJSON(http.MethodPut, "/"+narrow, map[string]any{
		"settings": map[string]any{"number_of_shards": 1, "number_of_replicas": 0},
		"mappings": map[string]any{
			"dynamic": "strict",
			"properties": map[string]any{
				"id": map[string]any{"type": "keyword"}, "sku": map[string]any{"type": "keyword"},
				"name": map[string]any{"type": "text"}, "description": map[string]any{"type": "text"},
				"category": map[string]any{"type": "text"}, "brand": map[string]any{"type": "text"},
				"price": map[string]any{"properties": map[string]any{
					"amount": map[string]any{"type": "integer"}, "currency": map[string]any{"type": "keyword"},
				}},
				"stock": map[string]any{"type": "long"}, "version": map[string]any{"type": "long"},
				"attributes": map[string]any{"type": "nested", "properties": map[string]any{
					"key": map[string]any{"type": "keyword"}, "value": map[string]any{"type": "keyword"},
				}},
				"created_at": map[string]any{"type": "date"}, "updated_at": map[string]any{"type": "date"},
				"deleted": map[string]any{"type": "boolean"}, "deleted_at": map[string]any{"type": "date"},
				"tags": map[string]any{"type": "keyword"},
			},
		},
	}, nil)
	if status != http.StatusOK {
		t.Fatalf("create narrow index: status %d", status)
	}
	if err := e.ix.SwitchAlias(ctx, "", narrow); err != nil {
		t.Fatal(err)
	}
	p := e.projection()
	if err := p.Apply(ctx, readmodeltest.Product{ID: readmodeltest.NewID(), Amount: 1 << 20}.Snapshot(t)); err != nil {
		t.Fatalf("a price that fits: %v", err)
	}
	err := p.Apply(ctx, readmodeltest.Product{ID: readmodeltest.NewID(), Amount: 3_000_000_000}.Snapshot(t))
	if !errors.Is(err, command.ErrProjectionRejected) {
		t.Fatalf("Apply(price > 2^31) = %v, want ErrProjectionRejected", err)
	}
	t.Logf("rejection: %v", err)
}

func TestApplyWithoutAliasIsTransientAndCreatesNoIndex(t *testing.T) {
	e := rmSetup(t, nil)
	p := e.projection()
	err := p.Apply(e.ctx(), readmodeltest.Product{ID: readmodeltest.NewID(), Amount: 100}.Snapshot(t))
	if err == nil || errors.Is(err, command.ErrProjectionRejected) {
		t.Fatalf("Apply without alias = %v, want a transient error", err)
	}
	t.Logf("transient: %v", err)
	if status := e.rawJSON(http.MethodHead, "/"+e.cfg.Alias, nil, nil); status != http.StatusNotFound {
		t.Fatalf("HEAD /%s = %d: something was created under the alias name", e.cfg.Alias, status)
	}
	if got := e.aliasIndices(); len(got) != 0 {
		t.Fatalf("alias appeared: %v", got)
	}
}

func TestApplyConcurrentWritesAllLand(t *testing.T) {
	e := rmSetup(t, nil)
	e.ensure()
	p := e.projection()
	ctx := e.ctx()
	const goroutines, perGoroutine = 12, 500
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	start := time.Now()
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perGoroutine {
				s := readmodeltest.Product{ID: readmodeltest.NewID(), Name: fmt.Sprintf("Bulk %d-%d", g, i), Amount: int64(i), Stock: int64(g),
					Attributes: map[string]string{"g": fmt.Sprint(g)}}.Snapshot(t)
				if err := p.Apply(ctx, s); err != nil {
					errs <- fmt.Errorf("goroutine %d item %d: %w", g, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	e.refresh()
	live, tomb, err := e.ix.Count(ctx, "")
	if err != nil || live != goroutines*perGoroutine || tomb != 0 {
		t.Fatalf("Count = %d, %d, %v; want %d live", live, tomb, err, goroutines*perGoroutine)
	}
	st := p.Stats()
	t.Logf("%d docs from %d goroutines in %s: %.0f docs/s, %d bulk requests (%.1f docs/request)",
		goroutines*perGoroutine, goroutines, elapsed.Round(time.Millisecond),
		float64(goroutines*perGoroutine)/elapsed.Seconds(), st.NumRequests, float64(st.NumFlushed)/float64(max(st.NumRequests, 1)))
}

func TestApplyAfterCloseAndCancelledContext(t *testing.T) {
	e := rmSetup(t, nil)
	e.ensure()
	p := e.projection()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Apply(ctx, readmodeltest.Product{ID: readmodeltest.NewID()}.Snapshot(t)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply(cancelled ctx) = %v, want context.Canceled", err)
	}
	if err := p.Apply(e.ctx(), readmodeltest.Product{ID: readmodeltest.NewID()}.Snapshot(t)); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(e.ctx()); err != nil {
		t.Fatal(err)
	}
	err := p.Apply(e.ctx(), readmodeltest.Product{ID: readmodeltest.NewID()}.Snapshot(t))
	if !errors.Is(err, elasticsearch.ErrProjectionClosed) || errors.Is(err, command.ErrProjectionRejected) {
		t.Fatalf("Apply after Close = %v, want ErrProjectionClosed", err)
	}
}
