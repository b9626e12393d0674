package query

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Facet names a facet of the search: counts of the live products matching the search per
// value of one field.
type Facet string

// The facets of the search API.
const (
	FacetCategory Facet = "category"
	FacetBrand    Facet = "brand"
	FacetTags     Facet = "tags"
	FacetPrice    Facet = "price"
	FacetInStock  Facet = "in_stock"
)

// AllFacets are the facets in the order results list them.
var AllFacets = []Facet{FacetCategory, FacetBrand, FacetTags, FacetPrice, FacetInStock}

// Facet limits.
const (
	// DefaultFacetSize is how many values a category, brand or tags facet lists when the
	// search does not say.
	DefaultFacetSize = 10
	// MaxFacetSize bounds FacetSize: a facet is a sidebar, not an export, and every value is
	// a bucket the engine has to keep per shard.
	MaxFacetSize = 50
	// MaxPriceRanges bounds the boundaries of PriceRanges (so at most MaxPriceRanges+1
	// price buckets).
	MaxPriceRanges = 20
	// MaxFilterValues bounds the values of one multi-select filter (Categories, Brands).
	MaxFilterValues = 50
)

// maxPriceBoundary keeps boundaries exact in engines that keep numbers as float64.
const maxPriceBoundary = 1 << 53

// DefaultPriceRanges are the price facet's boundaries in minor units when the search names
// none: [0, 10.00), [10.00, 25.00), ..., [500.00, no limit).
var DefaultPriceRanges = []int64{1000, 2500, 5000, 10000, 25000, 50000}

// Facets are the facet counts of a search, each over every live product that matches the
// search's text and filters, except that a facet ignores the filter on its own field (see
// SearchProducts.ForFacet). A facet that was not asked for is nil.
type Facets struct {
	// Category, Brand and Tags list up to FacetSize values with their counts, by count
	// (highest first) and then by value; values without products are not listed.
	Category []FacetValue
	Brand    []FacetValue
	Tags     []FacetValue
	// Price lists every price range of the search, in order, with its count (zero
	// included, so that a client can draw a stable list).
	Price []PriceBucket
	// InStock counts the products with stock ("true") and without ("false"), both listed,
	// in that order: the values of the in_stock filter.
	InStock []FacetValue
}

// InStockValues are the in_stock facet with nothing counted yet, which read models fill in:
// index 0 counts products with stock, index 1 those without.
func InStockValues() []FacetValue {
	return []FacetValue{{Value: "true"}, {Value: "false"}}
}

// FacetValue is one value of a facet and how many products have it.
type FacetValue struct {
	Value string
	Count int64
}

// PriceBucket is one price range: From (inclusive) to To (exclusive; nil for no upper limit)
// in minor units, and how many products cost that much.
type PriceBucket struct {
	From  int64
	To    *int64
	Count int64
}

// PriceBuckets are the empty buckets of the search's price ranges (after Normalize), which
// read models fill in.
func (q SearchProducts) PriceBuckets() []PriceBucket {
	out := make([]PriceBucket, 0, len(q.PriceRanges)+1)
	from := int64(0)
	for _, b := range q.PriceRanges {
		to := b
		out = append(out, PriceBucket{From: from, To: &to})
		from = b
	}
	return append(out, PriceBucket{From: from})
}

// Wants reports whether the search asks for facet f.
func (q SearchProducts) Wants(f Facet) bool { return slices.Contains(q.Facets, f) }

// ForFacet is the search whose matches facet f counts: q without its filter on f's own field.
// This is the multi-select rule: a client that filters on brand A still sees how many
// products brands B and C have under every other filter, so it can offer them beside A (and
// selecting B as well shows A's and B's products, the filter matching any of its values),
// while the other facets count only brand A's products.
func (q SearchProducts) ForFacet(f Facet) SearchProducts {
	switch f {
	case FacetCategory:
		q.Category, q.Categories = "", nil
	case FacetBrand:
		q.Brand, q.Brands = "", nil
	case FacetTags:
		q.Tags = nil
	case FacetPrice:
		q.MinPrice, q.MaxPrice = nil, nil
	case FacetInStock:
		q.InStock = nil
	}
	return q
}

// ParseFacets parses the comma-separated facet list of the API ("category,price").
func ParseFacets(s string) ([]Facet, error) {
	var out []Facet
	for _, name := range strings.Split(s, ",") {
		f := Facet(strings.TrimSpace(name))
		if !slices.Contains(AllFacets, f) {
			return nil, fmt.Errorf("%w: facets: %q is not a facet; use category, brand, tags, price or in_stock", ErrInvalidSearch, name)
		}
		out = append(out, f)
	}
	return out, nil
}

// ParsePriceRanges parses the comma-separated price boundaries of the API ("1000,5000").
func ParsePriceRanges(s string) ([]int64, error) {
	var out []int64
	for _, raw := range strings.Split(s, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(raw), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: price_ranges: %q is not an amount in minor units", ErrInvalidSearch, raw)
		}
		out = append(out, n)
	}
	return out, nil
}

// normalizeFacets checks the facet part of q and fills its defaults.
func (q SearchProducts) normalizeFacets() (SearchProducts, error) {
	invalid := func(format string, args ...any) (SearchProducts, error) {
		return q, fmt.Errorf("%w: %s", ErrInvalidSearch, fmt.Sprintf(format, args...))
	}
	var facets []Facet
	for _, f := range AllFacets { // canonical order, without repeats
		if slices.Contains(q.Facets, f) {
			facets = append(facets, f)
		}
	}
	for _, f := range q.Facets {
		if !slices.Contains(AllFacets, f) {
			return invalid("facets: %q is not a facet; use category, brand, tags, price or in_stock", f)
		}
	}
	q.Facets = facets
	if q.FacetSize == 0 {
		q.FacetSize = DefaultFacetSize
	}
	if q.FacetSize < 1 || q.FacetSize > MaxFacetSize {
		return invalid("facet_size must be 1..%d", MaxFacetSize)
	}
	if len(q.PriceRanges) == 0 {
		q.PriceRanges = slices.Clone(DefaultPriceRanges)
	}
	if len(q.PriceRanges) > MaxPriceRanges {
		return invalid("price_ranges has %d boundaries, at most %d are allowed", len(q.PriceRanges), MaxPriceRanges)
	}
	for i, b := range q.PriceRanges {
		if b <= 0 || b > maxPriceBoundary || i > 0 && b <= q.PriceRanges[i-1] {
			return invalid("price_ranges must be positive amounts in minor units up to %d, in increasing order", int64(maxPriceBoundary))
		}
	}
	return q, nil
}

// FiltersOn reports whether q (normalized) filters on facet f's field, which that facet's
// counts then ignore (ForFacet).
func (q SearchProducts) FiltersOn(f Facet) bool {
	switch f {
	case FacetCategory:
		return len(q.Categories) > 0 || q.Category != ""
	case FacetBrand:
		return len(q.Brands) > 0 || q.Brand != ""
	case FacetTags:
		return len(q.Tags) > 0
	case FacetPrice:
		return q.MinPrice != nil || q.MaxPrice != nil
	case FacetInStock:
		return q.InStock != nil
	}
	return false
}
