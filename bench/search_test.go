package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/marketplace/catalog/adapters/elasticsearch"
	"github.com/marketplace/catalog/application/decorator"
	"github.com/marketplace/catalog/application/query"
	"github.com/marketplace/catalog/domain/product"
)

// Targets of the search features: facets add at most twice the p50 of the same searches
// without them; a search that waits for its own write (wait_for) sees it every time, with a p99
// within the refresh interval plus 100 ms.
const (
	targetFacetRatio   = 2.0
	targetRYWTries     = 1000
	targetRYWAllowance = 100 * time.Millisecond
)

// searchBenchProducts is the catalogue size of the search figures; SEARCH_BENCH_PRODUCTS
// overrides it (a smaller catalogue for a quick look on a busy machine).
func searchBenchProducts(b *testing.B) int {
	n := 200_000
	if s := os.Getenv("SEARCH_BENCH_PRODUCTS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 2*targetRYWTries {
			b.Fatalf("SEARCH_BENCH_PRODUCTS=%q: want an integer of at least %d", s, 2*targetRYWTries)
		}
		n = v
	}
	return n
}

// words name the benchmark products, so that text searches match a few percent of them.
var benchWords = []string{"wireless", "speaker", "kettle", "lamp", "bottle", "chair", "desk", "cable", "charger", "clock",
	"blender", "toaster", "pillow", "blanket", "mirror", "heater", "fan", "router", "mouse", "keyboard"}

// searchCatalogue is n products spread over 20 categories, 50 brands, 34 tags and prices from
// 1.00 to 999.99, with two-word names.
func searchCatalogue(n int) []product.Snapshot {
	now := time.Now()
	out := make([]product.Snapshot, n)
	for i := range n {
		name := fmt.Sprintf("%s %s %d", benchWords[i%len(benchWords)], benchWords[(i/len(benchWords))%len(benchWords)], i)
		d, err := product.NewDetails(fmt.Sprintf("SRCH-%07d", i), name,
			"A sturdy everyday thing for the benchmark, with a description of about a hundred characters.",
			fmt.Sprintf("category-%02d", i%20), fmt.Sprintf("Brand%02d", (i*7)%50), int64(100+(i*7919)%99900), "EUR", int64(i%7),
			nil, fmt.Sprintf("tag-%02d", i%30), fmt.Sprintf("season-%d", (i/30)%4))
		if err != nil {
			panic(err)
		}
		p, err := product.New(product.NewID(now.Add(time.Duration(i))), d, now)
		if err != nil {
			panic(err)
		}
		out[i] = p.Snapshot()
	}
	return out
}

// searchMix are the searches timed: text (exact and with typos), filters, and both.
func searchMix() []query.SearchProducts {
	stock := true
	maxPrice := int64(20000)
	return []query.SearchProducts{
		{Text: "wireless speaker"},
		{Text: "wireles speakr"},
		{Text: "kettle", Categories: []string{"category-03"}},
		{Categories: []string{"category-07"}, InStock: &stock},
		{Brands: []string{"Brand11"}, MaxPrice: &maxPrice},
		{Text: "lamp", Tags: []string{"tag-04"}, Sort: query.SortPriceAsc},
		{},
		{Text: "chair desk"},
	}
}

// timeSearches runs every search of the mix rounds times, with facets or without, and returns
// the sorted latencies.
func timeSearches(b *testing.B, rm query.ProductSearchReadModel, rounds int, facets bool) durations {
	b.Helper()
	ctx := context.Background()
	var out durations
	for range rounds {
		for _, q := range searchMix() {
			if facets {
				q.Facets = query.AllFacets
			}
			start := time.Now()
			if _, err := rm.Search(ctx, q); err != nil {
				b.Fatalf("search %+v: %v", q, err)
			}
			out = append(out, time.Since(start))
		}
	}
	return out.sorted()
}

// reportFacets prints the latency figures of one engine and its facet verdict.
func reportFacets(b *testing.B, engine string, n int, rm query.ProductSearchReadModel) {
	b.Helper()
	const rounds = 25
	timeSearches(b, rm, 2, true) // warm caches and doc values
	plain := timeSearches(b, rm, rounds, false)
	faceted := timeSearches(b, rm, rounds, true)
	ratio := float64(faceted.pct(50)) / float64(plain.pct(50))
	summary(b, "%s, %d products, %d searches each: without facets p50 %.1f ms p99 %.1f ms; with facets=category,brand,tags,price,in_stock p50 %.1f ms p99 %.1f ms; facets/plain p50 %.2fx (target <= %.0fx: %s)",
		engine, n, len(plain), ms(plain.pct(50)), ms(plain.pct(99)), ms(faceted.pct(50)), ms(faceted.pct(99)), ratio, targetFacetRatio, verdict(ratio <= targetFacetRatio))
}

