// Package readmodeltest is the contract of the search read model: one suite that every adapter
// of the read-model ports (command.ProductProjection, query.ProductSearchReadModel and
// rebuild.Target) passes — the in-memory adapter, the embedded Bleve engine and Elasticsearch.
// Differences in behaviour between adapters are bugs, except relevance scores: the suite never
// compares the order of hits with different scores.
package readmodeltest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marketplace/catalog/application/command"
	"github.com/marketplace/catalog/application/query"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/domain/readmodel"
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
	t.Run("apply", func(t *testing.T) { runApply(t, newFixture) })
	t.Run("search", func(t *testing.T) { runSearch(t, newFixture) })
	t.Run("facets", func(t *testing.T) { runFacets(t, newFixture) })
	t.Run("relevance", func(t *testing.T) { runRelevance(t, newFixture) })
	t.Run("highlight", func(t *testing.T) { runHighlight(t, newFixture) })
	t.Run("read your writes", func(t *testing.T) { runVisibility(t, newFixture) })
	t.Run("target", func(t *testing.T) { runTarget(t, newFixture) })
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

// Product describes a test product; Snapshot turns it into the domain snapshot.
type Product struct {
	ID          product.ID
	Version     int64
	SKU         string
	Name        string
	Description string
	Category    string
	Brand       string
	Amount      int64
	Currency    string
	Stock       int64
	Attributes  map[string]string
	Tags        []string
	Created     time.Time
	Deleted     bool
}

