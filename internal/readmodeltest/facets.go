package readmodeltest

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/marketplace/catalog/application/query"
	"github.com/marketplace/catalog/domain/product"
)

// facetShop is the facet fixture: live products across categories, brands, tags and prices,
// plus a tombstone that must never be counted.
var facetShop = []Product{
	{Name: "Aurora speaker", Category: "audio", Brand: "Acme", Amount: 1500, Stock: 3, Tags: []string{"sale", "outdoor"}},
	{Name: "Boreal speaker", Category: "audio", Brand: "Acme", Amount: 2500, Stock: 1, Tags: []string{"sale"}},
	{Name: "Cirrus speaker", Category: "audio", Brand: "Sonic", Amount: 5000, Stock: 2, Tags: []string{"new"}},
	{Name: "Delta headphones", Category: "audio", Brand: "Sonic", Amount: 9000, Stock: 0},
	{Name: "Ember kettle", Category: "kitchen", Brand: "Acme", Amount: 3000, Stock: 4, Tags: []string{"sale"}},
	{Name: "Fjord kettle", Category: "kitchen", Brand: "Brewer", Amount: 800, Stock: 5, Tags: []string{"new", "outdoor"}},
	{Name: "Glacier lamp", Category: "home", Brand: "Lumo", Amount: 12000, Stock: 0, Tags: []string{"new"}},
	{Name: "Juniper clock", Category: "clocks", Amount: 500, Stock: 1},
	{Name: "Halo speaker", Category: "audio", Brand: "Acme", Amount: 999, Stock: 9, Tags: []string{"sale"}, Version: 2, Deleted: true},
}

// fv is a facet value in the case tables: "value=count".
func fv(pairs ...string) []query.FacetValue {
	out := []query.FacetValue{}
	for _, p := range pairs {
		i := strings.LastIndexByte(p, '=')
		var n int64
		_, _ = fmt.Sscan(p[i+1:], &n)
		out = append(out, query.FacetValue{Value: p[:i], Count: n})
	}
	return out
}

// facetCase is one facet search and the facets it must return; a nil expectation is not
// checked (the facet was not asked for, or the case is about another one).
type facetCase struct {
	name     string
	q        query.SearchProducts
	total    int64
	category []query.FacetValue
	brand    []query.FacetValue
	tags     []query.FacetValue
	price    []int64 // counts of the price buckets in order
	inStock  []query.FacetValue
}

var allFacets = []query.Facet{query.FacetCategory, query.FacetBrand, query.FacetTags, query.FacetPrice, query.FacetInStock}