// BenchmarkSearchFeatures measures search latency with and without facets on a catalogue of
// 200,000 products (SEARCH_BENCH_PRODUCTS) on the Elasticsearch-API server and on Bleve, and
// read-your-writes on the server: 1,000 updates, each written through the projection and then
// searched for with wait_for through the real search use case, by 20 concurrent writers. A
// try counts when the search returns the updated version; its latency runs from the end of the
// write (the projection confirmed it) to the search's answer, which the refresh interval bounds.
// Beside it, the raw baseline: 1,000 other updates, each searched for by polling every 10 ms.
func BenchmarkSearchFeatures(b *testing.B) {
	noNsPerOp(b)
	n := searchBenchProducts(b)
	snaps := searchCatalogue(n)

	b.Run("opensearch", func(b *testing.B) {
		noNsPerOp(b)
		s := realSearch(b)
		cfg := s.config(benchAlias(b, s, "search"))
		ix := s.newIndices(b, cfg)
		ctx := context.Background()
		index, _, err := ix.EnsureAlias(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if res := rawBulkLoad(b, s, index, encodeDocs(snaps)); res.failures > 0 {
			b.Fatalf("load: %d failures", res.failures)
		}
		if err := ix.Refresh(ctx, index); err != nil {
			b.Fatal(err)
		}
		search, err := elasticsearch.NewSearch(s.client, cfg)
		if err != nil {
			b.Fatal(err)
		}
		reportFacets(b, "OpenSearch", n, search)
		benchReadYourWrites(b, s, cfg, search, snaps)
	})

	b.Run("bleve", func(b *testing.B) {
		noNsPerOp(b)
		store := openBleve(b, "search")
		ctx := context.Background()
		index, err := store.CreateIndex(ctx)
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < len(snaps); i += 1000 {
			if err := store.Write(ctx, index, snaps[i:min(i+1000, len(snaps))]); err != nil {
				b.Fatal(err)
			}
		}
		if err := store.SwitchAlias(ctx, "", index); err != nil {
			b.Fatal(err)
		}
		reportFacets(b, "Bleve", n, store)
	})
}

func benchReadYourWrites(b *testing.B, s searchServer, cfg elasticsearch.Config, search *elasticsearch.Search, snaps []product.Snapshot) {
	b.Helper()
	projection, err := elasticsearch.NewProjection(s.client, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = projection.Close(context.Background()) }()
	waiter, err := query.NewVersionWaiter(search, query.VersionWaiterConfig{ReadModel: "search"})
	if err != nil {
		b.Fatal(err)
	}
	handler, err := query.NewSearchProductsHandler(search, waiter, decorator.Deps{Log: quietLog()})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	// The raw baseline: the same writes, each followed by the same search repeated every 10 ms
	// until it shows the write (what a client without wait_for would do): how long the engine
	// itself takes to make a write searchable on this machine now.
	raw, rawStale := rywTries(b, projection, snaps[targetRYWTries:2*targetRYWTries], func(snap product.Snapshot, q query.SearchProducts) (bool, error) {
		deadline := time.Now().Add(query.MaxWaitTimeout)
		for {
			res, err := search.Search(ctx, q)
			if err != nil || hasVersion(res, snap.ID, snap.Version) {
				return err == nil, err
			}
			if time.Now().After(deadline) {
				return false, nil
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	lat, stale := rywTries(b, projection, snaps[:targetRYWTries], func(snap product.Snapshot, q query.SearchProducts) (bool, error) {
		q.Consistency = query.Consistency{WaitFor: []query.WaitFor{{ID: snap.ID, Version: snap.Version}}, Timeout: query.MaxWaitTimeout}
		res, err := handler.Handle(ctx, q)
		return err == nil && hasVersion(res, snap.ID, snap.Version), err
	})
	limit := elasticsearch.DefaultRefreshInterval + targetRYWAllowance
	ok := stale == 0 && len(lat) == targetRYWTries && lat.pct(99) <= limit
	summary(b, "OpenSearch read-your-writes, %d writers: %d/%d searches with wait_for saw their own write; p50 %.0f ms p99 %.0f ms max %.0f ms (target 100%% and p99 <= refresh %s + %s: %s); "+
		"raw baseline, the same search polled every 10 ms until it shows the write: %d/%d, p50 %.0f ms p99 %.0f ms; wait_for p99 - raw p99 = %.0f ms (<= %s: %s)",
		rywWriters, len(lat), targetRYWTries, ms(lat.pct(50)), ms(lat.pct(99)), ms(lat.pct(100)), elasticsearch.DefaultRefreshInterval, targetRYWAllowance, verdict(ok),
		len(raw), len(raw)+rawStale, ms(raw.pct(50)), ms(raw.pct(99)), ms(lat.pct(99)-raw.pct(99)), targetRYWAllowance, verdict(lat.pct(99)-raw.pct(99) <= targetRYWAllowance))
}

// rywWriters is how many writers update and search at once.
const rywWriters = 20

// rywTries updates every product of snaps through the projection (rywWriters at a time, each
// product once) and, once the projection confirmed the write, runs read, which reports whether
// the search showed the new version. It returns the latencies of the reads that did, sorted,
// and how many did not.
func rywTries(b *testing.B, projection *elasticsearch.Projection, snaps []product.Snapshot, read func(product.Snapshot, query.SearchProducts) (bool, error)) (durations, int) {
	b.Helper()
	var (
		mu      sync.Mutex
		lat     durations
		stale   int
		failure error
		wg      sync.WaitGroup
	)
	per := len(snaps) / rywWriters
	for w := range rywWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, snap := range snaps[w*per : (w+1)*per] {
				snap.Version++
				snap.UpdatedAt = time.Now()
				if err := projection.Apply(context.Background(), snap); err != nil {
					mu.Lock()
					failure = err
					mu.Unlock()
					return
				}
				start := time.Now()
				seen, err := read(snap, query.SearchProducts{Text: snap.Details.Name, Categories: []string{snap.Details.Category}})
				took := time.Since(start)
				mu.Lock()
				switch {
				case err != nil:
					failure = err
				case !seen:
					stale++
				default:
					lat = append(lat, took)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if failure != nil {
		b.Fatalf("read-your-writes: %v", failure)
	}
	return lat.sorted(), stale
}

func hasVersion(res query.SearchResult, id product.ID, version int64) bool {
	for _, v := range res.Items {
		if v.ID == string(id) && v.Version >= version {
			return true
		}
	}
	return false
}
