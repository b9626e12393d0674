package query

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/marketplace/catalog/application/decorator"
	"github.com/marketplace/catalog/domain/product"
)

// Search limits. MaxSearchSize keeps one page cheap; deep paging goes through cursors, which
// never hit the search engine's result window.
const (
	DefaultSearchSize = 20
	MaxSearchSize     = 100
	MaxSearchText     = 500
	// MaxSearchTerms bounds the distinct words of q: each becomes a clause of the engine's
	// query, and engines refuse (or fail with a server error) past about a thousand.
	MaxSearchTerms = 128
	// MaxExactValue bounds category and brand filters; nothing longer is indexed.
	MaxExactValue = 256
)

// SortOrder orders search results.
type SortOrder string

// The sort orders of the search API.
const (
	SortRelevance SortOrder = "relevance"
	SortPriceAsc  SortOrder = "price_asc"
	SortPriceDesc SortOrder = "price_desc"
	SortNewest    SortOrder = "newest"
)

// ErrInvalidSearch marks a search the client got wrong; ports answer it with 400.
var ErrInvalidSearch = errors.New("invalid search")

// ErrInvalidCursor marks a cursor that this service did not issue for this search.
var ErrInvalidCursor = fmt.Errorf("%w: invalid cursor", ErrInvalidSearch)

// SearchProducts searches the read model. Tombstones never appear.
type SearchProducts struct {
	// Text is matched as plain words against name, description, brand and category; it is
	// never interpreted as query syntax. A product matches when one of those fields has every
	// word; in name and brand a word may also be a typo away (FuzzyMatch). Exact words rank
	// above typos, and a name with the words as a phrase ranks above one with them apart.
	Text string
	// Category and Brand filter on one exact value each when not empty; Categories and
	// Brands add more, and a product matches when it has any of them (the multi-select of
	// facets). Normalize folds Category into Categories and Brand into Brands (sorted,
	// without repeats) and clears them, so read models read the lists only.
	Category   string
	Brand      string
	Categories []string
	Brands     []string
	// Tags, when not empty, keeps products that carry at least one of them (exact,
	// case-sensitive). Normalize sorts them and drops repeats.
	Tags []string
	// MinPrice and MaxPrice bound the price in minor units, inclusive, when set.
	MinPrice *int64
	MaxPrice *int64
	// InStock, when set, keeps only products with (true) or without (false) stock.
	InStock *bool
	// Sort orders the results; empty means relevance.
	Sort SortOrder
	// Size is the page size; 0 means DefaultSearchSize.
	Size int
	// Cursor continues a previous search (its NextCursor); empty starts at the top.
	Cursor string
	// Facets lists the facets to count (SearchResult.Facets); Normalize puts them in the
	// order of AllFacets without repeats.
	Facets []Facet
	// FacetSize bounds the values of the category, brand and tags facets; 0 means
	// DefaultFacetSize, at most MaxFacetSize.
	FacetSize int
	// PriceRanges are the boundaries of the price facet's ranges in minor units, increasing;
	// empty means DefaultPriceRanges.
	PriceRanges []int64
	// Highlight asks for the fragments of name and description the text matched
	// (ProductView.Highlight).
	Highlight bool
	// Consistency asks the search to wait until the read model reflects given versions.
	Consistency Consistency
}

// ProductView is a product as the read model shows it.
type ProductView struct {
	ID          string
	SKU         string
	Name        string
	Description string
	Category    string
	Brand       string
	PriceAmount int64
	Currency    string
	Stock       int64
	Attributes  map[string]string
	// Tags are in the order the client gave them; empty, never nil, for products without.
	Tags      []string
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
	// Highlight is where the search text matched, when the search asked for it.
	Highlight Highlight
}

// SearchResult is one page of results.
type SearchResult struct {
	// Items are the products of this page.
	Items []ProductView
	// Total is the number of live products matching the search.
	Total int64
	// NextCursor continues after this page; empty when there is no more.
	NextCursor string
	// Facets are the facet counts the search asked for; nil when it asked for none.
	Facets *Facets
	// Behind lists the versions the search waited for (Consistency) and did not see in time;
	// the page shows what the read model had.
	Behind []Lag
}