// facetCases are the facet contract. The multi-select rule: a facet counts under every filter
// but the one on its own field.
var facetCases = []facetCase{
	{
		name: "every facet over the whole catalogue, tombstone not counted", q: query.SearchProducts{Facets: allFacets}, total: 8,
		category: fv("audio=4", "kitchen=2", "clocks=1", "home=1"),
		brand:    fv("Acme=3", "Sonic=2", "Brewer=1", "Lumo=1"),
		tags:     fv("new=3", "sale=3", "outdoor=2"),
		price:    []int64{2, 1, 2, 2, 1, 0, 0},
		inStock:  fv("true=6", "false=2"),
	},
	{
		name: "text narrows every facet", q: query.SearchProducts{Text: "speaker", Facets: allFacets}, total: 3,
		category: fv("audio=3"), brand: fv("Acme=2", "Sonic=1"), tags: fv("sale=2", "new=1", "outdoor=1"),
		price: []int64{0, 1, 1, 1, 0, 0, 0}, inStock: fv("true=3", "false=0"),
	},
	{
		name: "a typo narrows facets like the word", q: query.SearchProducts{Text: "speakr", Facets: []query.Facet{query.FacetCategory}}, total: 3,
		category: fv("audio=3"),
	},
	{
		name: "brand filter: the brand facet still counts the other brands, the others count the brand",
		q:    query.SearchProducts{Brand: "Acme", Facets: allFacets}, total: 3,
		category: fv("audio=2", "kitchen=1"),
		brand:    fv("Acme=3", "Sonic=2", "Brewer=1", "Lumo=1"),
		tags:     fv("sale=3", "outdoor=1"),
		price:    []int64{0, 1, 2, 0, 0, 0, 0},
		inStock:  fv("true=3", "false=0"),
	},
	{
		name: "two brands match either", q: query.SearchProducts{Brands: []string{"Sonic", "Acme"}, Facets: allFacets}, total: 5,
		category: fv("audio=4", "kitchen=1"),
		brand:    fv("Acme=3", "Sonic=2", "Brewer=1", "Lumo=1"),
	},
	{
		name: "category filter: the category facet keeps every category",
		q:    query.SearchProducts{Category: "kitchen", Facets: []query.Facet{query.FacetCategory, query.FacetBrand}}, total: 2,
		category: fv("audio=4", "kitchen=2", "clocks=1", "home=1"),
		brand:    fv("Acme=1", "Brewer=1"),
	},
	{
		name: "category and brand filters: each facet drops only its own",
		q:    query.SearchProducts{Categories: []string{"audio"}, Brands: []string{"Sonic"}, Facets: []query.Facet{query.FacetCategory, query.FacetBrand}}, total: 2,
		category: fv("audio=2"),
		brand:    fv("Acme=2", "Sonic=2"),
	},
	{
		name: "tags filter: the tags facet keeps every tag",
		q:    query.SearchProducts{Tags: []string{"sale"}, Facets: []query.Facet{query.FacetTags, query.FacetBrand}}, total: 3,
		tags:  fv("new=3", "sale=3", "outdoor=2"),
		brand: fv("Acme=3"),
	},
	{
		name: "price filter: the price facet keeps every range",
		q: query.SearchProducts{MinPrice: ptr(int64(2000)), MaxPrice: ptr(int64(6000)),
			Facets: []query.Facet{query.FacetPrice, query.FacetBrand}}, total: 3,
		price: []int64{2, 1, 2, 2, 1, 0, 0},
		brand: fv("Acme=2", "Sonic=1"),
	},
	{
		name: "in stock filter: the in_stock facet keeps both counts, the others count the filter",
		q:    query.SearchProducts{InStock: ptr(true), Facets: []query.Facet{query.FacetCategory, query.FacetPrice, query.FacetInStock}}, total: 6,
		category: fv("audio=3", "kitchen=2", "clocks=1"),
		price:    []int64{2, 1, 2, 1, 0, 0, 0},
		inStock:  fv("true=6", "false=2"),
	},
	{
		name: "out of stock filter", q: query.SearchProducts{InStock: ptr(false), Facets: []query.Facet{query.FacetInStock, query.FacetCategory}}, total: 2,
		category: fv("audio=1", "home=1"),
		inStock:  fv("true=6", "false=2"),
	},
	{
		name: "price ranges of the search, from inclusive, to exclusive",
		q:    query.SearchProducts{PriceRanges: []int64{1000, 5000}, Facets: []query.Facet{query.FacetPrice}}, total: 8,
		price: []int64{2, 3, 3},
	},
	{
		name: "facet size bounds the values, highest counts first",
		q:    query.SearchProducts{FacetSize: 2, Facets: []query.Facet{query.FacetBrand, query.FacetCategory}}, total: 8,
		brand: fv("Acme=3", "Sonic=2"), category: fv("audio=4", "kitchen=2"),
	},
	{
		name: "facets count every page, not the page", q: query.SearchProducts{Size: 1, Facets: []query.Facet{query.FacetCategory}}, total: 8,
		category: fv("audio=4", "kitchen=2", "clocks=1", "home=1"),
	},
	{
		name: "no match: empty facets, empty ranges", q: query.SearchProducts{Text: "zeppelin", Facets: allFacets}, total: 0,
		category: fv(), brand: fv(), tags: fv(), price: []int64{0, 0, 0, 0, 0, 0, 0}, inStock: fv("true=0", "false=0"),
	},
	{
		name: "no words at all: nothing matches and facets are empty", q: query.SearchProducts{Text: "*", Facets: []query.Facet{query.FacetCategory}}, total: 0,
		category: fv(),
	},
}

