package bleve

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/marketplace/catalog/application/query"
	"github.com/marketplace/catalog/domain/product"
)

// An index an earlier release created (mapping version 1, no tags) stays the live index after
// an upgrade until a rebuild: this release's documents, tags included, are written to it without
// an error (the field is simply not indexed there), and the rebuild's new index serves the tags
// filter.
func TestOldIndexTakesNewDocumentsUntilARebuild(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, Alias: "upgrade"}
	c := context.Background()
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	s.adminMu.Lock()
	old, err := s.createIndex(c, 1)
	s.adminMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(old, "_v1_") {
		t.Fatalf("old index %s", old)
	}
	if err := s.SwitchAlias(c, "", old); err != nil {
		t.Fatal(err)
	}
	d, err := product.NewDetails("UP-1", "Upgrade lamp", "", "lighting", "Acme", 100, "EUR", 1, nil, "sale", "eco")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	p, err := product.New(product.NewID(now), d, now)
	if err != nil {
		t.Fatal(err)
	}
	snap := p.Snapshot()
	if err := s.Apply(c, snap); err != nil {
		t.Fatalf("a v2 document on a v1 index: %v", err)
	}
	search := func(q query.SearchProducts) query.SearchResult {
		t.Helper()
		res, err := s.Search(c, q)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	res := search(query.SearchProducts{Text: "upgrade"})
	if len(res.Items) != 1 || !slices.Equal(res.Items[0].Tags, []string{"sale", "eco"}) {
		t.Fatalf("v1 index: %+v", res.Items)
	}
	if res := search(query.SearchProducts{Tags: []string{"sale"}}); res.Total != 0 {
		t.Fatalf("the tags filter on a v1 index found %d; its mapping has no tags", res.Total)
	}
	// The category and brand facets count doc values the older mapping did not keep: the
	// search says so (and to rebuild) instead of answering with empty facets.
	if _, err := s.Search(c, query.SearchProducts{Facets: []query.Facet{query.FacetBrand}}); !errors.Is(err, query.ErrReadModelUnavailable) || !strings.Contains(err.Error(), "rebuild") {
		t.Fatalf("brand facet on a v1 index: %v, want ErrReadModelUnavailable naming the rebuild", err)
	}
	if res := search(query.SearchProducts{Facets: []query.Facet{query.FacetTags, query.FacetPrice}}); res.Facets == nil || res.Facets.Price[0].Count != 1 {
		t.Fatalf("price facet on a v1 index: %+v", res.Facets)
	}
	list, err := s.ListIndices(c)
	if err != nil || len(list) != 1 || list[0].MappingVersion != 1 {
		t.Fatalf("ListIndices = %+v, %v", list, err)
	}

	// The rebuild: a new index of the current mapping, filled, switched to.
	next, err := s.CreateIndex(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(next, fmt.Sprintf("_v%d_", MappingVersion)) {
		t.Fatalf("new index %s", next)
	}
	if err := s.Write(c, next, []product.Snapshot{snap}); err != nil {
		t.Fatal(err)
	}
	if err := s.SwitchAlias(c, old, next); err != nil {
		t.Fatal(err)
	}
	if res := search(query.SearchProducts{Tags: []string{"eco"}}); res.Total != 1 {
		t.Fatalf("the tags filter on the new index found %d, want 1", res.Total)
	}
	if res := search(query.SearchProducts{Facets: []query.Facet{query.FacetBrand}}); res.Facets == nil || len(res.Facets.Brand) != 1 || res.Facets.Brand[0] != (query.FacetValue{Value: "Acme", Count: 1}) {
		t.Fatalf("brand facet on the new index: %+v", res.Facets)
	}

	// The old index keeps its own mapping across a restart.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SwitchAlias(c, next, old); err != nil {
		t.Fatal(err)
	}
	if res := search(query.SearchProducts{Tags: []string{"eco"}}); res.Total != 0 {
		t.Fatalf("the reopened v1 index found %d by tag", res.Total)
	}
}