// Snapshot is the domain snapshot of p, with defaults for what p leaves empty.
func (p Product) Snapshot(t testing.TB) product.Snapshot {
	t.Helper()
	if p.ID == "" {
		p.ID = NewID()
	}
	sku := p.SKU
	if sku == "" {
		sku = "SKU-" + string(p.ID)[24:]
	}
	cur := p.Currency
	if cur == "" {
		cur = "EUR"
	}
	name := p.Name
	if name == "" {
		name = "Product " + string(p.ID)[24:]
	}
	d, err := product.NewDetails(sku, name, p.Description, p.Category, p.Brand, p.Amount, cur, p.Stock, p.Attributes, p.Tags...)
	if err != nil {
		t.Fatalf("NewDetails: %v", err)
	}
	created := p.Created
	if created.IsZero() {
		created = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	v := p.Version
	if v == 0 {
		v = 1
	}
	s := product.Snapshot{ID: p.ID, Details: d, Version: v, CreatedAt: created, UpdatedAt: created.Add(time.Duration(v) * time.Minute)}
	if p.Deleted {
		at := s.UpdatedAt
		s.DeletedAt = &at
	}
	return s
}

// NewID returns a fresh product id.
func NewID() product.ID { return product.NewID(time.Now()) }

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

func runApply(t *testing.T, newFixture func(t *testing.T) Fixture) {
	t.Run("out of order ends at the newest version", func(t *testing.T) {
		e := setup(t, newFixture, true)
		id := NewID()
		v := func(n int64, name string) product.Snapshot {
			return Product{ID: id, Version: n, Name: name, Category: "order"}.Snapshot(t)
		}
		e.apply(v(3, "Gamma three"), v(1, "Alpha one"), v(2, "Beta two"))
		e.refresh()
		d, ok := e.doc(e.aliasTarget(), id)
		if !ok || d.Version != 3 || d.Deleted {
			t.Fatalf("document = %+v (found %v), want v3 live", d, ok)
		}
		res := e.search(query.SearchProducts{Category: "order"})
		if len(res.Items) != 1 || res.Items[0].Name != "Gamma three" || res.Items[0].Version != 3 || res.Total != 1 {
			t.Fatalf("search = %+v, want only Gamma three v3", res)
		}
		for _, old := range []string{"alpha", "beta"} {
			if res := e.search(query.SearchProducts{Text: old}); res.Total != 0 {
				t.Errorf("q=%s finds %v: an older version overwrote the newest", old, names(res.Items))
			}
		}
	})

	// An equal version is the same event again (one event per version carries the full
	// state), so re-applying it must leave the document as it is. Elasticsearch's
	// external_gte (docs/ARCHITECTURE.md, "Guarantees") re-writes it with the same content; other adapters may
	// skip the write. Two different states at one version cannot occur and are not pinned.
	t.Run("equal version is idempotent", func(t *testing.T) {
		e := setup(t, newFixture, true)
		id := NewID()
		e.apply(Product{ID: id, Version: 2, Name: "Original widget"}.Snapshot(t))
		e.apply(Product{ID: id, Version: 2, Name: "Original widget"}.Snapshot(t))
		e.refresh()
		res := e.search(query.SearchProducts{Text: "widget"})
		if len(res.Items) != 1 || res.Items[0].Name != "Original widget" || res.Items[0].Version != 2 {
			t.Fatalf("after the same v2 twice: %v (total %d), want one Original widget at v2", names(res.Items), res.Total)
		}
		if d, ok := e.doc(e.aliasTarget(), id); !ok || d.Version != 2 {
			t.Fatalf("document = %+v (found %v), want v2", d, ok)
		}
	})

	t.Run("tombstone hides and an older create never resurrects", func(t *testing.T) {
		e := setup(t, newFixture, true)
		deleted := NewID()
		e.apply(Product{ID: deleted, Version: 1, Name: "Tombstone lamp", Category: "tomb", Amount: 100, Stock: 1}.Snapshot(t))
		e.refresh()
		if res := e.search(query.SearchProducts{Text: "tombstone"}); res.Total != 1 {
			t.Fatalf("before delete: total %d, want 1", res.Total)
		}
		e.apply(Product{ID: deleted, Version: 2, Name: "Tombstone lamp", Category: "tomb", Amount: 100, Stock: 1, Deleted: true}.Snapshot(t))
		e.apply(Product{ID: deleted, Version: 1, Name: "Tombstone lamp", Category: "tomb", Amount: 100, Stock: 1}.Snapshot(t))
		// Deleted before it was created (the delete event arrived first).
		early := NewID()
		e.apply(Product{ID: early, Version: 2, Name: "Tombstone chair", Category: "tomb", Deleted: true}.Snapshot(t))
		e.apply(Product{ID: early, Version: 1, Name: "Tombstone chair", Category: "tomb"}.Snapshot(t))
		live := NewID()
		e.apply(Product{ID: live, Version: 1, Name: "Living table", Category: "tomb", Amount: 100, Stock: 1}.Snapshot(t))
		e.refresh()
		for _, q := range []query.SearchProducts{
			{Text: "tombstone"}, {Text: "lamp"}, {Category: "tomb"}, {Category: "tomb", Sort: query.SortPriceAsc},
			{MinPrice: ptr(int64(100)), MaxPrice: ptr(int64(100))}, {Category: "tomb", InStock: ptr(true)}, {Sort: query.SortNewest},
		} {
			res := e.search(q)
			for _, it := range res.Items {
				if it.ID == string(deleted) || it.ID == string(early) {
					t.Errorf("search %+v shows the tombstone %s", q, it.Name)
				}
			}
		}
		if res := e.search(query.SearchProducts{Category: "tomb"}); res.Total != 1 || len(res.Items) != 1 || res.Items[0].ID != string(live) {
			t.Errorf("category tomb: %v (total %d), want only the live table", names(res.Items), res.Total)
		}
		// The old create replayed again after the tombstone has long been written and
		// searchable: still hidden, still a tombstone.
		e.apply(Product{ID: deleted, Version: 1, Name: "Tombstone lamp", Category: "tomb", Amount: 100, Stock: 1}.Snapshot(t))
		e.refresh()
		if res := e.search(query.SearchProducts{Text: "tombstone"}); res.Total != 0 {
			t.Errorf("after a late replay of the create: total %d, want 0", res.Total)
		}
		index := e.aliasTarget()
		for _, id := range []product.ID{deleted, early} {
			if d, ok := e.doc(index, id); !ok || d.Version != 2 || !d.Deleted {
				t.Errorf("tombstone %s = %+v (found %v), want v2 deleted", id, d, ok)
			}
		}
		infos, err := e.Target.ListIndices(e.ctx())
		if err != nil {
			t.Fatalf("ListIndices: %v", err)
		}
		if len(infos) != 1 || infos[0].Live != 1 || infos[0].Tombstones != 2 {
			t.Errorf("ListIndices = %+v, want one index with 1 live and 2 tombstones", infos)
		}
	})

	t.Run("concurrent writes of one id end at the highest version", func(t *testing.T) {
		e := setup(t, newFixture, true)
		id := NewID()
		var (
			mu   sync.Mutex
			maxV int64
			wg   sync.WaitGroup
			errs = make(chan error, 16*8)
		)
		for g := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(g), uint64(time.Now().UnixNano())))
				for range 8 {
					v := 1 + r.Int64N(500)
					s := Product{ID: id, Version: v, Name: "Concurrent v" + strconv.FormatInt(v, 10), Category: "concurrent"}.Snapshot(t)
					if err := e.Projection.Apply(e.ctx(), s); err != nil {
						errs <- fmt.Errorf("apply v%d: %w", v, err)
						return
					}
					mu.Lock()
					maxV = max(maxV, v)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		e.refresh()
		if d, ok := e.doc(e.aliasTarget(), id); !ok || d.Version != maxV {
			t.Fatalf("document = %+v (found %v), want v%d", d, ok, maxV)
		}
		res := e.search(query.SearchProducts{Category: "concurrent"})
		if want := "Concurrent v" + strconv.FormatInt(maxV, 10); len(res.Items) != 1 || res.Items[0].Name != want || res.Items[0].Version != maxV {
			t.Fatalf("search = %v, want %q (v%d)", res.Items, want, maxV)
		}
	})

	t.Run("concurrent writes of many ids each end at their highest version", func(t *testing.T) {
		e := setup(t, newFixture, true)
		ids := make([]product.ID, 40)
		for i := range ids {
			ids[i] = NewID()
		}
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for g := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(g), 7))
				type w struct {
					id product.ID
					v  int64
				}
				var work []w
				for _, id := range ids {
					for v := int64(1); v <= 5; v++ {
						work = append(work, w{id, v})
					}
				}
				r.Shuffle(len(work), func(i, j int) { work[i], work[j] = work[j], work[i] })
				for _, x := range work[:len(work)/2] {
					s := Product{ID: x.id, Version: x.v, Name: "Many v" + strconv.FormatInt(x.v, 10), Category: "many"}.Snapshot(t)
					if err := e.Projection.Apply(e.ctx(), s); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		// Everyone's last word: the highest version of each id, once more, from one writer.
		for _, id := range ids {
			e.apply(Product{ID: id, Version: 5, Name: "Many v5", Category: "many"}.Snapshot(t))
		}
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		e.refresh()
		docs := e.documents(e.aliasTarget(), 1000)
		if len(docs) != len(ids) {
			t.Fatalf("%d documents, want %d", len(docs), len(ids))
		}
		for _, d := range docs {
			if d.Version != 5 || d.Deleted {
				t.Errorf("document %+v, want v5", d)
			}
		}
		res := e.search(query.SearchProducts{Category: "many", Size: 100})
		for _, it := range res.Items {
			if it.Name != "Many v5" {
				t.Errorf("%s shows %q, want the content of v5", it.ID, it.Name)
			}
		}
	})

	t.Run("a snapshot without id or version is rejected for good", func(t *testing.T) {
		e := setup(t, newFixture, true)
		good := Product{Name: "Valid"}.Snapshot(t)
		noID := good
		noID.ID = ""
		noVersion := good
		noVersion.Version = 0
		for name, s := range map[string]product.Snapshot{"no id": noID, "no version": noVersion} {
			if err := e.Projection.Apply(e.ctx(), s); !errors.Is(err, command.ErrProjectionRejected) {
				t.Errorf("%s: Apply = %v, want ErrProjectionRejected", name, err)
			}
		}
	})

	t.Run("history beyond today's limits is stored and searchable", func(t *testing.T) {
		e := setup(t, newFixture, true)
		// A name written when the limit was longer: the read model shows what the event says.
		long := "Heritagelamp " + strings.Repeat("x", 2*product.MaxNameLength)
		s := Product{Name: "placeholder"}.Snapshot(t)
		s.Details = product.UnmarshalDetailsFromHistory(s.Details.SKU, long, "", "lighting", "Acme", 100, "EUR", 1, nil, nil)
		e.apply(s)
		e.refresh()
		res := e.search(query.SearchProducts{Text: "heritagelamp"})
		if len(res.Items) != 1 || res.Items[0].Name != long || res.Items[0].Tags == nil {
			t.Fatalf("legacy product: %+v", res.Items)
		}
	})

	t.Run("without alias a write fails and is worth a retry", func(t *testing.T) {
		e := setup(t, newFixture, false)
		err := e.Projection.Apply(e.ctx(), Product{Name: "Early bird"}.Snapshot(t))
		if err == nil || errors.Is(err, command.ErrProjectionRejected) {
			t.Fatalf("Apply without alias = %v, want a transient error", err)
		}
	})
}

