package bleve

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

	blevev2 "github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/search"
	bq "github.com/blevesearch/bleve/v2/search/query"

	"github.com/marketplace/catalog/application/query"
)

// textFields are the fields the search text is matched against, with their boosts.
var textFields = []struct {
	name  string
	boost float64
}{{fieldName, 3}, {fieldBrand, 2}, {fieldCategory, 2}, {fieldDescription, 1}}

// Search returns one page of live products matching q from the index the alias points at.
// The text is matched as plain words, never parsed as query syntax: a product matches when
// one of name, brand, category or description contains every word (Elasticsearch's
// multi_match best_fields with operator and). Filters are exact and do not score. Every sort
// ends in the id, and cursors carry the last hit's sort values (search_after), so deep pages
// cost what the first costs. Client mistakes are query.ErrInvalidSearch or
// query.ErrInvalidCursor; without an alias the error wraps query.ErrReadModelUnavailable.
func (s *Store) Search(ctx context.Context, q query.SearchProducts) (query.SearchResult, error) {
	q, err := q.Normalize()
	if err != nil {
		return query.SearchResult{}, fmt.Errorf("search: %w", err)
	}
	hash := q.Hash()
	var after *cursor
	if q.Cursor != "" {
		c, err := decodeCursor(q.Cursor, q.Sort, hash)
		if err != nil {
			return query.SearchResult{}, fmt.Errorf("search: %w", err)
		}
		after = &c
	}
	ix, err := s.live()
	if err != nil {
		return query.SearchResult{}, fmt.Errorf("search %s: %w: %w", s.cfg.Alias, query.ErrReadModelUnavailable, err)
	}
	var out query.SearchResult
	err = ix.read(func(bi blevev2.Index) error {
		var err error
		out, err = s.search(ctx, bi, q, hash, after)
		return err
	})
	if err != nil {
		return query.SearchResult{}, fmt.Errorf("search %s: %w", s.cfg.Alias, err)
	}
	return out, nil
}

func (s *Store) search(ctx context.Context, bi blevev2.Index, q query.SearchProducts, hash string, after *cursor) (query.SearchResult, error) {
	var must bq.Query
	if q.Text != "" {
		analyzer := bi.Mapping().AnalyzerNamed(textAnalyzer)
		if analyzer == nil {
			return query.SearchResult{}, fmt.Errorf("analyzer %s missing from the index mapping", textAnalyzer)
		}
		if len(analyzer.Analyze([]byte(q.Text))) == 0 {
			// Only punctuation or symbols: nothing can match (Elasticsearch's
			// zero_terms_query none), rather than every product.
			return query.SearchResult{Items: []query.ProductView{}}, nil
		}
		fields := make([]bq.Query, 0, len(textFields))
		for _, f := range textFields {
			m := bq.NewMatchQuery(q.Text)
			m.SetField(f.name)
			m.Analyzer = textAnalyzer
			m.SetOperator(bq.MatchQueryOperatorAnd)
			m.SetBoost(f.boost)
			fields = append(fields, m)
		}
		must = bq.NewDisjunctionQuery(fields)
	}
	filter := bq.NewConjunctionQuery(filters(q))
	b := bq.NewBooleanQuery(nil, nil, nil)
	if must != nil {
		b.AddMust(must)
	}
	b.AddFilter(filter)

	req := blevev2.NewSearchRequestOptions(b, q.Size, 0, false)
	req.Fields = []string{fieldSource}
	if q.Text == "" {
		// Filters alone do not score: every hit scores 0 and relevance is id order, as in
		// Elasticsearch's filter context.
		req.Score = blevev2.ScoreNone
	}
	req.SortByCustom(sortOrder(q.Sort))
	if after != nil {
		req.SearchAfter = after.searchAfter()
	}
	res, err := bi.SearchInContext(ctx, req)
	if err != nil {
		return query.SearchResult{}, err
	}
	out := query.SearchResult{Total: int64(res.Total), Items: make([]query.ProductView, 0, len(res.Hits))}
	var last storedDoc
	for _, h := range res.Hits {
		raw, ok := h.Fields[fieldSource].(string)
		if !ok {
			return query.SearchResult{}, fmt.Errorf("hit %s has no stored source", h.ID)
		}
		var d storedDoc
		if err := json.Unmarshal([]byte(raw), &d); err != nil {
			return query.SearchResult{}, fmt.Errorf("hit %s: decode source: %w", h.ID, err)
		}
		out.Items = append(out.Items, d.View())
		last = d
	}
	if n := len(res.Hits); n == q.Size && n > 0 {
		h := res.Hits[n-1]
		c := cursor{ID: h.ID}
		switch q.Sort {
		case query.SortRelevance:
			score := h.Score
			if req.Score == blevev2.ScoreNone {
				score = 0
			}
			c.Score = &score
		case query.SortPriceAsc, query.SortPriceDesc:
			c.Value = &last.Price.Amount
		case query.SortNewest:
			ms := last.CreatedAt.UnixMilli()
			c.Value = &ms
		}
		next, err := query.EncodeCursor(q.Sort, hash, c)
		if err != nil {
			return query.SearchResult{}, err
		}
		out.NextCursor = next
	}
	return out, nil
}

