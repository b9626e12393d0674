package httpport_test

import (
	"context"
	"net/http"
	"net/url"
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
	if q.MinPrice != nil && q.MaxPrice != nil && *q.MinPrice > *q.MaxPrice {
		return query.SearchResult{}, query.ErrInvalidSearch
	}
	return query.SearchResult{Total: 1, NextCursor: "c2", Items: []query.ProductView{{
		ID: "0190a0b0-0000-7000-8000-000000000001", SKU: "S", Name: "Lamp", PriceAmount: 100, Currency: "EUR",
		Version: 2, CreatedAt: time.Unix(0, 0), UpdatedAt: time.Unix(0, 0),
	}}}, nil
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
	if got.Text != "wireless speaker" || got.Category != "audio" || got.Brand != "Acme" || *got.MinPrice != 10 ||
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
