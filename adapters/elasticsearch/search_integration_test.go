package elasticsearch_test

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/marketplace/catalog/adapters/elasticsearch"
	"github.com/marketplace/catalog/application/query"
)

// rmFixture is a small catalogue behind a fresh alias, shared by the search tests.
type rmFixture struct {
	e      *rmEnv
	s      *elasticsearch.Search
	byName map[string]rmProduct
	books  []rmProduct // the 25 paging items
}

func rmSearchFixture(t *testing.T) *rmFixture {
	t.Helper()
	e := rmSetup(t, nil)
	e.ensure()
	p := e.projection()
	base := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	f := &rmFixture{e: e, s: e.search(), byName: map[string]rmProduct{}}
	add := func(rp rmProduct) {
		rp.ID = rmNewID()
		if rp.Created.IsZero() {
			rp.Created = base
		}
		if err := p.Apply(e.ctx(), rp.snapshot(t)); err != nil {
			t.Fatalf("Apply %s: %v", rp.Name, err)
		}
		f.byName[rp.Name] = rp
	}
	add(rmProduct{Name: "Wireless speaker", Description: "Loud and portable", Category: "audio", Brand: "Acme", Amount: 1999, Stock: 5,
		Attributes: map[string]string{"color": "red", "watts": "20"}})
	add(rmProduct{Name: "Wireless headphones", Description: "Noise cancelling", Category: "audio", Brand: "Sonic", Amount: 5999, Stock: 0})
	add(rmProduct{Name: "Wired earbuds", Description: "Cheap and cheerful", Category: "audio", Brand: "Acme", Amount: 999, Stock: 12})
	add(rmProduct{Name: "Wireless charger", Description: "Deleted product", Category: "audio", Brand: "Acme", Amount: 2999, Stock: 4,
		Version: 2, Deleted: true})
	add(rmProduct{Name: "Garden hose", Description: "Ideal for watering plants", Category: "garden", Brand: "Greenly", Amount: 999, Stock: 3})
	add(rmProduct{Name: "Desk lamp", Description: "Bright LED", Category: "home", Brand: "Lumo", Amount: 2500, Stock: 2})
	add(rmProduct{Name: "Reading light", Description: "A small lamp for readers", Category: "home", Brand: "Lumo", Amount: 1500, Stock: 2})
	add(rmProduct{Name: "Tea cup", Description: "Porcelain 日本の茶碗 ünïcödé", Category: "home & kitchen", Brand: "Ça Va", Amount: 700, Stock: 1})
	for i := range 25 {
		rp := rmProduct{
			Name:     fmt.Sprintf("Paging item %02d", i),
			Category: "books", Brand: "Reader",
			Amount:  int64(100 + (i%5)*10), // ties: the id must break them
			Stock:   int64(i % 3),
			Created: base.Add(time.Duration(i/2) * time.Hour),
		}
		add(rp)
		f.books = append(f.books, f.byName[rp.Name])
	}
	e.refresh()
	return f
}

func (f *rmFixture) search(t *testing.T, q query.SearchProducts) query.SearchResult {
	t.Helper()
	res, err := f.s.Search(f.e.ctx(), q)
	if err != nil {
		t.Fatalf("Search(%+v): %v", q, err)
	}
	return res
}

func rmNames(items []query.ProductView) []string {
	out := make([]string, 0, len(items))
	for _, it := range items {
		out = append(out, it.Name)
	}
	return out
}