// filters are the non-scoring conditions of q; the first keeps tombstones out.
func filters(q query.SearchProducts) []bq.Query {
	live := bq.NewBoolFieldQuery(false)
	live.SetField(fieldDeleted)
	out := []bq.Query{live}
	if q.Category != "" {
		t := bq.NewTermQuery(q.Category)
		t.SetField(fieldCategoryExact)
		out = append(out, t)
	}
	if q.Brand != "" {
		t := bq.NewTermQuery(q.Brand)
		t.SetField(fieldBrandExact)
		out = append(out, t)
	}
	if len(q.Tags) > 0 {
		// Any of the tags. An index older than mapping version 2 never indexed the field,
		// so nothing matches, as on Elasticsearch.
		anyTag := make([]bq.Query, len(q.Tags))
		for i, tag := range q.Tags {
			t := bq.NewTermQuery(tag)
			t.SetField(fieldTags)
			anyTag[i] = t
		}
		out = append(out, bq.NewDisjunctionQuery(anyTag))
	}
	inclusive := true
	if q.MinPrice != nil || q.MaxPrice != nil {
		var lo, hi *float64
		if q.MinPrice != nil {
			v := float64(*q.MinPrice)
			lo = &v
		}
		if q.MaxPrice != nil {
			v := float64(*q.MaxPrice)
			hi = &v
		}
		r := bq.NewNumericRangeInclusiveQuery(lo, hi, &inclusive, &inclusive)
		r.SetField(fieldPrice)
		out = append(out, r)
	}
	if q.InStock != nil {
		zero, one := 0.0, 1.0
		var r *bq.NumericRangeQuery
		if *q.InStock {
			r = bq.NewNumericRangeInclusiveQuery(&one, nil, &inclusive, nil)
		} else {
			r = bq.NewNumericRangeInclusiveQuery(&zero, &zero, &inclusive, &inclusive)
		}
		r.SetField(fieldStock)
		out = append(out, r)
	}
	return out
}

// sortOrder is how each sort order sorts; every order ends in the unique id so that
// search_after never skips or repeats documents with equal sort values.
func sortOrder(o query.SortOrder) search.SortOrder {
	id := &search.SortDocID{}
	switch o {
	case query.SortPriceAsc:
		return search.SortOrder{&search.SortField{Field: fieldPrice, Type: search.SortFieldAsNumber}, id}
	case query.SortPriceDesc:
		return search.SortOrder{&search.SortField{Field: fieldPrice, Type: search.SortFieldAsNumber, Desc: true}, id}
	case query.SortNewest:
		return search.SortOrder{&search.SortField{Field: fieldCreated, Type: search.SortFieldAsNumber, Desc: true}, id}
	default:
		return search.SortOrder{&search.SortScore{Desc: true}, id}
	}
}

// cursor is the position a NextCursor carries (inside query.EncodeCursor's envelope): the
// last hit's score (relevance) or value (its price in minor units, or creation time in Unix
// milliseconds, for the other sorts), and its id.
type cursor struct {
	Score *float64 `json:"score,omitempty"`
	Value *int64   `json:"v,omitempty"`
	ID    string   `json:"id"`
}

// searchAfter is the cursor's position in Bleve's search_after form: the values as the sort
// fields print them (numbers as decimal floats, exact for integers below 2^53; the score with
// every bit of its float64), then the id.
func (c cursor) searchAfter() []string {
	if c.Score != nil {
		return []string{strconv.FormatFloat(*c.Score, 'g', -1, 64), c.ID}
	}
	return []string{strconv.FormatFloat(float64(*c.Value), 'g', -1, 64), c.ID}
}

// decodeCursor returns the position of a cursor issued for this search, or an
// ErrInvalidCursor error.
func decodeCursor(s string, sort query.SortOrder, hash string) (cursor, error) {
	invalid := func(why string) (cursor, error) {
		return cursor{}, fmt.Errorf("%w: %s", query.ErrInvalidCursor, why)
	}
	var c cursor
	if err := query.DecodeCursor(s, sort, hash, &c); err != nil {
		return cursor{}, err
	}
	if c.ID == "" || len(c.ID) > 256 || !utf8.ValidString(c.ID) {
		return invalid("malformed position")
	}
	if sort == query.SortRelevance {
		if c.Score == nil || c.Value != nil || math.IsInf(*c.Score, 0) || math.IsNaN(*c.Score) {
			return invalid("malformed position")
		}
		return c, nil
	}
	const maxExact = 1 << 53 // float64 keeps every integer up to here
	if c.Value == nil || c.Score != nil || *c.Value > maxExact || *c.Value < -maxExact {
		return invalid("malformed position")
	}
	return c, nil
}