func runFacets(t *testing.T, newFixture func(t *testing.T) Fixture) {
	e := setup(t, newFixture, true)
	for _, p := range facetShop {
		e.apply(p.Snapshot(t))
	}
	e.refresh()

	for _, tc := range facetCases {
		t.Run(tc.name, func(t *testing.T) { checkFacets(t, e, tc) })
	}

	t.Run("facets only when asked for", func(t *testing.T) {
		q := query.SearchProducts{Text: "speaker"}
		if res := e.search(q); res.Facets != nil {
			t.Errorf("facets without asking: %+v", *res.Facets)
		}
		res := e.search(query.SearchProducts{Facets: []query.Facet{query.FacetTags}})
		if res.Facets == nil || res.Facets.Category != nil || res.Facets.Brand != nil || res.Facets.Price != nil || res.Facets.InStock != nil || len(res.Facets.Tags) == 0 {
			t.Errorf("tags only: %+v", res.Facets)
		}
	})

	t.Run("facets do not change hits, order or cursors", func(t *testing.T) {
		plain := query.SearchProducts{Sort: query.SortPriceAsc, Size: 3}
		with := plain
		with.Facets, with.FacetSize, with.PriceRanges, with.Highlight = allFacets, 5, []int64{100}, true
		a, b := e.search(plain), e.search(with)
		if !slices.Equal(names(a.Items), names(b.Items)) || a.Total != b.Total {
			t.Fatalf("with facets %v (%d), without %v (%d)", names(b.Items), b.Total, names(a.Items), a.Total)
		}
		// A cursor issued without facets continues the search with them, and back.
		with.Cursor = a.NextCursor
		plain.Cursor = b.NextCursor
		c, d := e.search(with), e.search(plain)
		if !slices.Equal(names(c.Items), names(d.Items)) || len(c.Items) != 3 {
			t.Errorf("second pages differ: %v and %v", names(c.Items), names(d.Items))
		}
	})

	t.Run("bad facet requests are the client's", func(t *testing.T) {
		for name, q := range map[string]query.SearchProducts{
			"unknown facet":        {Facets: []query.Facet{"colour"}},
			"facet size too large": {Facets: allFacets, FacetSize: query.MaxFacetSize + 1},
			"negative facet size":  {Facets: allFacets, FacetSize: -1},
			"ranges not rising":    {Facets: allFacets, PriceRanges: []int64{500, 500}},
			"negative range":       {Facets: allFacets, PriceRanges: []int64{-1}},
			"too many ranges":      {Facets: allFacets, PriceRanges: rising(query.MaxPriceRanges + 1)},
			"empty brand value":    {Brands: []string{""}},
			"too many brands":      {Brands: manyValues(query.MaxFilterValues + 1)},
		} {
			if _, err := e.Search.Search(e.ctx(), q); !isInvalid(err) {
				t.Errorf("%s: %v, want ErrInvalidSearch", name, err)
			}
		}
	})
}

// checkFacets runs tc's search and compares its total and the facets tc pins.
func checkFacets(t *testing.T, e *env, tc facetCase) {
	t.Helper()
	res := e.search(tc.q)
	if res.Total != tc.total {
		t.Errorf("total %d, want %d (%v)", res.Total, tc.total, names(res.Items))
	}
	if res.Facets == nil {
		t.Fatalf("no facets for %v", tc.q.Facets)
	}
	checkValues := func(name string, got, want []query.FacetValue) {
		if want != nil && !slices.Equal(nonNil(got), want) {
			t.Errorf("%s facet = %v, want %v", name, got, want)
		}
	}
	checkValues("category", res.Facets.Category, tc.category)
	checkValues("brand", res.Facets.Brand, tc.brand)
	checkValues("tags", res.Facets.Tags, tc.tags)
	checkValues("in_stock", res.Facets.InStock, tc.inStock)
	if tc.price != nil {
		checkPrice(t, tc.q, res.Facets.Price, tc.price)
	}
}

func checkPrice(t *testing.T, q query.SearchProducts, got []query.PriceBucket, counts []int64) {
	t.Helper()
	nq, err := q.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	want := nq.PriceBuckets()
	if len(got) != len(want) || len(want) != len(counts) {
		t.Fatalf("price buckets %s, want %d buckets with counts %v", bucketsString(got), len(want), counts)
	}
	for i := range want {
		want[i].Count = counts[i]
		g := got[i]
		if g.From != want[i].From || g.Count != want[i].Count || (g.To == nil) != (want[i].To == nil) || g.To != nil && *g.To != *want[i].To {
			t.Errorf("price buckets %s, want %s", bucketsString(got), bucketsString(want))
			return
		}
	}
}

func bucketsString(bs []query.PriceBucket) string {
	parts := make([]string, len(bs))
	for i, b := range bs {
		to := "∞"
		if b.To != nil {
			to = fmt.Sprint(*b.To)
		}
		parts[i] = fmt.Sprintf("[%d,%s)=%d", b.From, to, b.Count)
	}
	return strings.Join(parts, " ")
}

func nonNil(v []query.FacetValue) []query.FacetValue {
	if v == nil {
		return []query.FacetValue{}
	}
	return v
}

func rising(n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(i+1) * 100
	}
	return out
}

func manyValues(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("Brand %d", i)
	}
	return out
}

// snapsOf is the snapshots of ps, in order.
func snapsOf(t *testing.T, ps []Product) []product.Snapshot {
	out := make([]product.Snapshot, len(ps))
	for i, p := range ps {
		out[i] = p.Snapshot(t)
	}
	return out
}
