// Package readmodeltest is the contract of the search read model: one suite that every adapter
// of the read-model ports (command.ProductProjection, query.ProductSearchReadModel and
// rebuild.Target) passes — the in-memory adapter, the embedded Bleve engine and Elasticsearch.
// Differences in behaviour between adapters are bugs, except relevance scores: the suite never
// compares the order of hits with different scores.
package readmodeltest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/marketplace/catalog/application/command"
	"github.com/marketplace/catalog/application/query"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/product"
)

// Fixture is one adapter's read model under test. Every call of the suite's newFixture must
// return a read model of its own (a fresh alias, or a fresh directory) WITHOUT an alias yet;
// the suite calls EnsureAlias where a case needs one.
type Fixture struct {
	// Alias is the alias the read model serves; index names derive from it.
	Alias string
	// Projection, Search and Target are the three ports, all over the same alias.
	Projection command.ProductProjection
	Search     query.ProductSearchReadModel
	Target     rebuild.Target
	// Versions reports the versions searches see, for read-your-writes.
	Versions query.VisibleVersionsReader
	// EnsureAlias creates the first index and points the alias at it when there is no alias,
	// as the service does on startup, and returns the alias's index.
	EnsureAlias func(ctx context.Context) (string, error)
	// Refresh makes every write through the alias visible to Search and Documents; nil when
	// writes are visible as soon as they return.
	Refresh func(ctx context.Context) error
}

// RunReadModelContract runs the contract against the adapter newFixture builds.
func RunReadModelContract(t *testing.T, newFixture func(t *testing.T) Fixture) {
	t.Run("apply", func(t *testing.T) { runFixtureCases(t, newFixture, applyCases) })
	t.Run("search", func(t *testing.T) { runSearch(t, newFixture) })
	t.Run("facets", func(t *testing.T) { runFacets(t, newFixture) })
	t.Run("relevance", func(t *testing.T) { runRelevance(t, newFixture) })
	t.Run("highlight", func(t *testing.T) { runHighlight(t, newFixture) })
	t.Run("read your writes", func(t *testing.T) { runFixtureCases(t, newFixture, visibilityCases) })
	t.Run("target", func(t *testing.T) { runFixtureCases(t, newFixture, targetCases) })
}

// fixtureCase is one named property of the contract, checked on a read model of its own so
// that cases cannot see each other's documents.
type fixtureCase struct {
	name string
	// noAlias leaves the read model without its alias, as before the service's first start.
	noAlias bool
	run     func(t *testing.T, e *env)
}

// runFixtureCases runs each case as a subtest named after the property it pins.
func runFixtureCases(t *testing.T, newFixture func(t *testing.T) Fixture, cases []fixtureCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, setup(t, newFixture, !tc.noAlias))
		})
	}
}

// env is a fixture in one test.
type env struct {
	t *testing.T
	Fixture
}

func setup(t *testing.T, newFixture func(t *testing.T) Fixture, withAlias bool) *env {
	t.Helper()
	e := &env{t: t, Fixture: newFixture(t)}
	if withAlias {
		if _, err := e.EnsureAlias(e.ctx()); err != nil {
			t.Fatalf("EnsureAlias: %v", err)
		}
	}
	return e
}

func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	e.t.Cleanup(cancel)
	return ctx
}

func (e *env) refresh() {
	e.t.Helper()
	if e.Refresh == nil {
		return
	}
	if err := e.Refresh(e.ctx()); err != nil {
		e.t.Fatalf("Refresh: %v", err)
	}
}

func (e *env) apply(snaps ...product.Snapshot) {
	e.t.Helper()
	for _, s := range snaps {
		if err := e.Projection.Apply(e.ctx(), s); err != nil {
			e.t.Fatalf("Apply %s v%d: %v", s.ID, s.Version, err)
		}
	}
}

func (e *env) search(q query.SearchProducts) query.SearchResult {
	e.t.Helper()
	res, err := e.Search.Search(e.ctx(), q)
	if err != nil {
		e.t.Fatalf("Search(%+v): %v", q, err)
	}
	return res
}

func (e *env) aliasTarget() string {
	e.t.Helper()
	name, err := e.Target.AliasTarget(e.ctx())
	if err != nil {
		e.t.Fatalf("AliasTarget: %v", err)
	}
	return name
}

// createIndex creates a new index of the alias, as a rebuild does first.
func (e *env) createIndex() string {
	e.t.Helper()
	name, err := e.Target.CreateIndex(e.ctx())
	if err != nil {
		e.t.Fatalf("CreateIndex: %v", err)
	}
	return name
}

// documents pages through all documents of index with the given page size, checking the
// order on the way.
func (e *env) documents(index string, pageSize int) []rebuild.DocVersion {
	e.t.Helper()
	var all []rebuild.DocVersion
	after := ""
	for range 10_000 {
		page, err := e.Target.Documents(e.ctx(), index, after, pageSize)
		if err != nil {
			e.t.Fatalf("Documents(%s, %q, %d): %v", index, after, pageSize, err)
		}
		if len(page) > pageSize {
			e.t.Fatalf("Documents(%s, %q, %d) returned %d documents", index, after, pageSize, len(page))
		}
		for _, d := range page {
			if d.ID <= after {
				e.t.Fatalf("Documents(%s, %q): %s is not after %q (order or afterID broken)", index, after, d.ID, after)
			}
			after = d.ID
		}
		all = append(all, page...)
		if len(page) < pageSize {
			return all
		}
	}
	e.t.Fatalf("Documents(%s) does not end", index)
	return nil
}

func (e *env) doc(index string, id product.ID) (rebuild.DocVersion, bool) {
	e.t.Helper()
	for _, d := range e.documents(index, 1000) {
		if d.ID == string(id) {
			return d, true
		}
	}
	return rebuild.DocVersion{}, false
}

func names(items []query.ProductView) []string {
	out := make([]string, 0, len(items))
	for _, it := range items {
		out = append(out, it.Name)
	}
	return out
}

func sameSet(got, want []string) bool {
	a, b := slices.Clone(got), slices.Clone(want)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func ptr[T any](v T) *T { return &v }

func ids(snaps []product.Snapshot) []string {
	out := make([]string, len(snaps))
	for i, s := range snaps {
		out[i] = string(s.ID)
	}
	return out
}
