package memory

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/blevesearch/segment"

	"github.com/marketplace/catalog/application/command"
	"github.com/marketplace/catalog/application/query"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/domain/readmodel"
)

// Read-model defaults and limits, the same as the real adapters'.
const (
	// DefaultReadModelAlias is the alias when ReadModelConfig.Alias is empty.
	DefaultReadModelAlias = "product_search"
	// ReadModelMappingVersion is M in the names of the in-memory indices, the same as the
	// real adapters' (version 2 added tags).
	ReadModelMappingVersion = 2
	// MaxDocumentsPage is the largest page ReadModel.Documents returns.
	MaxDocumentsPage = 10_000
)

// Errors of the in-memory read model, named like the real adapters'.
var (
	// ErrReadModelAliasNotFound means the alias does not exist (EnsureAlias creates it).
	ErrReadModelAliasNotFound = errors.New("search alias not found")
	// ErrIndexInUse refuses to delete the index the alias points at.
	ErrIndexInUse = errors.New("index is the alias target")
	// ErrIndexNotFound means a named index does not exist.
	ErrIndexNotFound = errors.New("index not found")
	// ErrForeignIndex refuses a name that is not one of the alias's versioned indices.
	ErrForeignIndex = errors.New("index does not belong to the search alias")
)

// ReadModelConfig configures the in-memory read model.
type ReadModelConfig struct {
	// Alias is the alias; index names derive from it. Empty means DefaultReadModelAlias.
	Alias string
	// Now is the clock index names are made from; nil means time.Now.
	Now func() time.Time
}

var readModelAliasPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_\-]{0,200}$`)

func (c *ReadModelConfig) setDefaults() {
	if c.Alias == "" {
		c.Alias = DefaultReadModelAlias
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports a configuration that cannot work, after defaults.
func (c ReadModelConfig) Validate() error {
	c.setDefaults()
	if !readModelAliasPattern.MatchString(c.Alias) {
		return fmt.Errorf("memory read model: alias %q must be lower-case letters, digits, '_' or '-'", c.Alias)
	}
	return nil
}

// ReadModel is the search read model in memory, for application unit tests only: the
// projection (command.ProductProjection), the search (query.ProductSearchReadModel), the
// versions reads wait for (query.VisibleVersionsReader) and the rebuild target
// (rebuild.Target) with the semantics of the Elasticsearch and Bleve adapters — versioned
// index names behind an alias, external versions (older loses, equal is a no-op), tombstones
// hidden from search, the same text matching (typos in name and brand included), filters,
// facets, highlights, sorts and cursor rules, and id-ordered Documents. Relevance scores are
// simpler: twice the best field's boost with every word exact (name 3, brand and category 2,
// description 1), plus the best of name and brand with every word exact or a typo away, plus 3
// when the name has the words as a phrase. One mutex serialises everything; writes are visible
// at once. internal/readmodeltest holds the contract all three adapters pass.
type ReadModel struct {
	cfg ReadModelConfig

	mu      sync.Mutex
	indices map[string]map[string]memDoc
	alias   string
}

var (
	_ command.ProductProjection    = (*ReadModel)(nil)
	_ query.ProductSearchReadModel = (*ReadModel)(nil)
	_ query.VisibleVersionsReader  = (*ReadModel)(nil)
	_ rebuild.Target               = (*ReadModel)(nil)
)

// memDoc is a stored document with its analysed text.
type memDoc struct {
	snap   product.Snapshot
	tokens [4]map[string]struct{} // name, brand, category, description
	name   []string               // the name's words in order, for phrases
}

// memTextBoosts are the boosts of the text fields, in the order of memDoc.tokens.
var memTextBoosts = [4]float64{3, 2, 2, 1}

// NewReadModel returns an empty read model without alias; EnsureAlias creates one.
func NewReadModel(cfg ReadModelConfig) (*ReadModel, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &ReadModel{cfg: cfg, indices: map[string]map[string]memDoc{}}, nil
}

// EnsureAlias makes sure the alias exists and returns its index; created is true when it made
// a new index for it.
func (m *ReadModel) EnsureAlias(context.Context) (index string, created bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.alias != "" {
		return m.alias, false, nil
	}
	name := m.createLocked()
	m.alias = name
	return name, true, nil
}

func (m *ReadModel) createLocked() string {
	t := m.cfg.Now().UTC().Truncate(time.Second)
	for i := 0; ; i++ {
		name := readmodel.IndexName(m.cfg.Alias, ReadModelMappingVersion, t.Add(time.Duration(i)*time.Second))
		if _, taken := m.indices[name]; !taken {
			m.indices[name] = map[string]memDoc{}
			return name
		}
	}
}

func (m *ReadModel) parseName(name string) (int, time.Time, bool) {
	return readmodel.ParseIndexName(m.cfg.Alias, name)
}

func (m *ReadModel) own(name string) error {
	if _, _, ok := m.parseName(name); !ok {
		return fmt.Errorf("%q is not a %s_v{M}_{YYYYMMDD}_{HHMMSS} index: %w", name, m.cfg.Alias, ErrForeignIndex)
	}
	return nil
}

// writeDoc stores s in ix unless ix has its version or a newer one.
func writeDoc(ix map[string]memDoc, s product.Snapshot) {
	if cur, ok := ix[string(s.ID)]; ok && cur.snap.Version >= s.Version {
		return
	}
	d := memDoc{snap: s}
	d.snap.Details.Attributes = maps.Clone(s.Details.Attributes)
	for i, text := range []string{s.Details.Name, s.Details.Brand, s.Details.Category, s.Details.Description} {
		d.tokens[i] = map[string]struct{}{}
		for _, tok := range analyze(text) {
			d.tokens[i][tok] = struct{}{}
		}
	}
	d.name = analyze(s.Details.Name)
	ix[string(s.ID)] = d
}

// Apply stores s in the alias's index unless it has s.Version or a newer one.
func (m *ReadModel) Apply(ctx context.Context, s product.Snapshot) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("project %s v%d: %w", s.ID, s.Version, err)
	}
	if s.ID == "" || s.Version < 1 {
		return fmt.Errorf("project %q v%d: no id or version: %w", s.ID, s.Version, command.ErrProjectionRejected)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.alias == "" {
		return fmt.Errorf("project %s v%d: alias %s: %w", s.ID, s.Version, m.cfg.Alias, ErrReadModelAliasNotFound)
	}
	writeDoc(m.indices[m.alias], s)
	return nil
}

// MappingVersion is the mapping version of new indices.
func (m *ReadModel) MappingVersion() int { return ReadModelMappingVersion }

// AliasTarget returns the alias's index or an error wrapping rebuild.ErrNoAlias.
func (m *ReadModel) AliasTarget(context.Context) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.alias == "" {
		return "", fmt.Errorf("memory read model: alias %s: %w: %w", m.cfg.Alias, rebuild.ErrNoAlias, ErrReadModelAliasNotFound)
	}
	return m.alias, nil
}

// CreateIndex creates an empty index named after the current second (or the next free one).
func (m *ReadModel) CreateIndex(context.Context) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.createLocked(), nil
}

// RestoreSettings checks that index exists; there are no settings.
func (m *ReadModel) RestoreSettings(_ context.Context, index string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, err := m.indexLocked(index)
	return err
}

// Refresh checks that index ("" for the alias) exists; writes are visible at once.
func (m *ReadModel) Refresh(_ context.Context, index string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if index == "" || index == m.cfg.Alias {
		if m.alias == "" {
			return fmt.Errorf("memory read model: refresh: %w", ErrReadModelAliasNotFound)
		}
		return nil
	}
	_, err := m.indexLocked(index)
	return err
}

func (m *ReadModel) indexLocked(index string) (map[string]memDoc, error) {
	if err := m.own(index); err != nil {
		return nil, fmt.Errorf("memory read model: %w", err)
	}
	ix, ok := m.indices[index]
	if !ok {
		return nil, fmt.Errorf("memory read model: %s: %w", index, ErrIndexNotFound)
	}
	return ix, nil
}

// Write stores docs in index by name with the same version rules as Apply.
func (m *ReadModel) Write(_ context.Context, index string, docs []product.Snapshot) error {
	if len(docs) == 0 {
		return nil
	}
	for i, s := range docs {
		if s.ID == "" || s.Version < 1 {
			return fmt.Errorf("memory read model: write %s: document %d (%q v%d) has no id or version", index, i, s.ID, s.Version)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ix, err := m.indexLocked(index)
	if err != nil {
		return fmt.Errorf("memory read model: write: %w", err)
	}
	for _, s := range docs {
		writeDoc(ix, s)
	}
	return nil
}

// Documents returns up to limit documents of index with id > afterID in id order.
func (m *ReadModel) Documents(_ context.Context, index, afterID string, limit int) ([]rebuild.DocVersion, error) {
	if limit < 1 {
		return nil, fmt.Errorf("memory read model: documents of %s: limit %d must be positive", index, limit)
	}
	limit = min(limit, MaxDocumentsPage)
	m.mu.Lock()
	defer m.mu.Unlock()
	ix, err := m.indexLocked(index)
	if err != nil {
		return nil, fmt.Errorf("memory read model: documents: %w", err)
	}
	ids := slices.Sorted(maps.Keys(ix))
	start, _ := slices.BinarySearch(ids, afterID)
	if start < len(ids) && ids[start] == afterID {
		start++
	}
	out := []rebuild.DocVersion{}
	for _, id := range ids[start:min(len(ids), start+limit)] {
		d := ix[id]
		out = append(out, rebuild.DocVersion{ID: id, Version: d.snap.Version, Deleted: d.snap.Deleted()})
	}
	return out, nil
}

// SwitchAlias points the alias from one index to another, only if it still points at from
// (domain ErrAliasMoved otherwise); from == "" only where no alias exists. A switch that finds
// the alias already on to succeeds.
func (m *ReadModel) SwitchAlias(_ context.Context, from, to string) error {
	if from == to {
		return fmt.Errorf("memory read model: switch alias: from and to are both %q", to)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if from != "" {
		if err := m.own(from); err != nil {
			return fmt.Errorf("memory read model: switch alias: %w", err)
		}
	}
	if _, err := m.indexLocked(to); err != nil {
		return fmt.Errorf("memory read model: switch alias %s -> %s: %w", from, to, err)
	}
	switch {
	case m.alias == to:
		return nil
	case m.alias != from:
		return fmt.Errorf("memory read model: alias %s points at %q, not %q: %w", m.cfg.Alias, m.alias, from, readmodel.ErrAliasMoved)
	}
	m.alias = to
	return nil
}

// DeleteIndex deletes index; it refuses the alias's index.
func (m *ReadModel) DeleteIndex(_ context.Context, index string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.indexLocked(index); err != nil {
		return fmt.Errorf("memory read model: delete index: %w", err)
	}
	if index == m.alias {
		return fmt.Errorf("memory read model: delete index %s: %w", index, ErrIndexInUse)
	}
	delete(m.indices, index)
	return nil
}

// ListIndices lists the indices newest first with their counts.
func (m *ReadModel) ListIndices(context.Context) ([]rebuild.IndexInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]rebuild.IndexInfo, 0, len(m.indices))
	for name, ix := range m.indices {
		mv, created, _ := m.parseName(name)
		info := rebuild.IndexInfo{Name: name, MappingVersion: mv, Created: created, Aliased: name == m.alias}
		for _, d := range ix {
			if d.snap.Deleted() {
				info.Tombstones++
			} else {
				info.Live++
			}
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b rebuild.IndexInfo) int {
		return cmp.Or(b.Created.Compare(a.Created), cmp.Compare(b.Name, a.Name))
	})
	return out, nil
}

// memHit is a matching document with its sort values.
type memHit struct {
	doc   memDoc
	score float64
	value int64 // price or created_at in Unix milliseconds
}

// Search returns one page of live products matching q, with the rules of the real adapters.
func (m *ReadModel) Search(ctx context.Context, q query.SearchProducts) (query.SearchResult, error) {
	if err := ctx.Err(); err != nil {
		return query.SearchResult{}, fmt.Errorf("search: %w", err)
	}
	q, err := q.Normalize()
	if err != nil {
		return query.SearchResult{}, fmt.Errorf("search: %w", err)
	}
	hash := q.Hash()
	var after *memCursor
	if q.Cursor != "" {
		c, err := memDecodeCursor(q.Cursor, q.Sort, hash)
		if err != nil {
			return query.SearchResult{}, fmt.Errorf("search: %w", err)
		}
		after = &c
	}
	words := analyze(q.Text)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.alias == "" {
		return query.SearchResult{}, fmt.Errorf("search %s: %w: %w", m.cfg.Alias, query.ErrReadModelUnavailable, ErrReadModelAliasNotFound)
	}
	out := query.SearchResult{Items: []query.ProductView{}}
	if q.Text != "" && len(words) == 0 {
		// Only punctuation or symbols: nothing matches, and every facet is empty.
		out.Facets = memFacets(q, nil)
		return out, nil
	}
	var hits, textHits []memHit
	for _, d := range m.indices[m.alias] {
		if d.snap.Deleted() {
			continue
		}
		h := memHit{doc: d}
		if len(words) > 0 {
			if h.score = textScore(d, words); h.score == 0 {
				continue
			}
		}
		textHits = append(textHits, h)
		if !matchesFilters(d.snap, q) {
			continue
		}
		switch q.Sort {
		case query.SortPriceAsc, query.SortPriceDesc:
			h.value = d.snap.Details.Price.Amount()
		case query.SortNewest:
			h.value = d.snap.CreatedAt.UnixMilli()
		}
		hits = append(hits, h)
	}
	out.Facets = memFacets(q, textHits)
	compare := func(a, b memHit) int {
		var c int
		switch q.Sort {
		case query.SortRelevance:
			c = cmp.Compare(b.score, a.score)
		case query.SortPriceAsc:
			c = cmp.Compare(a.value, b.value)
		default:
			c = cmp.Compare(b.value, a.value)
		}
		return cmp.Or(c, cmp.Compare(a.doc.snap.ID, b.doc.snap.ID))
	}
	slices.SortFunc(hits, compare)
	out.Total = int64(len(hits))
	start := 0
	if after != nil {
		pos := memHit{score: after.Score, value: after.Value, doc: memDoc{snap: product.Snapshot{ID: product.ID(after.ID)}}}
		start, _ = slices.BinarySearchFunc(hits, pos, compare)
		if start < len(hits) && compare(hits[start], pos) == 0 {
			start++
		}
	}
	page := hits[start:min(len(hits), start+q.Size)]
	for _, h := range page {
		v := memView(h.doc.snap)
		if q.Highlight && len(words) > 0 {
			d := h.doc.snap.Details
			v.Highlight = query.NewHighlight(
				d.Name, query.MatchSpans(analyzeTokens(d.Name), words, true),
				d.Description, query.MatchSpans(analyzeTokens(d.Description), words, false))
		}
		out.Items = append(out.Items, v)
	}
	if len(page) == q.Size {
		last := page[len(page)-1]
		next, err := query.EncodeCursor(q.Sort, hash, memCursor{Score: last.score, Value: last.value, ID: string(last.doc.snap.ID)})
		if err != nil {
			return query.SearchResult{}, fmt.Errorf("search: %w", err)
		}
		out.NextCursor = next
	}
	return out, nil
}

// textScore is how well d matches the search words, 0 for no match (see ReadModel).
func textScore(d memDoc, words []string) float64 {
	exact, fuzzy := 0.0, 0.0
	for i, toks := range d.tokens {
		if containsAll(toks, words) {
			exact = max(exact, memTextBoosts[i])
		}
		if i < 2 && containsAllFuzzy(toks, words) { // name and brand
			fuzzy = max(fuzzy, memTextBoosts[i])
		}
	}
	if exact == 0 && fuzzy == 0 {
		return 0
	}
	score := 2*exact + fuzzy
	if len(words) > 1 && hasPhrase(d.name, words) {
		score += 3
	}
	return score
}

func containsAllFuzzy(toks map[string]struct{}, words []string) bool {
	for _, w := range words {
		found := false
		for tok := range toks {
			if query.FuzzyMatch(w, tok) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// hasPhrase reports whether words occur in seq one after the other.
func hasPhrase(seq, words []string) bool {
	for i := 0; i+len(words) <= len(seq); i++ {
		if slices.Equal(seq[i:i+len(words)], words) {
			return true
		}
	}
	return false
}

// memFacets counts the facets q asks for over textHits (the live products matching the text),
// each under the filters of q.ForFacet; nil when q asks for none.
func memFacets(q query.SearchProducts, textHits []memHit) *query.Facets {
	if len(q.Facets) == 0 {
		return nil
	}
	out := &query.Facets{}
	terms := func(f query.Facet, values func(product.Details) []string) []query.FacetValue {
		qf := q.ForFacet(f)
		counts := map[string]int64{}
		for _, h := range textHits {
			if !matchesFilters(h.doc.snap, qf) {
				continue
			}
			for _, v := range slices.Compact(slices.Sorted(slices.Values(values(h.doc.snap.Details)))) {
				counts[v]++
			}
		}
		list := make([]query.FacetValue, 0, len(counts))
		for v, n := range counts {
			list = append(list, query.FacetValue{Value: v, Count: n})
		}
		slices.SortFunc(list, func(a, b query.FacetValue) int {
			return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.Value, b.Value))
		})
		return list[:min(len(list), q.FacetSize)]
	}
	if q.Wants(query.FacetCategory) {
		out.Category = terms(query.FacetCategory, func(d product.Details) []string { return nonEmpty(d.Category) })
	}
	if q.Wants(query.FacetBrand) {
		out.Brand = terms(query.FacetBrand, func(d product.Details) []string { return nonEmpty(d.Brand) })
	}
	if q.Wants(query.FacetTags) {
		out.Tags = terms(query.FacetTags, func(d product.Details) []string { return d.Tags })
	}
	if q.Wants(query.FacetInStock) {
		qf := q.ForFacet(query.FacetInStock)
		out.InStock = query.InStockValues()
		for _, h := range textHits {
			if !matchesFilters(h.doc.snap, qf) {
				continue
			}
			if h.doc.snap.Details.Stock > 0 {
				out.InStock[0].Count++
			} else {
				out.InStock[1].Count++
			}
		}
	}
	if q.Wants(query.FacetPrice) {
		qf := q.ForFacet(query.FacetPrice)
		out.Price = q.PriceBuckets()
		for _, h := range textHits {
			if !matchesFilters(h.doc.snap, qf) {
				continue
			}
			amount := h.doc.snap.Details.Price.Amount()
			for i, b := range out.Price {
				if amount >= b.From && (b.To == nil || amount < *b.To) {
					out.Price[i].Count++
					break
				}
			}
		}
	}
	return out
}

// nonEmpty is v as a facet's values: none when empty, as the engines index no empty term.
func nonEmpty(v string) []string {
	if v == "" {
		return nil
	}
	return []string{v}
}

func memView(s product.Snapshot) query.ProductView {
	d := s.Details
	attrs := maps.Clone(d.Attributes)
	if attrs == nil {
		attrs = map[string]string{}
	}
	tags := slices.Clone(d.Tags)
	if tags == nil {
		tags = []string{}
	}
	return query.ProductView{
		ID: string(s.ID), SKU: d.SKU, Name: d.Name, Description: d.Description,
		Category: d.Category, Brand: d.Brand, PriceAmount: d.Price.Amount(), Currency: d.Price.Currency(),
		Stock: d.Stock, Attributes: attrs, Tags: tags, Version: s.Version,
		CreatedAt: s.CreatedAt.UTC(), UpdatedAt: s.UpdatedAt.UTC(),
	}
}

// matchesFilters reports whether s passes the filters of q (normalized).
func matchesFilters(s product.Snapshot, q query.SearchProducts) bool {
	d := s.Details
	switch {
	case s.Deleted():
		return false
	case len(q.Categories) > 0 && !slices.Contains(q.Categories, d.Category):
		return false
	case len(q.Brands) > 0 && !slices.Contains(q.Brands, d.Brand):
		return false
	case len(q.Tags) > 0 && !slices.ContainsFunc(q.Tags, func(tag string) bool { return slices.Contains(d.Tags, tag) }):
		return false
	case q.MinPrice != nil && d.Price.Amount() < *q.MinPrice:
		return false
	case q.MaxPrice != nil && d.Price.Amount() > *q.MaxPrice:
		return false
	case q.InStock != nil && *q.InStock && d.Stock < 1:
		return false
	case q.InStock != nil && !*q.InStock && d.Stock != 0:
		return false
	}
	return true
}

func containsAll(toks map[string]struct{}, words []string) bool {
	for _, w := range words {
		if _, ok := toks[w]; !ok {
			return false
		}
	}
	return true
}

// analyze splits text into lower-cased words as the real engines' standard analysis does
// (Unicode word segmentation, UAX #29; every ideograph a word; punctuation dropped).
func analyze(text string) []string {
	toks := analyzeTokens(text)
	out := make([]string, len(toks))
	for i, t := range toks {
		out[i] = t.Term
	}
	return out
}

// analyzeTokens is analyze with each word's place in text.
func analyzeTokens(text string) []query.Token {
	var out []query.Token
	seg := segment.NewWordSegmenterDirect([]byte(text))
	at := 0
	for seg.Segment() {
		b := seg.Bytes()
		if seg.Type() != segment.None {
			out = append(out, query.Token{Term: strings.ToLower(string(b)), Start: at, End: at + len(b)})
		}
		at += len(b)
	}
	return out
}

// VisibleVersions returns the version of each probed product in the alias's index,
// tombstones included (query.VisibleVersionsReader); writes are visible at once.
func (m *ReadModel) VisibleVersions(ctx context.Context, probes []query.VersionProbe) (map[query.VersionProbe]int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("visible versions: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.alias == "" {
		return nil, fmt.Errorf("visible versions %s: %w: %w", m.cfg.Alias, query.ErrReadModelUnavailable, ErrReadModelAliasNotFound)
	}
	out := make(map[query.VersionProbe]int64, len(probes))
	for _, p := range probes {
		if d, ok := m.indices[m.alias][string(p.ID)]; ok {
			out[p] = d.snap.Version
		}
	}
	return out, nil
}

// memCursor is the position after the last hit of a page (inside query.EncodeCursor's envelope).
type memCursor struct {
	Score float64 `json:"score"`
	Value int64   `json:"v"`
	ID    string  `json:"id"`
}

func memDecodeCursor(s string, sort query.SortOrder, hash string) (memCursor, error) {
	var c memCursor
	if err := query.DecodeCursor(s, sort, hash, &c); err != nil {
		return memCursor{}, err
	}
	if c.ID == "" || len(c.ID) > 256 || math.IsNaN(c.Score) || math.IsInf(c.Score, 0) {
		return memCursor{}, fmt.Errorf("%w: malformed position", query.ErrInvalidCursor)
	}
	return c, nil
}