// ProductSearchReadModel is the port the search reads through.
type ProductSearchReadModel interface {
	Search(ctx context.Context, q SearchProducts) (SearchResult, error)
}

// SearchProductsHandler searches products.
type SearchProductsHandler decorator.Handler[SearchProducts, SearchResult]

type searchProductsHandler struct {
	rm     ProductSearchReadModel
	waiter *VersionWaiter
}

// NewSearchProductsHandler returns the decorated handler. waiter waits for the versions a
// search names (Consistency) through the same read model.
func NewSearchProductsHandler(rm ProductSearchReadModel, waiter *VersionWaiter, deps decorator.Deps) (SearchProductsHandler, error) {
	if rm == nil {
		return nil, fmt.Errorf("search products: nil read model")
	}
	if waiter == nil {
		return nil, fmt.Errorf("search products: nil version waiter")
	}
	return decorator.Apply[SearchProducts, SearchResult](searchProductsHandler{rm: rm, waiter: waiter}, deps.Log, deps.Metrics), nil
}

func (h searchProductsHandler) Handle(ctx context.Context, q SearchProducts) (SearchResult, error) {
	q, err := q.Normalize()
	if err != nil {
		return SearchResult{}, err
	}
	// The route is the search's own, so the check asks the replicas the search will read.
	behind, err := h.waiter.Wait(ctx, q.Hash(), q.Consistency)
	if err != nil {
		return SearchResult{}, fmt.Errorf("search products: %w", err)
	}
	res, err := h.rm.Search(ctx, q)
	if err != nil {
		return SearchResult{}, fmt.Errorf("search products: %w", err)
	}
	res.Behind = behind
	return res, nil
}

// Normalize applies the defaults and rejects what no read model could answer sensibly. The
// handler calls it, and so does every read-model adapter (they may be called directly), so
// the rules live here once and every adapter refuses exactly the same input.
func (q SearchProducts) Normalize() (SearchProducts, error) {
	invalid := func(format string, args ...any) (SearchProducts, error) {
		return q, fmt.Errorf("%w: %s", ErrInvalidSearch, fmt.Sprintf(format, args...))
	}
	q.Text = strings.TrimSpace(q.Text)
	if !utf8.ValidString(q.Text) {
		return invalid("parameters must be valid UTF-8")
	}
	if utf8.RuneCountInString(q.Text) > MaxSearchText {
		return invalid("q is longer than %d characters", MaxSearchText)
	}
	if n := CountTerms(q.Text); n > MaxSearchTerms {
		return invalid("q has %d words, at most %d are allowed", n, MaxSearchTerms)
	}
	var err error
	if q.Categories, err = normalizeExact("category", q.Category, q.Categories); err != nil {
		return invalid("%s", err)
	}
	if q.Brands, err = normalizeExact("brand", q.Brand, q.Brands); err != nil {
		return invalid("%s", err)
	}
	q.Category, q.Brand = "", ""
	tags, err := normalizeTags(q.Tags)
	if err != nil {
		return invalid("%s", err)
	}
	q.Tags = tags
	if q.Size == 0 {
		q.Size = DefaultSearchSize
	}
	if q.Size < 1 || q.Size > MaxSearchSize {
		return invalid("size must be 1..%d", MaxSearchSize)
	}
	if q.Sort == "" {
		q.Sort = SortRelevance
	}
	switch q.Sort {
	case SortRelevance, SortPriceAsc, SortPriceDesc, SortNewest:
	default:
		return invalid("sort must be relevance, price_asc, price_desc or newest")
	}
	if q.MinPrice != nil && *q.MinPrice < 0 || q.MaxPrice != nil && *q.MaxPrice < 0 {
		return invalid("prices must not be negative")
	}
	if q.MinPrice != nil && q.MaxPrice != nil && *q.MinPrice > *q.MaxPrice {
		return invalid("min_price is greater than max_price")
	}
	if len(q.Cursor) > 4096 {
		return q, fmt.Errorf("%w: too long", ErrInvalidCursor)
	}
	if q, err = q.normalizeFacets(); err != nil {
		return q, err
	}
	if q.Consistency, err = q.Consistency.Normalize(); err != nil {
		return q, err
	}
	return q, nil
}

