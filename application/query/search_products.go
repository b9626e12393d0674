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
	// never interpreted as query syntax.
	Text string
	// Category and Brand filter on exact values when not empty.
	Category string
	Brand    string
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
}

// SearchResult is one page of results.
type SearchResult struct {
	// Items are the products of this page.
	Items []ProductView
	// Total is the number of live products matching the search.
	Total int64
	// NextCursor continues after this page; empty when there is no more.
	NextCursor string
}

// ProductSearchReadModel is the port the search reads through.
type ProductSearchReadModel interface {
	Search(ctx context.Context, q SearchProducts) (SearchResult, error)
}

// SearchProductsHandler searches products.
type SearchProductsHandler decorator.Handler[SearchProducts, SearchResult]

type searchProductsHandler struct {
	rm ProductSearchReadModel
}

// NewSearchProductsHandler returns the decorated handler.
func NewSearchProductsHandler(rm ProductSearchReadModel, deps decorator.Deps) (SearchProductsHandler, error) {
	if rm == nil {
		return nil, fmt.Errorf("search products: nil read model")
	}
	return decorator.Apply[SearchProducts, SearchResult](searchProductsHandler{rm: rm}, deps.Log, deps.Metrics), nil
}

func (h searchProductsHandler) Handle(ctx context.Context, q SearchProducts) (SearchResult, error) {
	q, err := q.Normalize()
	if err != nil {
		return SearchResult{}, err
	}
	res, err := h.rm.Search(ctx, q)
	if err != nil {
		return SearchResult{}, fmt.Errorf("search products: %w", err)
	}
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
	if !utf8.ValidString(q.Text) || !utf8.ValidString(q.Category) || !utf8.ValidString(q.Brand) {
		return invalid("parameters must be valid UTF-8")
	}
	if utf8.RuneCountInString(q.Text) > MaxSearchText {
		return invalid("q is longer than %d characters", MaxSearchText)
	}
	if n := countTerms(q.Text); n > MaxSearchTerms {
		return invalid("q has %d words, at most %d are allowed", n, MaxSearchTerms)
	}
	if utf8.RuneCountInString(q.Category) > MaxExactValue || utf8.RuneCountInString(q.Brand) > MaxExactValue {
		return invalid("category and brand must be at most %d characters", MaxExactValue)
	}
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
	return q, nil
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

// countTerms estimates from above how many distinct words a standard text analyzer makes of
// s: runs of letters and digits are words, every ideograph is a word of its own. Search
// engines turn each word into a clause and refuse queries past about a thousand.
func countTerms(s string) int {
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

// Hash identifies a search (everything but size and cursor), so that a read model accepts a
// cursor only from the search that issued it.
func (q SearchProducts) Hash() string {
	key := struct {
		Text, Category, Brand string
		Tags                  []string `json:",omitempty"` // omitted when empty: cursors issued before tags existed stay valid
		Min, Max              *int64
		InStock               *bool
		Sort                  SortOrder
	}{q.Text, q.Category, q.Brand, q.Tags, q.MinPrice, q.MaxPrice, q.InStock, q.Sort}
	raw, _ := json.Marshal(key)
	sum := sha256.Sum256(raw)
	return base64.RawURLEncoding.EncodeToString(sum[:12])
}

// ErrReadModelUnavailable means the search read model cannot answer now (not configured, or
// its cluster unreachable). Ports answer it with 503; the client may retry.
var ErrReadModelUnavailable = errors.New("search read model unavailable")
