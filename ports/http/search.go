package httpport

import (
	"errors"
	"html"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/marketplace/catalog/application/query"
)

type searchResultJSON struct {
	Items      []searchItemJSON `json:"items"`
	Total      int64            `json:"total"`
	NextCursor string           `json:"next_cursor,omitempty"`
	Facets     facetsJSON       `json:"facets,omitempty"`
	Behind     []lagJSON        `json:"behind,omitempty"`
}

// searchItemJSON is a product of a search page: the product, and its highlight when asked.
type searchItemJSON struct {
	productJSON
	Highlight *highlightJSON `json:"highlight,omitempty"`
}

// highlightJSON holds HTML fragments: the text escaped, the matches in <em>.
type highlightJSON struct {
	Name        []string `json:"name,omitempty"`
	Description []string `json:"description,omitempty"`
}

// facetsJSON maps each facet asked for to its values ([]facetValueJSON) or price ranges
// ([]priceBucketJSON), an empty list when nothing matched: a client reads every facet it asked
// for without checking that it is there.
type facetsJSON map[query.Facet]any

type facetValueJSON struct {
	Value string `json:"value"`
	Count int64  `json:"count"`
}

type priceBucketJSON struct {
	From  int64  `json:"from"`
	To    *int64 `json:"to,omitempty"`
	Count int64  `json:"count"`
}

type lagJSON struct {
	ID      string `json:"id"`
	Version int64  `json:"version"`
	Have    int64  `json:"have"`
}

// headerReadModelBehind lists, on a read that waited for versions (wait_for) and did not see
// them all in time, the ones it did not see, as "<id>:<version>" separated by commas: the
// answer is what the read model had. Strict reads (wait=strict) answer 503 instead.
const headerReadModelBehind = "Read-Model-Behind"

var searchParams = map[string]bool{"q": true, "category": true, "brand": true, "tags": true, "min_price": true, "max_price": true,
	"in_stock": true, "sort": true, "size": true, "cursor": true, "facets": true, "facet_size": true, "price_ranges": true,
	"highlight": true, "wait_for": true, "wait_timeout": true, "wait": true}

// repeatableParams may be given more than once: exact filters match any of their values, and a
// read may wait for several versions.
var repeatableParams = map[string]bool{"category": true, "brand": true, "wait_for": true}

// searchProducts serves GET /v1/products/search from the read model. Every parameter is
// parsed strictly: a typo in a parameter name is a 400, not a silently unfiltered result.
func (s *Server) searchProducts(w http.ResponseWriter, r *http.Request) error {
	if s.app.Queries.SearchProducts == nil {
		return query.ErrReadModelUnavailable
	}
	q, err := parseSearch(r.URL.Query())
	if err != nil {
		return err
	}
	allowSlowness(r, q.Consistency)
	res, err := s.app.Queries.SearchProducts.Handle(r.Context(), q)
	if err != nil {
		return err
	}
	out := searchResultJSON{Items: make([]searchItemJSON, 0, len(res.Items)), Total: res.Total, NextCursor: res.NextCursor}
	for _, v := range res.Items {
		attrs := v.Attributes
		if attrs == nil {
			attrs = map[string]string{}
		}
		item := searchItemJSON{productJSON: productJSON{
			ID: v.ID, SKU: v.SKU, Name: v.Name, Description: v.Description, Category: v.Category, Brand: v.Brand,
			Price: priceJSON{Amount: v.PriceAmount, Currency: v.Currency}, Stock: v.Stock, Attributes: attrs,
			Tags: nonNilTags(v.Tags), Version: v.Version,
			CreatedAt: v.CreatedAt.UTC().Format(time.RFC3339Nano), UpdatedAt: v.UpdatedAt.UTC().Format(time.RFC3339Nano),
		}}
		if !v.Highlight.Empty() {
			item.Highlight = &highlightJSON{Name: htmlFragments(v.Highlight.Name), Description: htmlFragments(v.Highlight.Description)}
		}
		out.Items = append(out.Items, item)
	}
	if res.Facets != nil {
		out.Facets = toFacetsJSON(q, res.Facets)
	}
	for _, l := range res.Behind {
		out.Behind = append(out.Behind, lagJSON{ID: string(l.ID), Version: l.Want, Have: l.Have})
	}
	setBehind(w, res.Behind)
	return writeJSON(w, http.StatusOK, out)
}

// htmlFragments renders fragments as HTML: every character of the product's text escaped,
// each match wrapped in <em>, adjacent matches in one.
func htmlFragments(fs []query.Fragment) []string {
	out := make([]string, 0, len(fs))
	for _, f := range fs {
		out = append(out, f.Render("<em>", "</em>", html.EscapeString))
	}
	return out
}

// toFacetsJSON lists every facet q asked for, an empty list when nothing has a value.
func toFacetsJSON(q query.SearchProducts, f *query.Facets) facetsJSON {
	values := func(vs []query.FacetValue) []facetValueJSON {
		out := make([]facetValueJSON, 0, len(vs))
		for _, v := range vs {
			out = append(out, facetValueJSON{Value: v.Value, Count: v.Count})
		}
		return out
	}
	out := facetsJSON{}
	for _, name := range q.Facets {
		switch name {
		case query.FacetCategory:
			out[name] = values(f.Category)
		case query.FacetBrand:
			out[name] = values(f.Brand)
		case query.FacetTags:
			out[name] = values(f.Tags)
		case query.FacetInStock:
			out[name] = values(f.InStock)
		case query.FacetPrice:
			price := make([]priceBucketJSON, 0, len(f.Price))
			for _, b := range f.Price {
				price = append(price, priceBucketJSON{From: b.From, To: b.To, Count: b.Count})
			}
			out[name] = price
		}
	}
	return out
}

