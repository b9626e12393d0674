package bleve

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"

	blevev2 "github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/analysis"
	"github.com/blevesearch/bleve/v2/search"
	bq "github.com/blevesearch/bleve/v2/search/query"

	"github.com/marketplace/catalog/application/query"
	"github.com/marketplace/catalog/domain/readmodel"
)

// textFields are the fields the search text is matched against, with their boosts.
var textFields = []struct {
	name  string
	boost float64
}{{fieldName, 3}, {fieldBrand, 2}, {fieldCategory, 2}, {fieldDescription, 1}}

// Relevance boosts (see textQuery). Exact words count twice as much as the fuzzy clause (which
// they match as well), and a phrase in the name adds the name's boost once more.
const (
	exactBoost  = 2
	phraseBoost = 3
)

// facetsMappingVersion is the first mapping version that keeps doc values of category_exact,
// brand_exact and stock, which the category, brand and in_stock facets count.
const facetsMappingVersion = 3

// Search returns one page of live products matching q from the index the alias points at.
// The text is matched as plain words, never parsed as query syntax: a product matches when
// one of name, brand, category or description contains every word, or name or brand every
// word within its typo bounds (query.FuzzyMatch) — Elasticsearch's multi_match best_fields
// with operator and, exact and fuzzy. Filters are exact and do not score. Facets count as
// query.SearchProducts.ForFacet says; highlights mark what query.MatchSpans marks. Every
// sort ends in the id, and cursors carry the last hit's sort values (search_after), so deep
// pages cost what the first costs. Client mistakes are query.ErrInvalidSearch or
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
	mappingVersion, _, _ := readmodel.ParseIndexName(s.cfg.Alias, ix.name)
	if mappingVersion < facetsMappingVersion && (q.Wants(query.FacetCategory) || q.Wants(query.FacetBrand) || q.Wants(query.FacetInStock)) {
		return query.SearchResult{}, fmt.Errorf("search %s: %w: the live index %s has mapping version %d; the category, brand and in_stock facets need version %d: run catalog rebuild",
			s.cfg.Alias, query.ErrReadModelUnavailable, ix.name, mappingVersion, facetsMappingVersion)
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
	analyzer := bi.Mapping().AnalyzerNamed(textAnalyzer)
	if analyzer == nil {
		return query.SearchResult{}, fmt.Errorf("analyzer %s missing from the index mapping", textAnalyzer)
	}
	var words []string
	for _, tok := range analyzer.Analyze([]byte(q.Text)) {
		if w := string(tok.Term); !slices.Contains(words, w) {
			words = append(words, w)
		}
	}
	if q.Text != "" && len(words) == 0 {
		// Only punctuation or symbols: nothing can match (Elasticsearch's
		// zero_terms_query none), rather than every product.
		return query.SearchResult{Items: []query.ProductView{}, Facets: emptyFacets(q)}, nil
	}
	text := textQuery(q.Text, words)
	req := blevev2.NewSearchRequestOptions(withFilters(text, q), q.Size, 0, false)
	req.Fields = []string{fieldSource}
	if text == nil {
		// Filters alone do not score: every hit scores 0 and relevance is id order, as in
		// Elasticsearch's filter context.
		req.Score = blevev2.ScoreNone
	}
	req.SortByCustom(sortOrder(q.Sort))
	if after != nil {
		req.SearchAfter = after.searchAfter()
	}
	// Facets whose field q does not filter on count the hits of the search itself; the others
	// (multi-select) count a search without that filter, run beside it.
	var own []query.Facet
	for _, f := range q.Facets {
		if q.FiltersOn(f) {
			own = append(own, f)
			continue
		}
		addFacet(req, q, f)
	}
	res, err := bi.SearchInContext(ctx, req)
	if err != nil {
		return query.SearchResult{}, err
	}
	out := query.SearchResult{Total: int64(res.Total), Items: make([]query.ProductView, 0, len(res.Hits))}
	if len(q.Facets) > 0 {
		out.Facets = &query.Facets{}
		readFacets(out.Facets, q, res.Facets)
	}
	for _, f := range own {
		freq := blevev2.NewSearchRequestOptions(withFilters(text, q.ForFacet(f)), 0, 0, false)
		freq.Score = blevev2.ScoreNone
		addFacet(freq, q, f)
		fres, err := bi.SearchInContext(ctx, freq)
		if err != nil {
			return query.SearchResult{}, fmt.Errorf("facet %s: %w", f, err)
		}
		readFacets(out.Facets, q, fres.Facets)
	}
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
		v := d.View()
		if q.Highlight && len(words) > 0 {
			v.Highlight = query.NewHighlight(
				d.Name, query.MatchSpans(tokens(analyzer, d.Name), words, true),
				d.Description, query.MatchSpans(tokens(analyzer, d.Description), words, false))
		}
		out.Items = append(out.Items, v)
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

// textQuery is the scoring part of the search for the analyzed words of text, nil without
// words: a product matches when one field has every word exactly (boosted), or name or brand
// every word within its typo bounds; a phrase in the name scores more.
func textQuery(text string, words []string) bq.Query {
	if len(words) == 0 {
		return nil
	}
	exact := make([]bq.Query, 0, len(textFields))
	for _, f := range textFields {
		m := bq.NewMatchQuery(text)
		m.SetField(f.name)
		m.Analyzer = textAnalyzer
		m.SetOperator(bq.MatchQueryOperatorAnd)
		m.SetBoost(f.boost)
		exact = append(exact, m)
	}
	exactQ := bq.NewDisjunctionQuery(exact)
	exactQ.SetBoost(exactBoost)
	var fuzzy []bq.Query
	for _, f := range textFields[:2] { // name and brand
		all := make([]bq.Query, len(words))
		for i, w := range words {
			fq := bq.NewFuzzyQuery(w)
			fq.SetField(f.name)
			fq.SetFuzziness(query.Fuzziness(w))
			fq.SetPrefix(query.FuzzyPrefixLength)
			all[i] = fq
		}
		c := bq.NewConjunctionQuery(all)
		c.SetBoost(f.boost)
		fuzzy = append(fuzzy, c)
	}
	b := bq.NewBooleanQuery([]bq.Query{bq.NewDisjunctionQuery([]bq.Query{exactQ, bq.NewDisjunctionQuery(fuzzy)})}, nil, nil)
	if len(words) > 1 {
		// Phrases need the name's term positions (mapping version 3); on an older index the
		// clause matches nothing and only ranking differs.
		phrase := bq.NewMatchPhraseQuery(text)
		phrase.SetField(fieldName)
		phrase.Analyzer = textAnalyzer
		phrase.SetBoost(phraseBoost)
		b.AddShould(phrase)
	}
	return b
}

// withFilters is text (nil: every document) restricted by the filters of q.
func withFilters(text bq.Query, q query.SearchProducts) bq.Query {
	b := bq.NewBooleanQuery(nil, nil, nil)
	if text != nil {
		b.AddMust(text)
	}
	b.AddFilter(bq.NewConjunctionQuery(filters(q)))
	return b
}

// facetFields are the fields the terms facets count.
var facetFields = map[query.Facet]string{query.FacetCategory: fieldCategoryExact, query.FacetBrand: fieldBrandExact, query.FacetTags: fieldTags}

// addFacet asks req for facet f of q.
func addFacet(req *blevev2.SearchRequest, q query.SearchProducts, f query.Facet) {
	if f == query.FacetInStock {
		fr := blevev2.NewFacetRequest(fieldStock, 2)
		one := 1.0
		fr.AddNumericRange("true", &one, nil)
		fr.AddNumericRange("false", nil, &one)
		req.AddFacet(string(f), fr)
		return
	}
	if f != query.FacetPrice {
		req.AddFacet(string(f), blevev2.NewFacetRequest(facetFields[f], q.FacetSize))
		return
	}
	buckets := q.PriceBuckets()
	fr := blevev2.NewFacetRequest(fieldPrice, len(buckets))
	for i, b := range buckets {
		from := float64(b.From)
		var to *float64
		if b.To != nil {
			v := float64(*b.To)
			to = &v
		}
		fr.AddNumericRange(strconv.Itoa(i), &from, to)
	}
	req.AddFacet(string(f), fr)
}

// readFacets copies the facets of res that q asked for into out.
func readFacets(out *query.Facets, q query.SearchProducts, res search.FacetResults) {
	terms := func(f query.Facet) []query.FacetValue {
		list := []query.FacetValue{}
		if r, ok := res[string(f)]; ok && r.Terms != nil {
			for _, t := range r.Terms.Terms() {
				if t.Term != "" {
					list = append(list, query.FacetValue{Value: t.Term, Count: int64(t.Count)})
				}
			}
		}
		return list
	}
	if _, ok := res[string(query.FacetCategory)]; ok {
		out.Category = terms(query.FacetCategory)
	}
	if _, ok := res[string(query.FacetBrand)]; ok {
		out.Brand = terms(query.FacetBrand)
	}
	if _, ok := res[string(query.FacetTags)]; ok {
		out.Tags = terms(query.FacetTags)
	}
	if r, ok := res[string(query.FacetInStock)]; ok {
		out.InStock = query.InStockValues()
		for _, nr := range r.NumericRanges {
			for i := range out.InStock {
				if out.InStock[i].Value == nr.Name {
					out.InStock[i].Count = int64(nr.Count)
				}
			}
		}
	}
	if r, ok := res[string(query.FacetPrice)]; ok {
		out.Price = q.PriceBuckets()
		for _, nr := range r.NumericRanges {
			if i, err := strconv.Atoi(nr.Name); err == nil && i >= 0 && i < len(out.Price) {
				out.Price[i].Count = int64(nr.Count)
			}
		}
	}
}

// emptyFacets are the facets q asks for with nothing counted.
func emptyFacets(q query.SearchProducts) *query.Facets {
	if len(q.Facets) == 0 {
		return nil
	}
	out := &query.Facets{}
	for _, f := range q.Facets {
		switch f {
		case query.FacetCategory:
			out.Category = []query.FacetValue{}
		case query.FacetBrand:
			out.Brand = []query.FacetValue{}
		case query.FacetTags:
			out.Tags = []query.FacetValue{}
		case query.FacetPrice:
			out.Price = q.PriceBuckets()
		case query.FacetInStock:
			out.InStock = query.InStockValues()
		}
	}
	return out
}

// tokens are the words of text as analyzer makes them, with their places.
func tokens(analyzer analysis.Analyzer, text string) []query.Token {
	stream := analyzer.Analyze([]byte(text))
	out := make([]query.Token, len(stream))
	for i, t := range stream {
		out[i] = query.Token{Term: string(t.Term), Start: t.Start, End: t.End}
	}
	return out
}

// filters are the non-scoring conditions of q (normalized); the first keeps tombstones out.
func filters(q query.SearchProducts) []bq.Query {
	live := bq.NewBoolFieldQuery(false)
	live.SetField(fieldDeleted)
	out := []bq.Query{live}
	anyOf := func(field string, values []string) {
		if len(values) == 0 {
			return
		}
		alts := make([]bq.Query, len(values))
		for i, v := range values {
			t := bq.NewTermQuery(v)
			t.SetField(field)
			alts[i] = t
		}
		out = append(out, bq.NewDisjunctionQuery(alts))
	}
	anyOf(fieldCategoryExact, q.Categories)
	anyOf(fieldBrandExact, q.Brands)
	// Any of the tags. An index older than mapping version 2 never indexed the field, so
	// nothing matches, as on Elasticsearch.
	anyOf(fieldTags, q.Tags)
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

// VisibleVersions returns the version of each probed product in the index the alias points
// at, tombstones included (query.VisibleVersionsReader). A write is searchable as soon as its
// batch is applied, before Apply returns, so this is also what a search sees; there is no
// refresh interval to wait for and one copy only, so Route is ignored.
func (s *Store) VisibleVersions(ctx context.Context, probes []query.VersionProbe) (map[query.VersionProbe]int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("visible versions: %w", err)
	}
	ix, err := s.live()
	if err != nil {
		return nil, fmt.Errorf("visible versions %s: %w: %w", s.cfg.Alias, query.ErrReadModelUnavailable, err)
	}
	out := make(map[query.VersionProbe]int64, len(probes))
	err = ix.read(func(bi blevev2.Index) error {
		return readVersions(bi, s.cfg.Alias, ix.name, func(vr *versionReader) error {
			return visibleVersions(vr, probes, out)
		})
	})
	if err != nil {
		return nil, fmt.Errorf("visible versions %s: %w", s.cfg.Alias, err)
	}
	return out, nil
}

// visibleVersions puts the stored version of each probe's product into out (none for a
// product without a document).
func visibleVersions(vr *versionReader, probes []query.VersionProbe, out map[query.VersionProbe]int64) error {
	ids := make([]string, len(probes))
	for i, p := range probes {
		ids[i] = string(p.ID)
	}
	versions, err := vr.versions(ids)
	if err != nil {
		return err
	}
	for _, p := range probes {
		if v, ok := versions[string(p.ID)]; ok {
			out[p] = v
		}
	}
	return nil
}