// catalogue is the search fixture: a few products to search for and 25 books to page through.
type catalogue struct {
	e      *env
	byName map[string]product.Snapshot
	books  []product.Snapshot
	clocks []product.Snapshot // created within one millisecond, and one a millisecond later
}

func newCatalogue(t *testing.T, newFixture func(t *testing.T) Fixture) *catalogue {
	e := setup(t, newFixture, true)
	base := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	c := &catalogue{e: e, byName: map[string]product.Snapshot{}}
	var snaps []product.Snapshot
	add := func(p Product) product.Snapshot {
		if p.Created.IsZero() {
			p.Created = base
		}
		s := p.Snapshot(t)
		c.byName[p.Name] = s
		snaps = append(snaps, s)
		return s
	}
	add(Product{Name: "Wireless speaker", Description: "Loud and portable", Category: "audio", Brand: "Acme", Amount: 1999, Stock: 5,
		Attributes: map[string]string{"color": "red", "watts": "20"}, Tags: []string{"sale", "outdoor", "Bestseller"}})
	add(Product{Name: "Wireless headphones", Description: "Noise cancelling", Category: "audio", Brand: "Sonic", Amount: 5999, Stock: 0})
	add(Product{Name: "Wired earbuds", Description: "Cheap and cheerful", Category: "audio", Brand: "Acme", Amount: 999, Stock: 12})
	add(Product{Name: "Wireless charger", Description: "Deleted product", Category: "audio", Brand: "Acme", Amount: 2999, Stock: 4,
		Version: 2, Deleted: true, Tags: []string{"sale"}})
	add(Product{Name: "Garden hose", Description: "Ideal for watering plants", Category: "garden", Brand: "Greenly", Amount: 999, Stock: 3,
		Tags: []string{"outdoor"}})
	add(Product{Name: "Desk lamp", Description: "Bright LED", Category: "home", Brand: "Lumo", Amount: 2500, Stock: 2,
		Tags: []string{"sale", "Ünïcödé tag 日本"}})
	add(Product{Name: "Reading light", Description: "A small lamp for readers", Category: "home", Brand: "Lumo", Amount: 1500, Stock: 2})
	add(Product{Name: "Tea cup", Description: "Porcelain 日本の茶碗 ünïcödé", Category: "home & kitchen", Brand: "Ça Va", Amount: 700, Stock: 1})
	for i := range 25 {
		c.books = append(c.books, add(Product{
			Name:     fmt.Sprintf("Paging item %02d", i),
			Category: "books", Brand: "Reader",
			Amount:  int64(100 + (i%5)*10), // ties: the id must break them
			Stock:   int64(i % 3),
			Created: base.Add(time.Duration(i/2) * time.Hour),
		}))
	}
	tick := base.Add(24 * time.Hour)
	c.clocks = append(c.clocks,
		add(Product{Name: "Twin clock one", Category: "clocks", Amount: 10, Created: tick.Add(100 * time.Microsecond)}),
		add(Product{Name: "Twin clock two", Category: "clocks", Amount: 10, Created: tick.Add(900 * time.Microsecond)}),
		add(Product{Name: "Twin clock three", Category: "clocks", Amount: 10, Created: tick.Add(500 * time.Microsecond)}),
		add(Product{Name: "Later clock", Category: "clocks", Amount: 10, Created: tick.Add(1100 * time.Microsecond)}),
	)
	// Concurrent writers, as the projector's partitions.
	var wg sync.WaitGroup
	errs := make(chan error, len(snaps))
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(snaps); i += 6 {
				if err := e.Projection.Apply(e.ctx(), snaps[i]); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Apply: %v", err)
	}
	e.refresh()
	return c
}

func ids(snaps []product.Snapshot) []string {
	out := make([]string, len(snaps))
	for i, s := range snaps {
		out[i] = string(s.ID)
	}
	return out
}