func rmSameSet(got, want []string) bool {
	a, b := slices.Clone(got), slices.Clone(want)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func TestSearch(t *testing.T) {
	f := rmSearchFixture(t)

	t.Run("text", func(t *testing.T) {
		for _, tc := range []struct {
			text string
			want []string
		}{
			{"wireless", []string{"Wireless speaker", "Wireless headphones"}}, // the charger is a tombstone
			{"WIRELESS Speaker", []string{"Wireless speaker"}},                // all words must match
			{"watering", []string{"Garden hose"}},                             // description
			{"acme", []string{"Wireless speaker", "Wired earbuds"}},           // brand
			{"garden", []string{"Garden hose"}},                               // category
			{"茶碗", []string{"Tea cup"}},
			{"nothing matches this", nil},
		} {
			res := f.search(t, query.SearchProducts{Text: tc.text})
			if !rmSameSet(rmNames(res.Items), tc.want) || res.Total != int64(len(tc.want)) {
				t.Errorf("q=%q: %v (total %d), want %v", tc.text, rmNames(res.Items), res.Total, tc.want)
			}
		}
		// A name match outranks a description match.
		res := f.search(t, query.SearchProducts{Text: "lamp"})
		if got := rmNames(res.Items); !slices.Equal(got, []string{"Desk lamp", "Reading light"}) {
			t.Errorf("q=lamp ranked %v, want the name match first", got)
		}
	})

	t.Run("filters", func(t *testing.T) {
		i64 := func(v int64) *int64 { return &v }
		yes, no := true, false
		for _, tc := range []struct {
			name string
			q    query.SearchProducts
			want []string
		}{
			{"category", query.SearchProducts{Category: "audio"}, []string{"Wireless speaker", "Wireless headphones", "Wired earbuds"}},
			{"category is exact", query.SearchProducts{Category: "Audio"}, nil},
			{"category with spaces", query.SearchProducts{Category: "home & kitchen"}, []string{"Tea cup"}},
			{"brand", query.SearchProducts{Brand: "Lumo"}, []string{"Desk lamp", "Reading light"}},
			{"brand unicode", query.SearchProducts{Brand: "Ça Va"}, []string{"Tea cup"}},
			{"price range inclusive", query.SearchProducts{Category: "audio", MinPrice: i64(1999), MaxPrice: i64(5999)},
				[]string{"Wireless speaker", "Wireless headphones"}},
			{"price range", query.SearchProducts{MinPrice: i64(500), MaxPrice: i64(999)}, []string{"Wired earbuds", "Garden hose", "Tea cup"}},
			{"in stock", query.SearchProducts{Category: "audio", InStock: &yes}, []string{"Wireless speaker", "Wired earbuds"}},
			{"out of stock", query.SearchProducts{Category: "audio", InStock: &no}, []string{"Wireless headphones"}},
			{"text and filters", query.SearchProducts{Text: "wireless", Brand: "Acme"}, []string{"Wireless speaker"}},
		} {
			res := f.search(t, tc.q)
			if !rmSameSet(rmNames(res.Items), tc.want) || res.Total != int64(len(tc.want)) {
				t.Errorf("%s: %v (total %d), want %v", tc.name, rmNames(res.Items), res.Total, tc.want)
			}
		}
	})

	t.Run("view", func(t *testing.T) {
		res := f.search(t, query.SearchProducts{Text: "speaker"})
		if len(res.Items) != 1 {
			t.Fatalf("%+v", res)
		}
		want := f.byName["Wireless speaker"]
		got := res.Items[0]
		if got.ID != string(want.ID) || got.SKU == "" || got.Brand != "Acme" || got.Category != "audio" ||
			got.PriceAmount != 1999 || got.Currency != "EUR" || got.Stock != 5 || got.Version != 1 ||
			got.Description != "Loud and portable" || !got.CreatedAt.Equal(want.Created) || got.UpdatedAt.IsZero() {
			t.Errorf("view = %+v", got)
		}
		if len(got.Attributes) != 2 || got.Attributes["color"] != "red" || got.Attributes["watts"] != "20" {
			t.Errorf("attributes = %v", got.Attributes)
		}
	})

	t.Run("sorts and cursor paging", func(t *testing.T) {
		byID := func(a, b rmProduct) int { return cmp.Compare(a.ID, b.ID) }
		for _, tc := range []struct {
			sort query.SortOrder
			text string
			cmp  func(a, b rmProduct) int
		}{
			{query.SortRelevance, "", byID}, // equal scores: the id decides
			{query.SortRelevance, "paging item", byID},
			{query.SortPriceAsc, "", func(a, b rmProduct) int { return cmp.Or(cmp.Compare(a.Amount, b.Amount), byID(a, b)) }},
			{query.SortPriceDesc, "", func(a, b rmProduct) int { return cmp.Or(cmp.Compare(b.Amount, a.Amount), byID(a, b)) }},
			{query.SortNewest, "", func(a, b rmProduct) int { return cmp.Or(b.Created.Compare(a.Created), byID(a, b)) }},
		} {
			want := slices.Clone(f.books)
			slices.SortFunc(want, tc.cmp)
			var got []string
			cursor, pages := "", 0
			for {
				res := f.search(t, query.SearchProducts{Text: tc.text, Category: "books", Sort: tc.sort, Size: 10, Cursor: cursor})
				pages++
				if res.Total != 25 {
					t.Fatalf("%s page %d: total %d, want 25", tc.sort, pages, res.Total)
				}
				for _, it := range res.Items {
					got = append(got, it.ID)
				}
				if res.NextCursor == "" {
					break
				}
				if pages > 5 {
					t.Fatalf("%s: paging does not end", tc.sort)
				}
				cursor = res.NextCursor
			}
			wantIDs := make([]string, len(want))
			for i, w := range want {
				wantIDs[i] = string(w.ID)
			}
			if pages != 3 || !slices.Equal(got, wantIDs) {
				t.Errorf("%s %q: %d pages\n got %v\nwant %v", tc.sort, tc.text, pages, got, wantIDs)
			}
		}
		// A page that is exactly full continues with a cursor; the next page is empty and ends.
		res := f.search(t, query.SearchProducts{Category: "audio", Size: 3, Sort: query.SortPriceAsc})
		if len(res.Items) != 3 || res.NextCursor == "" {
			t.Fatalf("full page: %+v", res)
		}
		res = f.search(t, query.SearchProducts{Category: "audio", Size: 3, Sort: query.SortPriceAsc, Cursor: res.NextCursor})
		if len(res.Items) != 0 || res.NextCursor != "" || res.Total != 3 {
			t.Fatalf("page after the last: %+v", res)
		}
	})

	t.Run("hostile input", func(t *testing.T) {
		long := strings.Repeat("x", query.MaxSearchText)
		words := func(n int) string {
			var b strings.Builder
			for i := range n {
				fmt.Fprintf(&b, "w%d ", i)
			}
			return b.String()
		}
		ideographs := func(n int) string {
			var b strings.Builder
			for i := range n {
				b.WriteRune(rune(0x4e00 + i))
			}
			return b.String()
		}
		i64 := func(v int64) *int64 { return &v }
		qs := []query.SearchProducts{
			{Text: "' OR 1=1--"}, {Text: "name:*"}, {Text: "/.*{9999}/"}, {Text: `"unterminated`},
			{Text: "a AND (b OR"}, {Text: "*:*"}, {Text: "\\"}, {Text: "{\"query\":{\"match_all\":{}}}"},
			{Text: "ünïcödé 🚀 日本語 עברית"}, {Text: "\x00\x01\u202e"}, {Text: "\xff\xfe"}, {Text: long},
			{Text: long + "y"}, {Text: words(120)}, {Text: words(300)}, {Text: ideographs(120)}, {Text: ideographs(500)},
			{Text: strings.Repeat("a ", 250)}, {Text: strings.Repeat("中", 500)},
			{Category: "' OR 1=1--"}, {Brand: "*"}, {Category: strings.Repeat("c", 5000)}, {Brand: "\xff"},
			{Size: 100000}, {Size: -1}, {Sort: "nope"}, {Sort: "_score"},
			{MinPrice: i64(-1)}, {MinPrice: i64(10), MaxPrice: i64(5)}, {MaxPrice: i64(1 << 62)},
			{Cursor: strings.Repeat("A", 5000)},
		}
		for _, q := range qs {
			_, err := f.s.Search(f.e.ctx(), q)
			if err != nil && !errors.Is(err, query.ErrInvalidSearch) {
				t.Errorf("Search(%.80q...) = %v, want results or ErrInvalidSearch", fmt.Sprintf("%+v", q), err)
			}
		}
		if _, err := f.s.Search(f.e.ctx(), query.SearchProducts{Text: words(300)}); !errors.Is(err, query.ErrInvalidSearch) {
			t.Errorf("300 words = %v, want ErrInvalidSearch", err)
		}
		if res, err := f.s.Search(f.e.ctx(), query.SearchProducts{Text: "' OR 1=1--"}); err != nil || res.Total != 0 {
			t.Errorf("injection attempt = %+v, %v; want no results", res, err)
		}
	})

	t.Run("bad cursor", func(t *testing.T) {
		first := f.search(t, query.SearchProducts{Category: "books", Sort: query.SortPriceAsc, Size: 5})
		if first.NextCursor == "" {
			t.Fatal("no cursor")
		}
		tamper := func(mod func(map[string]any)) string {
			raw, err := base64.RawURLEncoding.DecodeString(first.NextCursor)
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
		for name, q := range map[string]query.SearchProducts{
			"garbage":        {Category: "books", Sort: query.SortPriceAsc, Cursor: "garbage!"},
			"base64 of junk": {Category: "books", Sort: query.SortPriceAsc, Cursor: base64.RawURLEncoding.EncodeToString([]byte("junk"))},
			"other sort":     {Category: "books", Sort: query.SortPriceDesc, Cursor: first.NextCursor},
			"other filter":   {Category: "audio", Sort: query.SortPriceAsc, Cursor: first.NextCursor},
			"other text":     {Text: "paging", Category: "books", Sort: query.SortPriceAsc, Cursor: first.NextCursor},
			"string value": {Category: "books", Sort: query.SortPriceAsc, Cursor: tamper(func(c map[string]any) {
				c["a"] = []any{"cheap", "x"}
			})},
			"float price": {Category: "books", Sort: query.SortPriceAsc, Cursor: tamper(func(c map[string]any) {
				c["a"] = []any{1.5, "x"}
			})},
			"three values": {Category: "books", Sort: query.SortPriceAsc, Cursor: tamper(func(c map[string]any) {
				c["a"] = []any{1, "x", "y"}
			})},
			"object id": {Category: "books", Sort: query.SortPriceAsc, Cursor: tamper(func(c map[string]any) {
				c["a"] = []any{1, map[string]any{"x": 1}}
			})},
			"unknown field": {Category: "books", Sort: query.SortPriceAsc, Cursor: tamper(func(c map[string]any) {
				c["z"] = 1
			})},
		} {
			_, err := f.s.Search(f.e.ctx(), q)
			if !errors.Is(err, query.ErrInvalidCursor) {
				t.Errorf("%s: %v, want ErrInvalidCursor", name, err)
			}
		}
		// The page size may change between pages.
		res := f.search(t, query.SearchProducts{Category: "books", Sort: query.SortPriceAsc, Size: 20, Cursor: first.NextCursor})
		if len(res.Items) != 20 {
			t.Errorf("cursor with another size: %d items", len(res.Items))
		}
	})
}

func TestSearchWithoutAliasIsNotAClientError(t *testing.T) {
	e := rmSetup(t, nil)
	_, err := e.search().Search(e.ctx(), query.SearchProducts{Text: "x"})
	if err == nil || errors.Is(err, query.ErrInvalidSearch) {
		t.Fatalf("Search without alias = %v, want a plain error", err)
	}
}
