package elasticsearch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"

	es8 "github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/marketplace/catalog/application/query"
)

// Search is the search read model's read side (query.ProductSearchReadModel): plain-text
// search with exact filters over the alias, tombstones excluded, paged by opaque cursors
// (search_after), so deep pages cost what the first page costs and never hit the engine's
// result window.
type Search struct {
	client *es8.Client
	cfg    Config
}

var _ query.ProductSearchReadModel = (*Search)(nil)

// NewSearch returns the search over cfg.Alias.
func NewSearch(client *es8.Client, cfg Config) (*Search, error) {
	if client == nil {
		return nil, errors.New("elasticsearch search: nil client")
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("elasticsearch search: %w", err)
	}
	return &Search{client: client, cfg: cfg}, nil
}

// sortSpec is how each sort order sorts. Every order ends in the unique id so that
// search_after never skips or repeats documents with equal sort values.
var sortSpec = map[query.SortOrder][]map[string]any{
	query.SortRelevance: {{"_score": map[string]any{"order": "desc"}}, {"id": map[string]any{"order": "asc"}}},
	query.SortPriceAsc:  {{"price.amount": map[string]any{"order": "asc"}}, {"id": map[string]any{"order": "asc"}}},
	query.SortPriceDesc: {{"price.amount": map[string]any{"order": "desc"}}, {"id": map[string]any{"order": "asc"}}},
	query.SortNewest:    {{"created_at": map[string]any{"order": "desc"}}, {"id": map[string]any{"order": "asc"}}},
}

// Search returns one page of live products matching q. Client mistakes (an invalid parameter,
// a cursor of another search) are query.ErrInvalidSearch or query.ErrInvalidCursor; any other
// error is the read model's fault.
func (s *Search) Search(ctx context.Context, q query.SearchProducts) (query.SearchResult, error) {
	q, err := q.Normalize()
	if err != nil {
		return query.SearchResult{}, fmt.Errorf("search: %w", err)
	}
	hash := q.Hash()
	var after []json.RawMessage
	if q.Cursor != "" {
		after, err = decodeCursor(q.Cursor, q.Sort, hash)
		if err != nil {
			return query.SearchResult{}, fmt.Errorf("search: %w", err)
		}
	}
	body := map[string]any{
		"size":             q.Size,
		"track_total_hits": true,
		"query":            map[string]any{"bool": boolQuery(q)},
		"sort":             sortSpec[q.Sort],
	}
	if after != nil {
		body["search_after"] = after
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return query.SearchResult{}, fmt.Errorf("search: %w", err)
	}
	var res struct {
		Hits struct {
			Total struct {
				Value int64 `json:"value"`
			} `json:"total"`
			Hits []struct {
				Source document          `json:"_source"`
				Sort   []json.RawMessage `json:"sort"`
			} `json:"hits"`
		} `json:"hits"`
	}
	err = do(ctx, s.client, s.cfg.RequestTimeout, esapi.SearchRequest{
		Index: []string{s.cfg.Alias},
		Body:  bytes.NewReader(raw),
		// The same search goes to the same shard copies page after page, so that relevance
		// scores (which differ slightly between copies) cannot reorder pages.
		Preference: "p" + hash,
	}, &res)
	if err != nil {
		if e, ok := asESError(err); ok && e.hasType("too_many_clauses", "too_many_nested_clauses") {
			return query.SearchResult{}, fmt.Errorf("search: %w: q has too many words", query.ErrInvalidSearch)
		}
		// The cluster unreachable, overloaded, refusing the service's credentials or without
		// the alias (the live index deleted) is an outage of the read model, not a server bug:
		// the API answers 503 and the client may retry (a rebuild restores a deleted index).
		if e, ok := asESError(err); !ok || e.Status == 404 || e.Status == 429 || e.Status >= 500 || errors.Is(err, ErrCredentialsRefused) {
			return query.SearchResult{}, fmt.Errorf("search %s: %w: %w", s.cfg.Alias, query.ErrReadModelUnavailable, err)
		}
		return query.SearchResult{}, fmt.Errorf("search %s: %w", s.cfg.Alias, err)
	}
	out := query.SearchResult{Total: res.Hits.Total.Value, Items: make([]query.ProductView, 0, len(res.Hits.Hits))}
	for _, h := range res.Hits.Hits {
		out.Items = append(out.Items, h.Source.View())
	}
	if n := len(res.Hits.Hits); n == q.Size && n > 0 {
		next, err := encodeCursor(q.Sort, hash, res.Hits.Hits[n-1].Sort)
		if err != nil {
			return query.SearchResult{}, fmt.Errorf("search: %w", err)
		}
		out.NextCursor = next
	}
	return out, nil
}

