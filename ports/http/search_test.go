package httpport_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/marketplace/catalog/application/query"
	httpport "github.com/marketplace/catalog/ports/http"
)

// fakeSearch records the query it was given and answers one page; it applies the real
// application-level validation so the port's mapping of its errors is tested for real.
type fakeSearch struct{ got *query.SearchProducts }

func (f fakeSearch) Handle(_ context.Context, q query.SearchProducts) (query.SearchResult, error) {
	*f.got = q
	if q.Cursor == "garbage" {
		return query.SearchResult{}, query.ErrInvalidCursor
	}
	n, err := q.Normalize()
	if err != nil {
		return query.SearchResult{}, fmt.Errorf("search products: %w", err)
	}
	res := query.SearchResult{Total: 1, NextCursor: "c2", Items: []query.ProductView{{
		ID: "0190a0b0-0000-7000-8000-000000000001", SKU: "S", Name: "Lamp", PriceAmount: 100, Currency: "EUR",
		Version: 2, CreatedAt: time.Unix(0, 0), UpdatedAt: time.Unix(0, 0),
	}}}
	// Every version waited for is behind, as a read model that never caught up reports it.
	for _, w := range n.Consistency.WaitFor {
		res.Behind = append(res.Behind, query.Lag{ID: w.ID, Want: w.Version, Have: w.Version - 1})
	}
	if len(res.Behind) > 0 && n.Consistency.Strict {
		return query.SearchResult{}, fmt.Errorf("search products: %w", &query.BehindError{Lags: res.Behind})
	}
	if n.Highlight {
		res.Items[0].Name = `Lamp <b>&</b> "shade"`
		res.Items[0].Highlight = query.Highlight{Name: []query.Fragment{{
			{Text: "Lamp", Match: true}, {Text: " <b>&</b> "}, {Text: `"shade"`, Match: true},
		}}}
	}
	if len(n.Facets) > 0 {
		res.Facets = &query.Facets{Category: []query.FacetValue{{Value: "audio", Count: 12}}, Price: n.PriceBuckets()}
		res.Facets.Price[0].Count = 3
		res.Facets.InStock = query.InStockValues()
		res.Facets.InStock[1].Count = 1
	}
	return res, nil
}

