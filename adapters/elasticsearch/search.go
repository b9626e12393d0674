package elasticsearch

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"slices"
	"strconv"
	"strings"

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
	marks  marks
}

var (
	_ query.ProductSearchReadModel = (*Search)(nil)
	_ query.VisibleVersionsReader  = (*Search)(nil)
)

// NewSearch returns the search over cfg.Alias.
func NewSearch(client *es8.Client, cfg Config) (*Search, error) {
	if client == nil {
		return nil, errors.New("elasticsearch search: nil client")
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("elasticsearch search: %w", err)
	}
	return &Search{client: client, cfg: cfg, marks: newMarks()}, nil
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
	body := searchBody(q, s.marks)
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
				Source    document            `json:"_source"`
				Sort      []json.RawMessage   `json:"sort"`
				Highlight map[string][]string `json:"highlight"`
			} `json:"hits"`
		} `json:"hits"`
		Aggregations map[string]facetAgg `json:"aggregations"`
	}
	err = do(ctx, s.client, s.cfg.RequestTimeout, esapi.SearchRequest{
		Index: []string{s.cfg.Alias},
		Body:  bytes.NewReader(raw),
		// The same search goes to the same shard copies page after page, so that relevance
		// scores (which differ slightly between copies) cannot reorder pages, and its
		// read-your-writes check (VisibleVersions) asks the copies it will read.
		Preference: preference(hash),
	}, &res)
	if err != nil {
		return query.SearchResult{}, s.searchError(err)
	}
	out := query.SearchResult{Total: res.Hits.Total.Value, Items: make([]query.ProductView, 0, len(res.Hits.Hits))}
	for _, h := range res.Hits.Hits {
		v := h.Source.View()
		if q.Highlight {
			v.Highlight = query.NewHighlight(
				h.Source.Name, s.marks.spans(h.Source.Name, h.Highlight["name"]),
				h.Source.Description, s.marks.spans(h.Source.Description, h.Highlight["description"]))
		}
		out.Items = append(out.Items, v)
	}
	if len(q.Facets) > 0 {
		out.Facets = readFacets(q, res.Aggregations)
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

// searchError is err of a search request as the read model's caller needs it.
func (s *Search) searchError(err error) error {
	if e, ok := asESError(err); ok && e.hasType("too_many_clauses", "too_many_nested_clauses") {
		return fmt.Errorf("search: %w: q has too many words", query.ErrInvalidSearch)
	}
	// The cluster unreachable, overloaded, refusing the service's credentials or without
	// the alias (the live index deleted) is an outage of the read model, not a server bug:
	// the API answers 503 and the client may retry (a rebuild restores a deleted index).
	if e, ok := asESError(err); !ok || e.Status == 404 || e.Status == 429 || e.Status >= 500 || errors.Is(err, ErrCredentialsRefused) {
		return fmt.Errorf("search %s: %w: %w", s.cfg.Alias, query.ErrReadModelUnavailable, err)
	}
	return fmt.Errorf("search %s: %w", s.cfg.Alias, err)
}

// preferenceBuckets is how many shard-copy choices searches are spread over. A search's
// preference is one of them, picked by its hash: the same search reads the same copies page
// after page, and read-your-writes checks (one sub-search per bucket in use) stay few however
// many different searches wait.
const preferenceBuckets = 16

// preference is the search preference of the search with this hash.
func preference(hash string) string {
	return "p" + strconv.Itoa(int(crc32.ChecksumIEEE([]byte(hash))%preferenceBuckets))
}

// searchBody is the request body of q (normalized): the text as the scoring query, filters
// that do not score, facets as aggregations and highlighting.
//
// Multi-select facets: the filters on the fields of the facets asked for go into post_filter,
// which narrows the hits but not the aggregations; each facet's aggregation then applies the
// other facets' filters itself (query.SearchProducts.ForFacet), so a facet never counts
// under its own filter.
func searchBody(q query.SearchProducts, m marks) map[string]any {
	base, byFacet := filterClauses(q)
	var post []any
	for _, f := range query.AllFacets {
		if clause, ok := byFacet[f]; ok {
			if q.Wants(f) {
				post = append(post, clause)
			} else {
				base = append(base, clause)
			}
		}
	}
	b := map[string]any{"filter": base}
	if q.Text != "" {
		b["must"] = []any{textQuery(q.Text)}
		if query.CountTerms(q.Text) > 1 {
			b["should"] = []any{map[string]any{"match_phrase": map[string]any{"name": map[string]any{"query": q.Text, "boost": phraseBoost}}}}
		}
	}
	body := map[string]any{
		"size":             q.Size,
		"track_total_hits": true,
		"query":            map[string]any{"bool": b},
		"sort":             sortSpec[q.Sort],
	}
	if len(post) > 0 {
		body["post_filter"] = map[string]any{"bool": map[string]any{"filter": post}}
	}
	if len(q.Facets) > 0 {
		aggs := map[string]any{}
		for _, f := range q.Facets {
			others := []any{}
			for _, g := range query.AllFacets {
				if clause, ok := byFacet[g]; ok && g != f && q.Wants(g) {
					others = append(others, clause)
				}
			}
			aggs[string(f)] = map[string]any{
				"filter": map[string]any{"bool": map[string]any{"filter": others}},
				"aggs":   map[string]any{"values": facetAggregation(q, f)},
			}
		}
		body["aggs"] = aggs
	}
	if q.Highlight && q.Text != "" {
		// The whole field with every match marked (number_of_fragments 0), by markers no
		// document can contain; query.NewHighlight cuts the fragments, as on every engine.
		whole := map[string]any{"number_of_fragments": 0, "no_match_size": 0}
		body["highlight"] = map[string]any{
			"type": "unified", "encoder": "default", "require_field_match": true,
			"pre_tags": []string{m.pre}, "post_tags": []string{m.post},
			"fields": map[string]any{"name": whole, "description": whole},
		}
	}
	return body
}

// Relevance boosts. Exact words count twice as much as the fuzzy clause (which they match
// as well), and a phrase in the name adds the name's boost once more.
const (
	exactBoost  = 2
	phraseBoost = 3
)

// textQuery matches text as plain words (multi_match, never query syntax): every word in one
// of name, brand, category or description, or in name or brand within its typo bounds
// (query.Fuzziness: AUTO:3,6; query.FuzzyPrefixLength; transpositions are one edit).
func textQuery(text string) map[string]any {
	return map[string]any{"bool": map[string]any{
		"should": []any{
			map[string]any{"multi_match": map[string]any{
				"query":    text,
				"type":     "best_fields",
				"fields":   []string{"name^3", "brand^2", "category^2", "description"},
				"operator": "and",
				"lenient":  true,
				"boost":    exactBoost,
			}},
			map[string]any{"multi_match": map[string]any{
				"query":                text,
				"type":                 "best_fields",
				"fields":               []string{"name^3", "brand^2"},
				"operator":             "and",
				"lenient":              true,
				"fuzziness":            "AUTO:3,6",
				"prefix_length":        query.FuzzyPrefixLength,
				"max_expansions":       query.FuzzyMaxExpansions,
				"fuzzy_transpositions": true,
			}},
		},
		"minimum_should_match": 1,
	}}
}

// filterClauses are the filters of q (normalized) that do not score: base always applies
// (live products), byFacet holds the filter on each facet field q filters on.
func filterClauses(q query.SearchProducts) (base []any, byFacet map[query.Facet]any) {
	base = []any{map[string]any{"term": map[string]any{"deleted": false}}}
	byFacet = map[query.Facet]any{}
	if len(q.Categories) > 0 {
		byFacet[query.FacetCategory] = map[string]any{"terms": map[string]any{"category.keyword": q.Categories}}
	}
	if len(q.Brands) > 0 {
		byFacet[query.FacetBrand] = map[string]any{"terms": map[string]any{"brand.keyword": q.Brands}}
	}
	if len(q.Tags) > 0 {
		// Any of the tags. On an index older than mapping version 2 the field does not
		// exist and nothing matches, which is what its documents (without tags) deserve.
		byFacet[query.FacetTags] = map[string]any{"terms": map[string]any{"tags": q.Tags}}
	}
	if q.MinPrice != nil || q.MaxPrice != nil {
		r := map[string]any{}
		if q.MinPrice != nil {
			r["gte"] = *q.MinPrice
		}
		if q.MaxPrice != nil {
			r["lte"] = *q.MaxPrice
		}
		byFacet[query.FacetPrice] = map[string]any{"range": map[string]any{"price.amount": r}}
	}
	if q.InStock != nil {
		if *q.InStock {
			byFacet[query.FacetInStock] = map[string]any{"range": map[string]any{"stock": map[string]any{"gte": 1}}}
		} else {
			byFacet[query.FacetInStock] = map[string]any{"term": map[string]any{"stock": 0}}
		}
	}
	return base, byFacet
}

// facetFields are the keyword fields the terms facets count.
var facetFields = map[query.Facet]string{query.FacetCategory: "category.keyword", query.FacetBrand: "brand.keyword", query.FacetTags: "tags"}

// facetAggregation is the aggregation of facet f: terms by count and then value (the empty
// value, which a product without brand indexes, is not a value), or the price ranges.
func facetAggregation(q query.SearchProducts, f query.Facet) map[string]any {
	if f == query.FacetInStock {
		// Two ranges keyed by the facet's values (the engine orders ranges by their bounds).
		return map[string]any{"range": map[string]any{"field": "stock", "ranges": []any{
			map[string]any{"key": "true", "from": 1}, map[string]any{"key": "false", "to": 1},
		}}}
	}
	if f != query.FacetPrice {
		return map[string]any{"terms": map[string]any{
			"field": facetFields[f],
			"size":  q.FacetSize,
			// Counts are exact on one shard (the default); on more, each shard returns its
			// top shard_size values, which keeps the top FacetSize exact in practice.
			"shard_size": max(100, 3*q.FacetSize),
			"order":      []any{map[string]any{"_count": "desc"}, map[string]any{"_key": "asc"}},
			"exclude":    []string{""},
		}}
	}
	var ranges []any
	for _, b := range q.PriceBuckets() {
		r := map[string]any{"from": b.From}
		if b.To != nil {
			r["to"] = *b.To
		}
		ranges = append(ranges, r)
	}
	return map[string]any{"range": map[string]any{"field": "price.amount", "ranges": ranges}}
}

// facetAgg is a facet's aggregation in the response: a filter aggregation around the terms
// or range aggregation "values".
type facetAgg struct {
	Values struct {
		Buckets []struct {
			Key      json.RawMessage `json:"key"`
			DocCount int64           `json:"doc_count"`
		} `json:"buckets"`
	} `json:"values"`
}

// readFacets turns the aggregations of a search of q into its facets.
func readFacets(q query.SearchProducts, aggs map[string]facetAgg) *query.Facets {
	out := &query.Facets{}
	terms := func(f query.Facet) []query.FacetValue {
		list := []query.FacetValue{}
		for _, b := range aggs[string(f)].Values.Buckets {
			var v string
			if json.Unmarshal(b.Key, &v) == nil && v != "" {
				list = append(list, query.FacetValue{Value: v, Count: b.DocCount})
			}
		}
		return list
	}
	for _, f := range q.Facets {
		switch f {
		case query.FacetCategory:
			out.Category = terms(f)
		case query.FacetBrand:
			out.Brand = terms(f)
		case query.FacetTags:
			out.Tags = terms(f)
		case query.FacetInStock:
			out.InStock = query.InStockValues()
			for _, b := range aggs[string(f)].Values.Buckets {
				var key string
				_ = json.Unmarshal(b.Key, &key)
				for i := range out.InStock {
					if out.InStock[i].Value == key {
						out.InStock[i].Count = b.DocCount
					}
				}
			}
		case query.FacetPrice:
			out.Price = q.PriceBuckets()
			for i, b := range aggs[string(f)].Values.Buckets {
				if i < len(out.Price) {
					out.Price[i].Count = b.DocCount
				}
			}
		}
	}
	return out
}

// marks are the highlight tags of this process: private-use characters around a random
// token, so no document text can contain them (or forge a match) and no client ever sees them.
type marks struct{ pre, post string }

func newMarks() marks {
	var b [8]byte
	_, _ = rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	return marks{pre: "\ue000" + token + "\ue001", post: "\ue002" + token + "\ue003"}
}

// spans are the matches the engine marked in highlighted, the whole field; nothing when the
// field had no match or the engine's text is not the document's.
func (m marks) spans(field string, highlighted []string) []query.Span {
	if len(highlighted) != 1 {
		return nil
	}
	h := highlighted[0]
	var plain strings.Builder
	var out []query.Span
	for {
		i := strings.Index(h, m.pre)
		if i < 0 {
			break
		}
		plain.WriteString(h[:i])
		h = h[i+len(m.pre):]
		j := strings.Index(h, m.post)
		if j < 0 {
			return nil
		}
		start := plain.Len()
		plain.WriteString(h[:j])
		out = append(out, query.Span{Start: start, End: plain.Len()})
		h = h[j+len(m.post):]
	}
	plain.WriteString(h)
	if plain.String() != field {
		return nil
	}
	return out
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

// VisibleVersions returns the version of each probed product that a search on the probe's
// route would see now, tombstones included (query.VisibleVersionsReader). It asks the search
// itself, not a get by id: a get is real-time and sees a write before the refresh makes it
// searchable, and a shard's copies refresh independently, so one _msearch carries one ids
// search per preference the probes' routes map to, each on the shard copies that route's
// searches read (see preference), routed to the probed ids' shards only.
func (s *Search) VisibleVersions(ctx context.Context, probes []query.VersionProbe) (map[query.VersionProbe]int64, error) {
	if len(probes) == 0 {
		return map[query.VersionProbe]int64{}, nil
	}
	groups := map[string][]query.VersionProbe{}
	var order []string
	for _, p := range probes {
		pref := preference(p.Route)
		if _, ok := groups[pref]; !ok {
			order = append(order, pref)
		}
		groups[pref] = append(groups[pref], p)
	}
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	for _, pref := range order {
		ids := make([]string, 0, len(groups[pref]))
		for _, p := range groups[pref] {
			if !slices.Contains(ids, string(p.ID)) {
				ids = append(ids, string(p.ID))
			}
		}
		header := map[string]any{"index": s.cfg.Alias, "preference": pref, "routing": strings.Join(ids, ",")}
		search := map[string]any{
			"size": len(ids), "track_total_hits": false, "_source": []string{"version"},
			"query": map[string]any{"ids": map[string]any{"values": ids}},
		}
		if err := enc.Encode(header); err != nil {
			return nil, fmt.Errorf("visible versions: %w", err)
		}
		if err := enc.Encode(search); err != nil {
			return nil, fmt.Errorf("visible versions: %w", err)
		}
	}
	var res struct {
		Responses []struct {
			Status int             `json:"status"`
			Error  json.RawMessage `json:"error"`
			Hits   struct {
				Hits []struct {
					ID     string `json:"_id"`
					Source struct {
						Version int64 `json:"version"`
					} `json:"_source"`
				} `json:"hits"`
			} `json:"hits"`
		} `json:"responses"`
	}
	err := do(ctx, s.client, s.cfg.RequestTimeout, esapi.MsearchRequest{Body: &body}, &res)
	if err != nil {
		return nil, fmt.Errorf("visible versions: %w", s.searchError(err))
	}
	if len(res.Responses) != len(order) {
		return nil, fmt.Errorf("visible versions %s: %d responses to %d searches", s.cfg.Alias, len(res.Responses), len(order))
	}
	out := make(map[query.VersionProbe]int64, len(probes))
	for i, pref := range order {
		r := res.Responses[i]
		if len(r.Error) > 0 && string(r.Error) != "null" {
			e := &esError{Status: r.Status}
			parseErrorBody(e, []byte(`{"error":`+string(r.Error)+`}`))
			return nil, fmt.Errorf("visible versions: %w", s.searchError(e))
		}
		found := map[string]int64{}
		for _, h := range r.Hits.Hits {
			found[h.ID] = h.Source.Version
		}
		for _, p := range groups[pref] {
			if v, ok := found[string(p.ID)]; ok {
				out[p] = v
			}
		}
	}
	return out, nil
}