// boolQuery is the query of q: filters that do not score, and the text as the one scoring
// clause. The text is matched as plain words (multi_match), never parsed as query syntax.
func boolQuery(q query.SearchProducts) map[string]any {
	filters := []any{map[string]any{"term": map[string]any{"deleted": false}}}
	if q.Category != "" {
		filters = append(filters, map[string]any{"term": map[string]any{"category.keyword": q.Category}})
	}
	if q.Brand != "" {
		filters = append(filters, map[string]any{"term": map[string]any{"brand.keyword": q.Brand}})
	}
	if len(q.Tags) > 0 {
		// Any of the tags. On an index older than mapping version 2 the field does not
		// exist and nothing matches, which is what its documents (without tags) deserve.
		filters = append(filters, map[string]any{"terms": map[string]any{"tags": q.Tags}})
	}
	if q.MinPrice != nil || q.MaxPrice != nil {
		r := map[string]any{}
		if q.MinPrice != nil {
			r["gte"] = *q.MinPrice
		}
		if q.MaxPrice != nil {
			r["lte"] = *q.MaxPrice
		}
		filters = append(filters, map[string]any{"range": map[string]any{"price.amount": r}})
	}
	if q.InStock != nil {
		if *q.InStock {
			filters = append(filters, map[string]any{"range": map[string]any{"stock": map[string]any{"gte": 1}}})
		} else {
			filters = append(filters, map[string]any{"term": map[string]any{"stock": 0}})
		}
	}
	b := map[string]any{"filter": filters}
	if q.Text != "" {
		b["must"] = []any{map[string]any{"multi_match": map[string]any{
			"query":    q.Text,
			"type":     "best_fields",
			"fields":   []string{"name^3", "brand^2", "category^2", "description"},
			"operator": "and",
			"lenient":  true,
		}}}
	}
	return b
}

// encodeCursor is the cursor after the engine's search_after values (score or number, id).
func encodeCursor(sort query.SortOrder, hash string, after []json.RawMessage) (string, error) {
	if len(after) != 2 {
		return "", fmt.Errorf("cursor: the engine returned %d sort values, want 2", len(after))
	}
	return query.EncodeCursor(sort, hash, after)
}

// decodeCursor returns the search_after values of a cursor issued for this search, or an
// ErrInvalidCursor error. A cursor whose values do not fit its sort never reaches the engine,
// which would answer them with an error instead of a page.
func decodeCursor(s string, sort query.SortOrder, hash string) ([]json.RawMessage, error) {
	var after []json.RawMessage
	if err := query.DecodeCursor(s, sort, hash, &after); err != nil {
		return nil, err
	}
	malformed := fmt.Errorf("%w: malformed position", query.ErrInvalidCursor)
	if len(after) != 2 || !validSortValue(after[0], sort == query.SortRelevance) {
		return nil, malformed
	}
	var id string
	if err := json.Unmarshal(after[1], &id); err != nil || id == "" || len(id) > 256 {
		return nil, malformed
	}
	return after, nil
}

// validSortValue accepts what the engine returns for the first sort key: a finite score, or
// an integer (price in minor units, date in epoch milliseconds).
func validSortValue(raw json.RawMessage, score bool) bool {
	s := string(raw)
	if score {
		f, err := strconv.ParseFloat(s, 64)
		return err == nil && !math.IsInf(f, 0) && !math.IsNaN(f)
	}
	_, err := strconv.ParseInt(s, 10, 64)
	return err == nil
}
