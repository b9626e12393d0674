package readmodeltest

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marketplace/catalog/application/query"
	"github.com/marketplace/catalog/domain/product"
)

// searchCase is one property of query.ProductSearchReadModel, checked against the shared
// search fixture (newCatalogue), which no case changes.
type searchCase struct {
	name string
	run  func(t *testing.T, c *catalogue)
}

// searchCases are the search contract: which products a text and filters find (never a
// tombstone), what a hit shows, and how sorts and cursors page through every hit once.
var searchCases = []searchCase{
	{"text matches every word in one field, tombstones never", searchText},
	{"typos in name and brand are forgiven within the edit limit", func(t *testing.T, c *catalogue) { runTypos(t, c.e) }},
	{"filters are exact and combine with text", searchFilters},
	{"a hit shows the product as written", searchView},
	{"every sort pages through all hits once, ties broken by id", sortsAndCursorPaging},
	{"newest sorts by millisecond and breaks ties by id", newestByMillisecond},
	{"the total counts all hits and a full page has a cursor", totalAndFullPages},
	{"hostile input gives results or a client error, never a tombstone", hostileInput},
	{"a cursor of another search or a forged one is refused", badCursor},
}

// runSearch builds the search fixture once (it is the slow part) and runs every case on it,
// each failing on its own subtest.
func runSearch(t *testing.T, newFixture func(t *testing.T) Fixture) {
	c := newCatalogue(t, newFixture)
	for _, tc := range searchCases {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, c.on(t)) })
	}
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

// on is the catalogue with its env bound to t, so that a failed check fails t's case and not
// the whole search group.
func (c *catalogue) on(t *testing.T) *catalogue {
	bound := *c
	bound.e = &env{t: t, Fixture: c.e.Fixture}
	return &bound
}

func searchText(t *testing.T, c *catalogue) {
	e := c.e
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
}

func searchFilters(t *testing.T, c *catalogue) {
	e := c.e
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
}

func searchView(t *testing.T, c *catalogue) {
	e := c.e
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
}

func sortsAndCursorPaging(t *testing.T, c *catalogue) {
	e := c.e
	byID := func(a, b product.Snapshot) int { return cmp.Compare(a.ID, b.ID) }
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
			return cmp.Or(cmp.Compare(a.Details.Price.Amount(), b.Details.Price.Amount()), byID(a, b))
		}},
		{query.SortPriceDesc, "", 7, func(a, b product.Snapshot) int {
			return cmp.Or(cmp.Compare(b.Details.Price.Amount(), a.Details.Price.Amount()), byID(a, b))
		}},
		{query.SortNewest, "", 10, func(a, b product.Snapshot) int { return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), byID(a, b)) }},
		{query.SortNewest, "paging", 4, func(a, b product.Snapshot) int { return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), byID(a, b)) }},
	} {
		want := slices.Clone(c.books)
		slices.SortFunc(want, tc.cmp)
		got, pages := pageThrough(t, e, query.SearchProducts{Text: tc.text, Category: "books", Sort: tc.sort, Size: tc.size})
		// A last page that is exactly full still has a cursor, to an empty page.
		wantPages := 25/tc.size + 1
		if pages != wantPages || !slices.Equal(got, ids(want)) {
			t.Errorf("%s %q size %d: %d pages (want %d)\n got %v\nwant %v", tc.sort, tc.text, tc.size, pages, wantPages, got, ids(want))
		}
	}
}

func newestByMillisecond(t *testing.T, c *catalogue) {
	e := c.e
	twins := slices.Clone(c.clocks[:3])
	slices.SortFunc(twins, func(a, b product.Snapshot) int { return cmp.Compare(a.ID, b.ID) })
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
}

func totalAndFullPages(t *testing.T, c *catalogue) {
	e := c.e
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
}

func hostileInput(t *testing.T, c *catalogue) {
	e := c.e
	long := strings.Repeat("x", query.MaxSearchText)
	for _, q := range hostileQueries(long) {
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
	for _, q := range []query.SearchProducts{{Text: numberedWords(300)}, {Text: long + "y"}, {Size: 101}, {Sort: "nope"}, {Brand: "\xff"}} {
		if _, err := e.Search.Search(e.ctx(), q); !errors.Is(err, query.ErrInvalidSearch) {
			t.Errorf("Search(%.80s) = %v, want ErrInvalidSearch", fmt.Sprintf("%+v", q), err)
		}
	}
}

func badCursor(t *testing.T, c *catalogue) {
	e := c.e
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
		"string value": {Category: "books", Sort: query.SortPriceAsc, Cursor: tamperCursor(t, first.NextCursor, func(c map[string]any) {
			c["a"] = []any{"cheap", "x"}
		})},
		"float price": {Category: "books", Sort: query.SortPriceAsc, Cursor: tamperCursor(t, first.NextCursor, func(c map[string]any) {
			c["a"] = []any{1.5, "x"}
		})},
		"three values": {Category: "books", Sort: query.SortPriceAsc, Cursor: tamperCursor(t, first.NextCursor, func(c map[string]any) {
			c["a"] = []any{1, "x", "y"}
		})},
		"object id": {Category: "books", Sort: query.SortPriceAsc, Cursor: tamperCursor(t, first.NextCursor, func(c map[string]any) {
			c["a"] = []any{1, map[string]any{"x": 1}}
		})},
		"unknown field": {Category: "books", Sort: query.SortPriceAsc, Cursor: tamperCursor(t, first.NextCursor, func(c map[string]any) {
			c["z"] = 1
		})},
	} {
		_, err := e.Search.Search(e.ctx(), q)
		if !errors.Is(err, query.ErrInvalidCursor) {
			t.Errorf("%s: %v, want ErrInvalidCursor", name, err)
		}
	}
}