func searchServer(t *testing.T, got *query.SearchProducts) http.Handler {
	t.Helper()
	s := newStore()
	app := s.app()
	app.Queries.SearchProducts = fakeSearch{got: got}
	srv, err := httpport.NewServer(httpport.Config{}, app, httpport.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	return srv.Handler()
}

func TestSearchParsesEveryParameter(t *testing.T) {
	var got query.SearchProducts
	h := searchServer(t, &got)
	rec := do(h, "GET", "/v1/products/search?q=wireless+speaker&category=audio&brand=Acme&min_price=10&max_price=2000&in_stock=true&sort=price_desc&size=5&cursor=abc", "", nil)
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	checkAgainstSpec(t, "GET", "/v1/products/search?q=x", "", nil, rec)
	if got.Text != "wireless speaker" || !slices.Equal(got.Categories, []string{"audio"}) || !slices.Equal(got.Brands, []string{"Acme"}) || *got.MinPrice != 10 ||
		*got.MaxPrice != 2000 || !*got.InStock || got.Sort != query.SortPriceDesc || got.Size != 5 || got.Cursor != "abc" {
		t.Fatalf("parsed %+v", got)
	}
}

func TestSearchHostileInputNeverFails(t *testing.T) {
	var got query.SearchProducts
	h := searchServer(t, &got)
	cases := map[string]int{
		"q=" + url.QueryEscape("' OR 1=1--"): 200,
		"q=name:*":                           200,
		"q=" + url.QueryEscape("/.*{9999}/"): 200,
		"q=" + url.QueryEscape("ünïcødé 🚀"):  200,
		"size=100000":                        400,
		"size=0":                             400,
		"size=abc":                           400,
		"cursor=garbage":                     400,
		"min_price=abc":                      400,
		"min_price=-1":                       400,
		"min_price=10&max_price=5":           400,
		"in_stock=maybe":                     400,
		"colour=red":                         400,
		"q=a&q=b":                            400,
		"facets=colour":                      400,
		"facets=category,":                   400,
		"facets=a&facets=b":                  400,
		"facet_size=0":                       400,
		"facet_size=51":                      400,
		"facet_size=x":                       400,
		"price_ranges=abc":                   400,
		"price_ranges=5000,1000":             400,
		"price_ranges=0":                     400,
		"highlight=maybe":                    400,
		"wait_for=abc":                       400,
		"wait_for=" + liveID + ":0":          400,
		"wait_for=" + liveID:                 400,
		"wait_for=" + liveID + ":1&wait_timeout=11s":  400,
		"wait_for=" + liveID + ":1&wait_timeout=-1s":  400,
		"wait_for=" + liveID + ":1&wait_timeout=soon": 400,
		"wait_for=" + liveID + ":1&wait=eventually":   400,
		"wait_timeout=1s": 400,
		"wait=strict":     400,
		"category=" + strings.Repeat("c&category=", 50) + "c":                   400,
		"wait_for=" + strings.Repeat(liveID+":1&wait_for=", 10) + liveID + ":1": 400,
		"category=a&category=b&brand=a&brand=b":                                 200,
		"facets=category,brand,tags,price&facet_size=50&price_ranges=1,2":       200,
	}
	for qs, want := range cases {
		rec := do(h, "GET", "/v1/products/search?"+qs, "", nil)
		if rec.Code != want {
			t.Errorf("?%s: status %d, want %d (%s)", qs, rec.Code, want, rec.Body)
		}
		if want == 400 {
			if p := decodeProblem(t, rec); p.Type != httpport.ProblemInvalidParameter {
				t.Errorf("?%s: problem type %q", qs, p.Type)
			}
		}
	}
}

func TestSearchWithoutReadModelIs503(t *testing.T) {
	s := newStore()
	srv, err := httpport.NewServer(httpport.Config{}, s.app(), httpport.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	rec := do(srv.Handler(), "GET", "/v1/products/search?q=x", "", nil)
	if rec.Code != 503 {
		t.Fatalf("status %d, want 503", rec.Code)
	}
}

func TestSearchFacetsHighlightAndBehind(t *testing.T) {
	var got query.SearchProducts
	h := searchServer(t, &got)
	path := "/v1/products/search?q=lamp&facets=price,category,tags,in_stock&price_ranges=1000,5000&highlight=true&wait_for=" + liveID + ":3&wait_timeout=50ms"
	rec := do(h, "GET", path, "", nil)
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	checkAgainstSpec(t, "GET", path, "", nil, rec)
	if got.Consistency.Timeout != 50*time.Millisecond || len(got.Consistency.WaitFor) != 1 || got.Consistency.WaitFor[0].Version != 3 || !got.Highlight {
		t.Fatalf("parsed %+v", got)
	}
	if h := rec.Header().Get("Read-Model-Behind"); h != liveID+":3" {
		t.Errorf("Read-Model-Behind = %q", h)
	}
	var body struct {
		Items []struct {
			Highlight struct {
				Name []string `json:"name"`
			} `json:"highlight"`
		} `json:"items"`
		Facets map[string]json.RawMessage `json:"facets"`
		Behind []struct {
			ID      string `json:"id"`
			Version int64  `json:"version"`
			Have    int64  `json:"have"`
		} `json:"behind"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	// The product's text is escaped; only the port's own <em> is markup.
	if want := []string{`<em>Lamp</em> &lt;b&gt;&amp;&lt;/b&gt; <em>&#34;shade&#34;</em>`}; len(body.Items) != 1 || !slices.Equal(body.Items[0].Highlight.Name, want) {
		t.Errorf("highlight %+v, want %q", body.Items, want)
	}
	// Every facet asked for is there, the empty one as [].
	want := map[string]string{
		"category": `[{"value":"audio","count":12}]`,
		"tags":     `[]`,
		"in_stock": `[{"value":"true","count":0},{"value":"false","count":1}]`,
		"price":    `[{"from":0,"to":1000,"count":3},{"from":1000,"to":5000,"count":0},{"from":5000,"count":0}]`,
	}
	if len(body.Facets) != len(want) {
		t.Errorf("facets %s", rec.Body)
	}
	for k, v := range want {
		if string(body.Facets[k]) != v {
			t.Errorf("facet %s = %s, want %s", k, body.Facets[k], v)
		}
	}
	if len(body.Behind) != 1 || body.Behind[0].ID != liveID || body.Behind[0].Version != 3 || body.Behind[0].Have != 2 {
		t.Errorf("behind %+v", body.Behind)
	}

	// Without facets, highlight and waits the page has none of them.
	rec = do(h, "GET", "/v1/products/search?q=lamp", "", nil)
	if strings.Contains(rec.Body.String(), "facets") || strings.Contains(rec.Body.String(), "highlight") ||
		strings.Contains(rec.Body.String(), "behind") || rec.Header().Get("Read-Model-Behind") != "" {
		t.Errorf("plain search: %s %v", rec.Body, rec.Header())
	}
}

func TestStrictWaitIs503ReadModelBehind(t *testing.T) {
	var got query.SearchProducts
	h := searchServer(t, &got)
	for _, path := range []string{
		"/v1/products/search?q=lamp&wait=strict&wait_for=" + liveID + ":3",
		"/v1/products/" + liveID + "?wait=strict&wait_for=" + liveID + ":4",
	} {
		rec := do(h, "GET", path, "", nil)
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
			t.Fatalf("%s: status %d, Retry-After %q: %s", path, rec.Code, rec.Header().Get("Retry-After"), rec.Body)
		}
		checkAgainstSpec(t, "GET", path, "", nil, rec)
		p := decodeProblem(t, rec)
		if p.Type != httpport.ProblemReadModelBehind || !strings.Contains(p.Detail, liveID) {
			t.Errorf("%s: problem %+v", path, p)
		}
	}
}

func TestGetProductWaitsForVersions(t *testing.T) {
	srv, err := httpport.NewServer(httpport.Config{}, seeded().app(), httpport.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	h := srv.Handler()
	// Version 3 is stored: no header. Version 4 is not: the product as stored, and the header.
	rec := do(h, "GET", "/v1/products/"+liveID+"?wait_for="+liveID+":3", "", nil)
	if rec.Code != 200 || rec.Header().Get("Read-Model-Behind") != "" {
		t.Fatalf("status %d, header %q", rec.Code, rec.Header().Get("Read-Model-Behind"))
	}
	path := "/v1/products/" + liveID + "?wait_for=" + liveID + ":4&wait_timeout=1ms"
	rec = do(h, "GET", path, "", nil)
	if rec.Code != 200 || rec.Header().Get("Read-Model-Behind") != liveID+":4" {
		t.Fatalf("status %d, header %q", rec.Code, rec.Header().Get("Read-Model-Behind"))
	}
	checkAgainstSpec(t, "GET", path, "", nil, rec)
	if p := decodeProduct(t, rec); p.Version != 3 {
		t.Fatalf("version %d", p.Version)
	}
	for _, qs := range []string{"wait_for=x", "wait_timeout=1s", "wait_for=" + liveID + ":1&wait=a&wait=b", "wait_for=" + liveID + ":1&wait_timeout=1m"} {
		rec := do(h, "GET", "/v1/products/"+liveID+"?"+qs, "", nil)
		if rec.Code != 400 {
			t.Errorf("?%s: status %d, want 400", qs, rec.Code)
		} else if p := decodeProblem(t, rec); p.Type != httpport.ProblemInvalidParameter {
			t.Errorf("?%s: problem %+v", qs, p)
		}
	}
}