// normalizeExact merges one and more, the values of an exact multi-select filter, sorted
// without repeats (the filter matches any, so order and repeats mean nothing, and the cursor
// hash must not see them). Values are kept as given: exact filters are exact.
func normalizeExact(name, one string, more []string) ([]string, error) {
	values := slices.Clone(more)
	if one != "" {
		values = append(values, one)
	}
	if len(values) == 0 {
		return nil, nil
	}
	if len(values) > MaxFilterValues {
		return nil, fmt.Errorf("%s names %d values, at most %d are allowed", name, len(values), MaxFilterValues)
	}
	for _, v := range values {
		switch {
		case !utf8.ValidString(v):
			return nil, errors.New("parameters must be valid UTF-8")
		case v == "":
			return nil, fmt.Errorf("%s must not be empty", name)
		case utf8.RuneCountInString(v) > MaxExactValue:
			return nil, fmt.Errorf("category and brand must be at most %d characters", MaxExactValue)
		}
	}
	slices.Sort(values)
	return slices.Compact(values), nil
}

// normalizeTags checks a tags filter and returns it sorted without repeats (the filter matches
// any of them, so order and repeats mean nothing, and the cursor hash must not see them). A tag
// no product can have (empty, too long) is refused rather than silently matching nothing.
func normalizeTags(tags []string) ([]string, error) {
	if len(tags) == 0 {
		return nil, nil
	}
	if len(tags) > product.MaxTags {
		return nil, fmt.Errorf("tags names %d tags, at most %d are allowed", len(tags), product.MaxTags)
	}
	out := make([]string, 0, len(tags))
	for _, tag := range tags {
		tag = strings.TrimSpace(tag)
		switch {
		case !utf8.ValidString(tag):
			return nil, errors.New("tags must be valid UTF-8")
		case tag == "":
			return nil, errors.New("tags must not contain an empty tag")
		case utf8.RuneCountInString(tag) > product.MaxTagLength:
			return nil, fmt.Errorf("tags must be at most %d characters each", product.MaxTagLength)
		}
		out = append(out, tag)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// CountTerms estimates from above how many distinct words a standard text analyzer makes of
// s: runs of letters and digits are words, every ideograph is a word of its own. Search
// engines turn each word into a clause and refuse queries past about a thousand; read models
// that cannot analyze the text themselves use it to tell one word from a phrase.
func CountTerms(s string) int {
	terms := map[string]struct{}{}
	var word strings.Builder
	flush := func() {
		if word.Len() > 0 {
			terms[strings.ToLower(word.String())] = struct{}{}
			word.Reset()
		}
	}
	for _, r := range s {
		switch {
		case unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana):
			flush()
			terms[string(r)] = struct{}{}
		case unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r):
			word.WriteRune(r)
		default:
			flush()
		}
	}
	flush()
	return len(terms)
}

// Hash identifies a search (what decides its hits and their order: everything but size,
// cursor, facets, highlighting and consistency), so that a read model accepts a cursor only
// from the search that issued it. q must be normalized.
func (q SearchProducts) Hash() string {
	// One category or brand hashes as the single values did before lists existed, so that
	// cursors issued by an older release stay valid through a rolling upgrade.
	var category, brand string
	var categories, brands []string
	if len(q.Categories) == 1 {
		category = q.Categories[0]
	} else {
		categories = q.Categories
	}
	if len(q.Brands) == 1 {
		brand = q.Brands[0]
	} else {
		brands = q.Brands
	}
	key := struct {
		Text, Category, Brand string
		Tags                  []string `json:",omitempty"` // omitted when empty: cursors issued before tags existed stay valid
		Min, Max              *int64
		InStock               *bool
		Sort                  SortOrder
		Categories            []string `json:",omitempty"`
		Brands                []string `json:",omitempty"`
	}{q.Text, category, brand, q.Tags, q.MinPrice, q.MaxPrice, q.InStock, q.Sort, categories, brands}
	raw, _ := json.Marshal(key)
	sum := sha256.Sum256(raw)
	return base64.RawURLEncoding.EncodeToString(sum[:12])
}

// ErrReadModelUnavailable means the search read model cannot answer now (not configured, or
// its cluster unreachable). Ports answer it with 503; the client may retry.
var ErrReadModelUnavailable = errors.New("search read model unavailable")
