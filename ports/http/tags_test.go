package httpport_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/marketplace/catalog/application/query"
	httpport "github.com/marketplace/catalog/ports/http"
)

func TestProductTags(t *testing.T) {
	s := newStore()
	srv, _ := newServer(t, s)
	h := srv.Handler()
	withTags := strings.Replace(validBody, `"stock":1`, `"stock":1,"tags":["sale"," eco "]`, 1)
	rec := do(h, "POST", "/v1/products", withTags, nil)
	if rec.Code != 201 {
		t.Fatalf("create with tags: %d %s", rec.Code, rec.Body)
	}
	checkAgainstSpec(t, "POST", "/v1/products", withTags, nil, rec)
	p := decodeProduct(t, rec)
	if !slices.Equal(p.Tags, []string{"sale", "eco"}) {
		t.Fatalf("tags %q", p.Tags)
	}

	rec = do(h, "POST", "/v1/products", strings.Replace(validBody, "SKU-NEW", "SKU-BARE", 1), nil)
	if rec.Code != 201 || !strings.Contains(rec.Body.String(), `"tags":[]`) {
		t.Fatalf("create without tags: %d %s; want \"tags\":[]", rec.Code, rec.Body)
	}
	if !s.lastCreate.Input.TagsOmitted {
		t.Error("a create without tags did not say so")
	}

	// PUT without tags keeps them (an old client), with [] clears them.
	put := strings.Replace(validBody, `"stock":1`, `"stock":2`, 1)
	rec = do(h, "PUT", "/v1/products/"+p.ID, put, hdr("If-Match", `"1"`))
	if rec.Code != 200 || !s.lastUpdate.Input.TagsOmitted {
		t.Fatalf("PUT without tags: %d %s, omitted=%v", rec.Code, rec.Body, s.lastUpdate.Input.TagsOmitted)
	}
	rec = do(h, "PUT", "/v1/products/"+p.ID, strings.Replace(put, `"stock":2`, `"stock":2,"tags":[]`, 1), hdr("If-Match", `"2"`))
	if rec.Code != 200 || s.lastUpdate.Input.TagsOmitted || s.lastUpdate.Input.Tags == nil {
		t.Fatalf("PUT with []: %d %s, input %+v", rec.Code, rec.Body, s.lastUpdate.Input)
	}

	for name, c := range map[string]struct {
		tags   string
		status int
		field  string
	}{
		"comma":      {`["a,b"]`, 422, "tags[0]"},
		"duplicate":  {`["a","a"]`, 422, "tags[1]"},
		"not a list": {`"a,b"`, 400, "tags"},
		"numbers":    {`[1]`, 400, "tags"},
	} {
		body := strings.Replace(validBody, `"stock":1`, `"stock":1,"tags":`+c.tags, 1)
		rec := do(h, "POST", "/v1/products", body, nil)
		if rec.Code != c.status {
			t.Errorf("%s: status %d, want %d: %s", name, rec.Code, c.status, rec.Body)
			continue
		}
		if pr := decodeProblem(t, rec); len(pr.Errors) != 1 || pr.Errors[0].Field != c.field {
			t.Errorf("%s: problem %+v, want field %s", name, pr, c.field)
		}
	}
}

// normalizingSearch answers with the application's real rules (Normalize).
type normalizingSearch struct{ got *query.SearchProducts }

func (f normalizingSearch) Handle(_ context.Context, q query.SearchProducts) (query.SearchResult, error) {
	q, err := q.Normalize()
	if err != nil {
		return query.SearchResult{}, err
	}
	*f.got = q
	return query.SearchResult{Items: []query.ProductView{{ID: "0190a0b0-0000-7000-8000-000000000001", SKU: "S", Name: "Lamp", PriceAmount: 100, Currency: "EUR", Version: 1, Tags: []string{"sale"}}}, Total: 1}, nil
}

func TestSearchByTags(t *testing.T) {
	var got query.SearchProducts
	app := newStore().app()
	app.Queries.SearchProducts = normalizingSearch{got: &got}
	srv, err := httpport.NewServer(httpport.Config{}, app, httpport.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	rec := do(srv.Handler(), "GET", "/v1/products/search?tags=sale,eco", "", nil)
	if rec.Code != 200 || !slices.Equal(got.Tags, []string{"eco", "sale"}) || !strings.Contains(rec.Body.String(), `"tags":["sale"]`) {
		t.Fatalf("tags=sale,eco: %d %s, parsed %q", rec.Code, rec.Body, got.Tags)
	}
	checkAgainstSpec(t, "GET", "/v1/products/search?tags=sale,eco", "", nil, rec)
	for _, bad := range []string{"tags=a,,b", "tags=" + strings.Repeat("x", 51), "tags=a&tags=b"} {
		rec := do(srv.Handler(), "GET", "/v1/products/search?"+bad, "", nil)
		if rec.Code != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", bad, rec.Code, rec.Body)
		}
	}
}