// setBehind sets Read-Model-Behind for the versions a read did not see.
func setBehind(w http.ResponseWriter, behind []query.Lag) {
	if len(behind) == 0 {
		return
	}
	parts := make([]string, len(behind))
	for i, l := range behind {
		parts[i] = query.WaitFor{ID: l.ID, Version: l.Want}.String()
	}
	w.Header().Set(headerReadModelBehind, strings.Join(parts, ", "))
}

func parseSearch(v url.Values) (query.SearchProducts, error) {
	for k, vals := range v {
		if !searchParams[k] {
			return query.SearchProducts{}, invalidParameter(k, "is not a search parameter")
		}
		if len(vals) > 1 && !repeatableParams[k] {
			return query.SearchProducts{}, invalidParameter(k, "must be given once")
		}
	}
	q := query.SearchProducts{
		Text: v.Get("q"), Categories: v["category"], Brands: v["brand"],
		Sort: query.SortOrder(v.Get("sort")), Cursor: v.Get("cursor"),
	}
	if s := v.Get("tags"); s != "" {
		// Comma-separated, any of them; the application checks each tag.
		q.Tags = strings.Split(s, ",")
	}
	var err error
	if q.MinPrice, err = optInt(v, "min_price"); err != nil {
		return q, err
	}
	if q.MaxPrice, err = optInt(v, "max_price"); err != nil {
		return q, err
	}
	if q.Size, err = optRange(v, "size", query.MaxSearchSize); err != nil {
		return q, err
	}
	if s := v.Get("in_stock"); s != "" {
		b, perr := strconv.ParseBool(s)
		if perr != nil {
			return q, invalidParameter("in_stock", "must be true or false")
		}
		q.InStock = &b
	}
	if s := v.Get("facets"); s != "" {
		if q.Facets, err = query.ParseFacets(s); err != nil {
			return q, invalidParameter("facets", "must be a comma-separated list of category, brand, tags, price and in_stock")
		}
	}
	if q.FacetSize, err = optRange(v, "facet_size", query.MaxFacetSize); err != nil {
		return q, err
	}
	if s := v.Get("price_ranges"); s != "" {
		if q.PriceRanges, err = query.ParsePriceRanges(s); err != nil {
			return q, invalidParameter("price_ranges", "must be comma-separated amounts in minor units, increasing")
		}
	}
	if s := v.Get("highlight"); s != "" {
		b, perr := strconv.ParseBool(s)
		if perr != nil {
			return q, invalidParameter("highlight", "must be true or false")
		}
		q.Highlight = b
	}
	if q.Consistency, err = parseConsistency(v); err != nil {
		return q, err
	}
	return q, nil
}

// parseConsistency parses the read-your-writes parameters: wait_for=<id>:<version> (up to
// query.MaxWaitFor times), wait_timeout (a duration such as 500ms or 2s, at most
// query.MaxWaitTimeout) and wait (strict, or lenient: the default).
func parseConsistency(v url.Values) (query.Consistency, error) {
	var c query.Consistency
	if len(v["wait_for"]) > query.MaxWaitFor {
		return c, invalidParameter("wait_for", "may be given at most "+strconv.Itoa(query.MaxWaitFor)+" times")
	}
	for _, raw := range v["wait_for"] {
		w, err := query.ParseWaitFor(raw)
		if err != nil {
			return c, invalidParameter("wait_for", "must be <product id>:<version>, the id and version a write returned")
		}
		c.WaitFor = append(c.WaitFor, w)
	}
	if s := v.Get("wait_timeout"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 || d > query.MaxWaitTimeout {
			return c, invalidParameter("wait_timeout", "must be a duration such as 500ms or 2s, more than 0 and at most "+query.MaxWaitTimeout.String())
		}
		c.Timeout = d
	}
	switch v.Get("wait") {
	case "", "lenient":
	case "strict":
		c.Strict = true
	default:
		return c, invalidParameter("wait", "must be strict or lenient")
	}
	if (c.Timeout != 0 || c.Strict) && len(c.WaitFor) == 0 {
		return c, invalidParameter("wait_for", "is required with wait_timeout and wait")
	}
	return c, nil
}

// allowSlowness tells the access log that this request may take its wait timeout longer
// before it counts as slow: waiting for a write is what the client asked for.
func allowSlowness(r *http.Request, c query.Consistency) {
	if len(c.WaitFor) == 0 {
		return
	}
	timeout := c.Timeout
	if timeout == 0 {
		timeout = query.DefaultWaitTimeout
	}
	if a, ok := r.Context().Value(slowAllowanceKey{}).(*time.Duration); ok {
		*a = timeout
	}
}

// optRange is parameter name as an integer from 1 to most, or 0 when it is absent.
func optRange(v url.Values, name string, most int) (int, error) {
	s := v.Get(name)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > most {
		return 0, invalidParameter(name, "must be an integer from 1 to "+strconv.Itoa(most))
	}
	return n, nil
}

func optInt(v url.Values, name string) (*int64, error) {
	s := v.Get(name)
	if s == "" {
		return nil, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return nil, invalidParameter(name, "must be a non-negative integer amount in minor units")
	}
	return &n, nil
}

// searchDetail keeps the application's explanation (it names the parameter) without its
// internal prefixes.
func searchDetail(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, query.ErrInvalidSearch.Error()+": "); i >= 0 {
		return msg[i+len(query.ErrInvalidSearch.Error())+2:]
	}
	if errors.Is(err, query.ErrInvalidCursor) {
		return "the cursor is not valid for this search; start again without it"
	}
	return msg
}