// pageThrough follows q's cursors to the end and returns the ids in the order served and the
// number of pages, failing when a page is too large, a hit repeats or the total changes.
func pageThrough(t *testing.T, e *env, q query.SearchProducts) (got []string, pages int) {
	t.Helper()
	seen := map[string]bool{}
	for {
		res := e.search(q)
		pages++
		if res.Total != 25 {
			t.Fatalf("%s %q page %d: total %d, want 25", q.Sort, q.Text, pages, res.Total)
		}
		if len(res.Items) > q.Size {
			t.Fatalf("%s page %d: %d items for size %d", q.Sort, pages, len(res.Items), q.Size)
		}
		for _, it := range res.Items {
			if seen[it.ID] {
				t.Errorf("%s %q: %s (%s) on two pages", q.Sort, q.Text, it.ID, it.Name)
			}
			seen[it.ID] = true
			got = append(got, it.ID)
		}
		if res.NextCursor == "" {
			if len(res.Items) == q.Size {
				t.Errorf("%s: a full page without a cursor", q.Sort)
			}
			return got, pages
		}
		if pages > 25 {
			t.Fatalf("%s: paging does not end", q.Sort)
		}
		q.Cursor = res.NextCursor
	}
}

// tamperCursor decodes cursor, lets mod change its fields and encodes it again, as a client
// forging a cursor would.
func tamperCursor(t *testing.T, cursor string, mod func(map[string]any)) string {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	mod(c)
	raw, _ = json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(raw)
}

// hostileQueries are searches an attacker or a broken client may send: query syntax, control
// bytes, invalid UTF-8, oversized text and values out of range. long is a text of the
// longest allowed length.
func hostileQueries(long string) []query.SearchProducts {
	return []query.SearchProducts{
		{Text: "' OR 1=1--"}, {Text: "name:*"}, {Text: "/.*{9999}/"}, {Text: "*"}, {Text: `+-&&||!(){}[]^"~*?:\/`},
		{Text: `"unterminated`}, {Text: "a AND (b OR"}, {Text: "*:*"}, {Text: "\\"}, {Text: `{"query":{"match_all":{}}}`},
		{Text: "name:wireless"}, {Text: "wirel*"}, {Text: "wireless~2"}, {Text: "_id:*"}, {Text: "deleted:true"},
		{Text: "ünïcödé 🚀 日本語 עברית"}, {Text: "\x00\x01\u202e"}, {Text: "\xff\xfe"}, {Text: long}, {Text: long + "y"},
		{Text: numberedWords(120)}, {Text: numberedWords(300)}, {Text: ideographs(120)}, {Text: ideographs(500)},
		{Text: strings.Repeat("a ", 250)}, {Text: strings.Repeat("中", 500)}, {Text: strings.Repeat("é", 500)},
		{Category: "' OR 1=1--"}, {Brand: "*"}, {Category: strings.Repeat("c", 5000)}, {Brand: "\xff"}, {Category: "name:*"},
		{Size: 100000}, {Size: -1}, {Sort: "nope"}, {Sort: "_score"}, {Sort: "price_asc; DROP TABLE"},
		{MinPrice: ptr(int64(-1))}, {MinPrice: ptr(int64(10)), MaxPrice: ptr(int64(5))}, {MaxPrice: ptr(int64(1 << 62))},
		{MinPrice: ptr(int64(1 << 62))}, {Cursor: strings.Repeat("A", 5000)},
	}
}

// numberedWords is a text of n distinct words ("w0 w1 ...").
func numberedWords(n int) string {
	s := ""
	for i := range n {
		s += fmt.Sprintf("w%d ", i)
	}
	return s
}

// ideographs is a text of n distinct CJK characters, one word each for some analysers.
func ideographs(n int) string {
	s := make([]rune, n)
	for i := range s {
		s[i] = rune(0x4e00 + i)
	}
	return string(s)
}