func runSearch(t *testing.T, newFixture func(t *testing.T) Fixture) {
	c := newCatalogue(t, newFixture)
	e := c.e

	t.Run("text", func(t *testing.T) {
		for _, tc := range []struct {
			text string
			want []string
		}{
			{"wireless", []string{"Wireless speaker", "Wireless headphones"}}, // the charger is a tombstone
			{"WIRELESS Speaker", []string{"Wireless speaker"}},                // every word must match
			{"  speaker  ", []string{"Wireless speaker"}},
			{"watering", []string{"Garden hose"}},                   // description
			{"acme", []string{"Wireless speaker", "Wired earbuds"}}, // brand
			{"garden", []string{"Garden hose"}},                     // category (and name)
			{"kitchen", []string{"Tea cup"}},                        // category words
			{"lamp", []string{"Desk lamp", "Reading light"}},        // name or description
			{"茶碗", []string{"Tea cup"}},
			{"ÜNÏCÖDÉ", []string{"Tea cup"}},
			{"acme speaker", nil}, // every word in one field (best_fields, operator and)
			{"nothing matches this", nil},
			{"*", nil}, // no words at all matches nothing, not everything
			{"' OR 1=1--", nil},
		} {
			res := e.search(query.SearchProducts{Text: tc.text})
			if !sameSet(names(res.Items), tc.want) || res.Total != int64(len(tc.want)) {
				t.Errorf("q=%q: %v (total %d), want %v", tc.text, names(res.Items), res.Total, tc.want)
			}
		}
	})

	t.Run("typos", func(t *testing.T) { runTypos(t, e) })

	t.Run("filters", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			q    query.SearchProducts
			want []string
		}{
			{"category", query.SearchProducts{Category: "audio"}, []string{"Wireless speaker", "Wireless headphones", "Wired earbuds"}},
			{"category is exact", query.SearchProducts{Category: "Audio"}, nil},
			{"category is whole", query.SearchProducts{Category: "home"}, []string{"Desk lamp", "Reading light"}},
			{"category with spaces", query.SearchProducts{Category: "home & kitchen"}, []string{"Tea cup"}},
			{"brand", query.SearchProducts{Brand: "Lumo"}, []string{"Desk lamp", "Reading light"}},
			{"brand unicode", query.SearchProducts{Brand: "Ça Va"}, []string{"Tea cup"}},
			{"price range inclusive", query.SearchProducts{Category: "audio", MinPrice: ptr(int64(1999)), MaxPrice: ptr(int64(5999))},
				[]string{"Wireless speaker", "Wireless headphones"}},
			{"price range", query.SearchProducts{MinPrice: ptr(int64(500)), MaxPrice: ptr(int64(999))}, []string{"Wired earbuds", "Garden hose", "Tea cup"}},
			{"min price only", query.SearchProducts{MinPrice: ptr(int64(2500))}, []string{"Wireless headphones", "Desk lamp"}},
			{"max price only", query.SearchProducts{Category: "audio", MaxPrice: ptr(int64(999))}, []string{"Wired earbuds"}},
			{"in stock", query.SearchProducts{Category: "audio", InStock: ptr(true)}, []string{"Wireless speaker", "Wired earbuds"}},
			{"out of stock", query.SearchProducts{Category: "audio", InStock: ptr(false)}, []string{"Wireless headphones"}},
			{"text and filters", query.SearchProducts{Text: "wireless", Brand: "Acme"}, []string{"Wireless speaker"}},
			{"text and price", query.SearchProducts{Text: "wireless", MaxPrice: ptr(int64(2000))}, []string{"Wireless speaker"}},
			{"tag", query.SearchProducts{Tags: []string{"outdoor"}}, []string{"Wireless speaker", "Garden hose"}},
			{"any of the tags", query.SearchProducts{Tags: []string{"sale", "no-such-tag"}}, []string{"Wireless speaker", "Desk lamp"}},
			{"tags are exact", query.SearchProducts{Tags: []string{"Sale", "bestseller", "sal"}}, nil},
			{"tag with spaces and unicode", query.SearchProducts{Tags: []string{"Ünïcödé tag 日本"}}, []string{"Desk lamp"}},
			{"tags and category", query.SearchProducts{Tags: []string{"sale"}, Category: "audio"}, []string{"Wireless speaker"}},
			{"tags and text", query.SearchProducts{Tags: []string{"outdoor", "sale"}, Text: "lamp"}, []string{"Desk lamp"}},
		} {
			res := e.search(tc.q)
			if !sameSet(names(res.Items), tc.want) || res.Total != int64(len(tc.want)) {
				t.Errorf("%s: %v (total %d), want %v", tc.name, names(res.Items), res.Total, tc.want)
			}
		}
	})

	t.Run("view", func(t *testing.T) {
		res := e.search(query.SearchProducts{Text: "speaker"})
		if len(res.Items) != 1 {
			t.Fatalf("%+v", res)
		}
		want := c.byName["Wireless speaker"]
		got := res.Items[0]
		if got.ID != string(want.ID) || got.SKU != want.Details.SKU || got.Name != want.Details.Name ||
			got.Description != want.Details.Description || got.Brand != "Acme" || got.Category != "audio" ||
			got.PriceAmount != 1999 || got.Currency != "EUR" || got.Stock != 5 || got.Version != 1 ||
			!got.CreatedAt.Equal(want.CreatedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) {
			t.Errorf("view = %+v, want %+v", got, want)
		}
		if len(got.Attributes) != 2 || got.Attributes["color"] != "red" || got.Attributes["watts"] != "20" {
			t.Errorf("attributes = %v", got.Attributes)
		}
		if !slices.Equal(got.Tags, []string{"sale", "outdoor", "Bestseller"}) {
			t.Errorf("tags = %q, want them in the client's order", got.Tags)
		}
		res = e.search(query.SearchProducts{Text: "hose"})
		if len(res.Items) != 1 || len(res.Items[0].Attributes) != 0 {
			t.Errorf("hose = %+v", res.Items)
		}
		res = e.search(query.SearchProducts{Text: "earbuds"})
		if len(res.Items) != 1 || res.Items[0].Tags == nil || len(res.Items[0].Tags) != 0 {
			t.Errorf("a product without tags shows %#v, want an empty list", res.Items)
		}
	})

	t.Run("sorts and cursor paging", func(t *testing.T) {
		byID := func(a, b product.Snapshot) int { return cmpStr(string(a.ID), string(b.ID)) }
		for _, tc := range []struct {
			sort query.SortOrder
			text string
			size int
			cmp  func(a, b product.Snapshot) int
		}{
			{query.SortRelevance, "", 10, byID}, // no text: equal scores, the id decides
			{"", "", 10, byID},                  // relevance is the default
			{query.SortRelevance, "paging item", 10, byID},
			{query.SortPriceAsc, "", 10, func(a, b product.Snapshot) int {
				return cmpOr(cmpInt(a.Details.Price.Amount(), b.Details.Price.Amount()), byID(a, b))
			}},
			{query.SortPriceDesc, "", 7, func(a, b product.Snapshot) int {
				return cmpOr(cmpInt(b.Details.Price.Amount(), a.Details.Price.Amount()), byID(a, b))
			}},
			{query.SortNewest, "", 10, func(a, b product.Snapshot) int { return cmpOr(b.CreatedAt.Compare(a.CreatedAt), byID(a, b)) }},
			{query.SortNewest, "paging", 4, func(a, b product.Snapshot) int { return cmpOr(b.CreatedAt.Compare(a.CreatedAt), byID(a, b)) }},
		} {
			want := slices.Clone(c.books)
			slices.SortFunc(want, tc.cmp)
			var got []string
			seen := map[string]bool{}
			cursor, pages := "", 0
			for {
				res := e.search(query.SearchProducts{Text: tc.text, Category: "books", Sort: tc.sort, Size: tc.size, Cursor: cursor})
				pages++
				if res.Total != 25 {
					t.Fatalf("%s %q page %d: total %d, want 25", tc.sort, tc.text, pages, res.Total)
				}
				if len(res.Items) > tc.size {
					t.Fatalf("%s page %d: %d items for size %d", tc.sort, pages, len(res.Items), tc.size)
				}
				for _, it := range res.Items {
					if seen[it.ID] {
						t.Errorf("%s %q: %s (%s) on two pages", tc.sort, tc.text, it.ID, it.Name)
					}
					seen[it.ID] = true
					got = append(got, it.ID)
				}
				if res.NextCursor == "" {
					if len(res.Items) == tc.size {
						t.Errorf("%s: a full page without a cursor", tc.sort)
					}
					break
				}
				if pages > 25 {
					t.Fatalf("%s: paging does not end", tc.sort)
				}
				cursor = res.NextCursor
			}
			// A last page that is exactly full still has a cursor, to an empty page.
			wantPages := 25/tc.size + 1
			if pages != wantPages || !slices.Equal(got, ids(want)) {
				t.Errorf("%s %q size %d: %d pages (want %d)\n got %v\nwant %v", tc.sort, tc.text, tc.size, pages, wantPages, got, ids(want))
			}
		}
	})

	t.Run("newest sorts by millisecond and breaks ties by id", func(t *testing.T) {
		twins := slices.Clone(c.clocks[:3])
		slices.SortFunc(twins, func(a, b product.Snapshot) int { return cmpStr(string(a.ID), string(b.ID)) })
		want := append([]string{string(c.clocks[3].ID)}, ids(twins)...)
		var got []string
		cursor := ""
		for range 10 {
			res := e.search(query.SearchProducts{Category: "clocks", Sort: query.SortNewest, Size: 1, Cursor: cursor})
			for _, it := range res.Items {
				got = append(got, it.ID)
			}
			if cursor = res.NextCursor; cursor == "" {
				break
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("newest clocks = %v, want %v (the later clock, then the three of one millisecond by id)", got, want)
		}
	})

	t.Run("total and full pages", func(t *testing.T) {
		res := e.search(query.SearchProducts{Text: "paging", Size: 5})
		if res.Total != 25 || len(res.Items) != 5 || res.NextCursor == "" {
			t.Errorf("paging size 5: %d items, total %d, cursor %q", len(res.Items), res.Total, res.NextCursor)
		}
		res = e.search(query.SearchProducts{Size: 100})
		if want := int64(len(c.byName) - 1); res.Total != want || int64(len(res.Items)) != want || res.NextCursor != "" {
			t.Errorf("everything: %d items, total %d, cursor %q; want %d live products and no cursor", len(res.Items), res.Total, res.NextCursor, want)
		}
		// A page that is exactly full continues with a cursor; the next page is empty and ends.
		res = e.search(query.SearchProducts{Category: "audio", Size: 3, Sort: query.SortPriceAsc})
		if len(res.Items) != 3 || res.NextCursor == "" {
			t.Fatalf("full page: %+v", res)
		}
		res = e.search(query.SearchProducts{Category: "audio", Size: 3, Sort: query.SortPriceAsc, Cursor: res.NextCursor})
		if len(res.Items) != 0 || res.NextCursor != "" || res.Total != 3 {
			t.Fatalf("page after the last: %+v", res)
		}
		// The page size may change between pages.
		first := e.search(query.SearchProducts{Category: "books", Sort: query.SortPriceAsc, Size: 5})
		next := e.search(query.SearchProducts{Category: "books", Sort: query.SortPriceAsc, Size: 20, Cursor: first.NextCursor})
		if len(next.Items) != 20 || next.NextCursor == "" {
			t.Errorf("cursor with another size: %d items, cursor %q", len(next.Items), next.NextCursor)
		}
	})

	t.Run("hostile input", func(t *testing.T) {
		long := ""
		for range query.MaxSearchText {
			long += "x"
		}
		words := func(n int) string {
			s := ""
			for i := range n {
				s += fmt.Sprintf("w%d ", i)
			}
			return s
		}
		ideographs := func(n int) string {
			s := make([]rune, n)
			for i := range s {
				s[i] = rune(0x4e00 + i)
			}
			return string(s)
		}
		repeat := func(s string, n int) string {
			out := ""
			for range n {
				out += s
			}
			return out
		}
		qs := []query.SearchProducts{
			{Text: "' OR 1=1--"}, {Text: "name:*"}, {Text: "/.*{9999}/"}, {Text: "*"}, {Text: `+-&&||!(){}[]^"~*?:\/`},
			{Text: `"unterminated`}, {Text: "a AND (b OR"}, {Text: "*:*"}, {Text: "\\"}, {Text: `{"query":{"match_all":{}}}`},
			{Text: "name:wireless"}, {Text: "wirel*"}, {Text: "wireless~2"}, {Text: "_id:*"}, {Text: "deleted:true"},
			{Text: "ünïcödé 🚀 日本語 עברית"}, {Text: "\x00\x01\u202e"}, {Text: "\xff\xfe"}, {Text: long}, {Text: long + "y"},
			{Text: words(120)}, {Text: words(300)}, {Text: ideographs(120)}, {Text: ideographs(500)},
			{Text: repeat("a ", 250)}, {Text: repeat("中", 500)}, {Text: repeat("é", 500)},
			{Category: "' OR 1=1--"}, {Brand: "*"}, {Category: repeat("c", 5000)}, {Brand: "\xff"}, {Category: "name:*"},
			{Size: 100000}, {Size: -1}, {Sort: "nope"}, {Sort: "_score"}, {Sort: "price_asc; DROP TABLE"},
			{MinPrice: ptr(int64(-1))}, {MinPrice: ptr(int64(10)), MaxPrice: ptr(int64(5))}, {MaxPrice: ptr(int64(1 << 62))},
			{MinPrice: ptr(int64(1 << 62))}, {Cursor: repeat("A", 5000)},
		}
		for _, q := range qs {
			for _, sort := range []query.SortOrder{q.Sort, query.SortNewest} {
				q.Sort = sort
				_, err := e.Search.Search(e.ctx(), q)
				if err != nil && !errors.Is(err, query.ErrInvalidSearch) {
					t.Errorf("Search(%.100s) = %v, want results or ErrInvalidSearch", fmt.Sprintf("%+v", q), err)
				}
			}
		}
		for _, text := range []string{"name:wireless", "wirel*", "deleted:true", "_id:*", "*:*"} {
			res, err := e.Search.Search(e.ctx(), query.SearchProducts{Text: text})
			if err != nil {
				t.Errorf("q=%q: %v", text, err)
				continue
			}
			for _, it := range res.Items {
				if it.Name == "Wireless charger" {
					t.Errorf("q=%q reveals a tombstone", text)
				}
			}
		}
		for _, q := range []query.SearchProducts{{Text: words(300)}, {Text: long + "y"}, {Size: 101}, {Sort: "nope"}, {Brand: "\xff"}} {
			if _, err := e.Search.Search(e.ctx(), q); !errors.Is(err, query.ErrInvalidSearch) {
				t.Errorf("Search(%.80s) = %v, want ErrInvalidSearch", fmt.Sprintf("%+v", q), err)
			}
		}
	})

	t.Run("bad cursor", func(t *testing.T) {
		first := e.search(query.SearchProducts{Category: "books", Sort: query.SortPriceAsc, Size: 5})
		if first.NextCursor == "" {
			t.Fatal("no cursor")
		}
		rel := e.search(query.SearchProducts{Text: "paging", Size: 5})
		for name, q := range map[string]query.SearchProducts{
			"garbage":          {Category: "books", Sort: query.SortPriceAsc, Cursor: "garbage!"},
			"base64 of junk":   {Category: "books", Sort: query.SortPriceAsc, Cursor: "anVuaw"},
			"base64 of json":   {Category: "books", Sort: query.SortPriceAsc, Cursor: "eyJhIjoxfQ"},
			"sql":              {Category: "books", Sort: query.SortPriceAsc, Cursor: "' OR 1=1--"},
			"other sort":       {Category: "books", Sort: query.SortPriceDesc, Cursor: first.NextCursor},
			"relevance cursor": {Category: "books", Sort: query.SortNewest, Cursor: rel.NextCursor},
			"other filter":     {Category: "audio", Sort: query.SortPriceAsc, Cursor: first.NextCursor},
			"other text":       {Text: "paging", Category: "books", Sort: query.SortPriceAsc, Cursor: first.NextCursor},
			"other price":      {Category: "books", Sort: query.SortPriceAsc, MinPrice: ptr(int64(1)), Cursor: first.NextCursor},
			"other stock":      {Category: "books", Sort: query.SortPriceAsc, InStock: ptr(true), Cursor: first.NextCursor},
			"truncated":        {Category: "books", Sort: query.SortPriceAsc, Cursor: first.NextCursor[:len(first.NextCursor)/2]},
		} {
			_, err := e.Search.Search(e.ctx(), q)
			if !errors.Is(err, query.ErrInvalidCursor) {
				t.Errorf("%s: %v, want ErrInvalidCursor", name, err)
			}
		}
	})
}

// diffDocs describes how got differs from want, or is empty when they are equal.
func diffDocs(got, want []rebuild.DocVersion) string {
	if slices.Equal(got, want) {
		return ""
	}
	var out []string
	if len(got) != len(want) {
		out = append(out, fmt.Sprintf("%d documents, want %d", len(got), len(want)))
	}
	gotByID := map[string]rebuild.DocVersion{}
	for _, d := range got {
		gotByID[d.ID] = d
	}
	for _, w := range want {
		g, ok := gotByID[w.ID]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%s missing (want v%d deleted=%v)", w.ID, w.Version, w.Deleted))
		case g != w:
			out = append(out, fmt.Sprintf("%s is v%d deleted=%v, want v%d deleted=%v", w.ID, g.Version, g.Deleted, w.Version, w.Deleted))
		}
	}
	if len(out) == 0 {
		out = append(out, fmt.Sprintf("order differs: got %v", got))
	}
	return strings.Join(out, "; ")
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cmpOr(cs ...int) int {
	for _, c := range cs {
		if c != 0 {
			return c
		}
	}
	return 0
}

func runTarget(t *testing.T, newFixture func(t *testing.T) Fixture) {
	t.Run("create index names", func(t *testing.T) {
		e := setup(t, newFixture, false)
		m := e.Target.MappingVersion()
		if m < 1 {
			t.Fatalf("MappingVersion = %d", m)
		}
		re := regexp.MustCompile(`^` + regexp.QuoteMeta(e.Alias) + `_v` + strconv.Itoa(m) + `_([0-9]{8}_[0-9]{6})$`)
		before := time.Now().UTC().Add(-2 * time.Second)
		a, err := e.Target.CreateIndex(e.ctx())
		if err != nil {
			t.Fatalf("CreateIndex: %v", err)
		}
		b, err := e.Target.CreateIndex(e.ctx())
		if err != nil {
			t.Fatalf("CreateIndex: %v", err)
		}
		for _, name := range []string{a, b} {
			sub := re.FindStringSubmatch(name)
			if sub == nil {
				t.Fatalf("index name %q is not %s_v%d_YYYYMMDD_HHMMSS", name, e.Alias, m)
			}
			at, err := time.ParseInLocation("20060102_150405", sub[1], time.UTC)
			if err != nil || at.Before(before) || at.After(time.Now().Add(time.Minute)) {
				t.Errorf("index %s: time %v not now (%v)", name, at, err)
			}
		}
		if a == b || b < a {
			t.Errorf("second index %s is not after the first %s", b, a)
		}
		// Creating an index does not create the alias.
		if _, err := e.Target.AliasTarget(e.ctx()); !errors.Is(err, rebuild.ErrNoAlias) {
			t.Errorf("AliasTarget after CreateIndex = %v, want ErrNoAlias", err)
		}
	})

	t.Run("write and documents", func(t *testing.T) {
		e := setup(t, newFixture, true)
		live := e.aliasTarget()
		index, err := e.Target.CreateIndex(e.ctx())
		if err != nil {
			t.Fatalf("CreateIndex: %v", err)
		}
		want := map[string]rebuild.DocVersion{}
		var first []product.Snapshot
		for i := range 23 {
			p := Product{Version: int64(1 + i%4), Name: fmt.Sprintf("Rebuilt %d", i), Deleted: i%5 == 0}
			s := p.Snapshot(t)
			first = append(first, s)
			want[string(s.ID)] = rebuild.DocVersion{ID: string(s.ID), Version: s.Version, Deleted: s.Deleted()}
		}
		if err := e.Target.Write(e.ctx(), index, first); err != nil {
			t.Fatalf("Write: %v", err)
		}
		// A second batch: older versions lose, the same event again changes nothing, newer ones win, and
		// within one call the highest version of an id wins whatever its position.
		var second []product.Snapshot
		for i, s := range first[:12] {
			var v int64
			var deleted bool
			switch i % 3 {
			case 0:
				v = s.Version - 1 // older, or 0 which is skipped below
			case 1:
				second = append(second, s) // the same event again (see "equal version is idempotent")
				continue
			case 2:
				v, deleted = s.Version+3, true
			}
			if v < 1 {
				continue
			}
			n := Product{ID: s.ID, Version: v, Name: "Changed", Deleted: deleted}.Snapshot(t)
			if i%3 == 2 {
				older := Product{ID: s.ID, Version: v - 1, Name: "Changed older"}.Snapshot(t)
				second = append(second, n, older)
				want[string(s.ID)] = rebuild.DocVersion{ID: string(s.ID), Version: v, Deleted: deleted}
				continue
			}
			second = append(second, n)
		}
		if err := e.Target.Write(e.ctx(), index, second); err != nil {
			t.Fatalf("Write: %v", err)
		}
		if err := e.Target.Write(e.ctx(), index, nil); err != nil {
			t.Errorf("Write of nothing: %v", err)
		}
		if err := e.Target.Refresh(e.ctx(), index); err != nil {
			t.Fatalf("Refresh: %v", err)
		}
		wantList := make([]rebuild.DocVersion, 0, len(want))
		for _, d := range want {
			wantList = append(wantList, d)
		}
		slices.SortFunc(wantList, func(a, b rebuild.DocVersion) int { return cmpStr(a.ID, b.ID) })
		for _, pageSize := range []int{1, 7, 23, 1000} {
			got := e.documents(index, pageSize)
			if d := diffDocs(got, wantList); d != "" {
				t.Errorf("Documents by %d: %s", pageSize, d)
			}
		}
		// afterID need not be a document's id.
		mid := wantList[10].ID
		page, err := e.Target.Documents(e.ctx(), index, mid[:20], 1000)
		if err != nil {
			t.Fatalf("Documents: %v", err)
		}
		var wantAfter []rebuild.DocVersion
		for _, d := range wantList {
			if d.ID > mid[:20] {
				wantAfter = append(wantAfter, d)
			}
		}
		if d := diffDocs(page, wantAfter); d != "" {
			t.Errorf("Documents after %q: %s", mid[:20], d)
		}
		if _, err := e.Target.Documents(e.ctx(), index, "", 0); err == nil {
			t.Errorf("Documents with limit 0 succeeded")
		}
		// The rebuild's index is not the live one.
		if docs := e.documents(live, 100); len(docs) != 0 {
			t.Errorf("the live index got %d documents written by name to %s", len(docs), index)
		}
		if res := e.search(query.SearchProducts{Text: "rebuilt"}); res.Total != 0 {
			t.Errorf("search through the alias sees the new index before the switch: %v", names(res.Items))
		}
		// Writes to indices that do not exist, or are not the alias's, fail.
		missing := e.Alias + "_v" + strconv.Itoa(e.Target.MappingVersion()) + "_20000101_000000"
		for _, name := range []string{missing, "someone_else", e.Alias} {
			if err := e.Target.Write(e.ctx(), name, first[:1]); err == nil {
				t.Errorf("Write to %q succeeded", name)
			}
			if _, err := e.Target.Documents(e.ctx(), name, "", 10); err == nil {
				t.Errorf("Documents of %q succeeded", name)
			}
		}
		bad := first[0]
		bad.Version = 0
		if err := e.Target.Write(e.ctx(), index, []product.Snapshot{bad}); err == nil {
			t.Errorf("Write of a document without version succeeded")
		}
	})

	t.Run("switch alias is conditional and atomic", func(t *testing.T) {
		e := setup(t, newFixture, true)
		old := e.aliasTarget()
		e.apply(Product{Name: "Old index item", Category: "switch"}.Snapshot(t))
		e.refresh()
		other, err := e.Target.CreateIndex(e.ctx())
		if err != nil {
			t.Fatalf("CreateIndex: %v", err)
		}
		next, err := e.Target.CreateIndex(e.ctx())
		if err != nil {
			t.Fatalf("CreateIndex: %v", err)
		}
		if err := e.Target.Write(e.ctx(), next, []product.Snapshot{Product{Name: "New index item", Category: "switch"}.Snapshot(t)}); err != nil {
			t.Fatalf("Write: %v", err)
		}
		if err := e.Target.RestoreSettings(e.ctx(), next); err != nil {
			t.Fatalf("RestoreSettings: %v", err)
		}
		if err := e.Target.Refresh(e.ctx(), next); err != nil {
			t.Fatalf("Refresh: %v", err)
		}
		missing := e.Alias + "_v" + strconv.Itoa(e.Target.MappingVersion()) + "_20000101_000000"
		for name, from := range map[string]string{"another index": other, "a missing index": missing, "no alias": ""} {
			err := e.Target.SwitchAlias(e.ctx(), from, next)
			if !errors.Is(err, readmodel.ErrAliasMoved) {
				t.Errorf("SwitchAlias from %s (%q) = %v, want ErrAliasMoved", name, from, err)
			}
			if got := e.aliasTarget(); got != old {
				t.Fatalf("alias moved to %s by a refused switch", got)
			}
		}
		if err := e.Target.SwitchAlias(e.ctx(), old, next); err != nil {
			t.Fatalf("SwitchAlias: %v", err)
		}
		if got := e.aliasTarget(); got != next {
			t.Fatalf("alias = %s, want %s", got, next)
		}
		// A retry of a switch whose answer was lost succeeds.
		if err := e.Target.SwitchAlias(e.ctx(), old, next); err != nil {
			t.Errorf("repeated SwitchAlias: %v", err)
		}
		res := e.search(query.SearchProducts{Category: "switch"})
		if len(res.Items) != 1 || res.Items[0].Name != "New index item" {
			t.Errorf("after the switch search shows %v, want the new index's item", names(res.Items))
		}
		// Writes through the alias go to the new index now.
		e.apply(Product{Name: "Written after switch", Category: "switch"}.Snapshot(t))
		e.refresh()
		if docs := e.documents(next, 100); len(docs) != 2 {
			t.Errorf("new index has %d documents, want 2", len(docs))
		}
		if docs := e.documents(old, 100); len(docs) != 1 {
			t.Errorf("old index has %d documents, want 1", len(docs))
		}
		// Rollback is a switch back.
		if err := e.Target.SwitchAlias(e.ctx(), next, old); err != nil {
			t.Fatalf("rollback: %v", err)
		}
		res = e.search(query.SearchProducts{Category: "switch"})
		if len(res.Items) != 1 || res.Items[0].Name != "Old index item" {
			t.Errorf("after the rollback search shows %v", names(res.Items))
		}
		if err := e.Target.SwitchAlias(e.ctx(), old, old); err == nil {
			t.Errorf("SwitchAlias to itself succeeded")
		}
		if err := e.Target.SwitchAlias(e.ctx(), old, missing); err == nil || e.aliasTarget() != old {
			t.Errorf("SwitchAlias to a missing index = %v (alias %s)", err, e.aliasTarget())
		}
	})

	t.Run("delete index refuses the live one", func(t *testing.T) {
		e := setup(t, newFixture, true)
		live := e.aliasTarget()
		old, err := e.Target.CreateIndex(e.ctx())
		if err != nil {
			t.Fatalf("CreateIndex: %v", err)
		}
		if err := e.Target.DeleteIndex(e.ctx(), live); err == nil {
			t.Fatalf("DeleteIndex of the live index succeeded")
		}
		if got := e.aliasTarget(); got != live {
			t.Fatalf("alias = %s after refused delete, want %s", got, live)
		}
		e.apply(Product{Name: "Still served", Category: "delete"}.Snapshot(t))
		e.refresh()
		if res := e.search(query.SearchProducts{Category: "delete"}); res.Total != 1 {
			t.Errorf("live index lost documents: total %d", res.Total)
		}
		if err := e.Target.DeleteIndex(e.ctx(), old); err != nil {
			t.Fatalf("DeleteIndex(%s): %v", old, err)
		}
		infos, err := e.Target.ListIndices(e.ctx())
		if err != nil {
			t.Fatalf("ListIndices: %v", err)
		}
		if len(infos) != 1 || infos[0].Name != live {
			t.Errorf("after delete: %+v, want only %s", infos, live)
		}
		if err := e.Target.DeleteIndex(e.ctx(), old); err == nil {
			t.Errorf("second DeleteIndex(%s) succeeded", old)
		}
		if err := e.Target.Write(e.ctx(), old, []product.Snapshot{Product{Name: "Ghost"}.Snapshot(t)}); err == nil {
			t.Errorf("Write to a deleted index succeeded")
		}
		if err := e.Target.DeleteIndex(e.ctx(), "someone_else"); err == nil {
			t.Errorf("DeleteIndex of a foreign index succeeded")
		}
	})

	t.Run("list indices", func(t *testing.T) {
		e := setup(t, newFixture, true)
		live := e.aliasTarget()
		e.apply(
			Product{Name: "Listed one"}.Snapshot(t), Product{Name: "Listed two"}.Snapshot(t),
			Product{Name: "Listed three"}.Snapshot(t), Product{Name: "Listed gone", Version: 2, Deleted: true}.Snapshot(t),
		)
		e.refresh()
		newer, err := e.Target.CreateIndex(e.ctx())
		if err != nil {
			t.Fatalf("CreateIndex: %v", err)
		}
		if err := e.Target.Write(e.ctx(), newer, []product.Snapshot{
			Product{Name: "Rebuilt one"}.Snapshot(t), Product{Name: "Rebuilt gone", Version: 3, Deleted: true}.Snapshot(t),
		}); err != nil {
			t.Fatalf("Write: %v", err)
		}
		if err := e.Target.Refresh(e.ctx(), newer); err != nil {
			t.Fatalf("Refresh: %v", err)
		}
		infos, err := e.Target.ListIndices(e.ctx())
		if err != nil {
			t.Fatalf("ListIndices: %v", err)
		}
		if len(infos) != 2 {
			t.Fatalf("ListIndices = %+v, want 2 indices", infos)
		}
		want := []rebuild.IndexInfo{
			{Name: newer, MappingVersion: e.Target.MappingVersion(), Live: 1, Tombstones: 1},
			{Name: live, MappingVersion: e.Target.MappingVersion(), Live: 3, Tombstones: 1, Aliased: true},
		}
		for i, w := range want {
			g := infos[i]
			if g.Name != w.Name || g.MappingVersion != w.MappingVersion || g.Live != w.Live || g.Tombstones != w.Tombstones || g.Aliased != w.Aliased {
				t.Errorf("index %d = %+v, want %+v (newest first)", i, g, w)
			}
			if g.Created.IsZero() || g.Created.UTC().Format("20060102_150405") != g.Name[len(g.Name)-15:] {
				t.Errorf("index %s: Created %v does not match its name", g.Name, g.Created)
			}
		}
	})

	t.Run("without alias", func(t *testing.T) {
		e := setup(t, newFixture, false)
		if _, err := e.Target.AliasTarget(e.ctx()); !errors.Is(err, rebuild.ErrNoAlias) {
			t.Fatalf("AliasTarget = %v, want ErrNoAlias", err)
		}
		if _, err := e.Search.Search(e.ctx(), query.SearchProducts{Text: "x"}); err == nil || errors.Is(err, query.ErrInvalidSearch) {
			t.Errorf("Search without alias = %v, want a read-model error, not a client error", err)
		}
		infos, err := e.Target.ListIndices(e.ctx())
		if err != nil || len(infos) != 0 {
			t.Errorf("ListIndices = %+v, %v; want none", infos, err)
		}
		index, err := e.Target.CreateIndex(e.ctx())
		if err != nil {
			t.Fatalf("CreateIndex: %v", err)
		}
		if err := e.Target.Write(e.ctx(), index, []product.Snapshot{Product{Name: "Restored item"}.Snapshot(t)}); err != nil {
			t.Fatalf("Write: %v", err)
		}
		if err := e.Target.Refresh(e.ctx(), index); err != nil {
			t.Fatalf("Refresh: %v", err)
		}
		missing := e.Alias + "_v" + strconv.Itoa(e.Target.MappingVersion()) + "_20000101_000000"
		if err := e.Target.SwitchAlias(e.ctx(), missing, index); !errors.Is(err, readmodel.ErrAliasMoved) {
			t.Errorf("SwitchAlias from an index without alias = %v, want ErrAliasMoved", err)
		}
		if err := e.Target.SwitchAlias(e.ctx(), "", index); err != nil {
			t.Fatalf("SwitchAlias(\"\", %s): %v", index, err)
		}
		if got := e.aliasTarget(); got != index {
			t.Fatalf("alias = %s, want %s", got, index)
		}
		infos, err = e.Target.ListIndices(e.ctx())
		if err != nil || len(infos) != 1 || !infos[0].Aliased || infos[0].Live != 1 {
			t.Errorf("ListIndices = %+v, %v; want %s aliased with 1 live document", infos, err, index)
		}
		if res := e.search(query.SearchProducts{Text: "restored"}); res.Total != 1 {
			t.Errorf("search after the alias was created: total %d", res.Total)
		}
		// EnsureAlias keeps an existing alias.
		got, err := e.EnsureAlias(e.ctx())
		if err != nil || got != index {
			t.Errorf("EnsureAlias = %s, %v; want %s", got, err, index)
		}
	})
}
