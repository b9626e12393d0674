package httpport

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/marketplace/catalog/application/query"
)

type searchResultJSON struct {
	Items      []productJSON `json:"items"`
	Total      int64         `json:"total"`
	NextCursor string        `json:"next_cursor,omitempty"`
}

var searchParams = map[string]bool{"q": true, "category": true, "brand": true, "tags": true, "min_price": true, "max_price": true,
	"in_stock": true, "sort": true, "size": true, "cursor": true}

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
	res, err := s.app.Queries.SearchProducts.Handle(r.Context(), q)
	if err != nil {
		return err
	}
	out := searchResultJSON{Items: make([]productJSON, 0, len(res.Items)), Total: res.Total, NextCursor: res.NextCursor}
	for _, v := range res.Items {
		attrs := v.Attributes
		if attrs == nil {
			attrs = map[string]string{}
		}
		out.Items = append(out.Items, productJSON{
			ID: v.ID, SKU: v.SKU, Name: v.Name, Description: v.Description, Category: v.Category, Brand: v.Brand,
			Price: priceJSON{Amount: v.PriceAmount, Currency: v.Currency}, Stock: v.Stock, Attributes: attrs,
			Tags: nonNilTags(v.Tags), Version: v.Version,
			CreatedAt: v.CreatedAt.UTC().Format(time.RFC3339Nano), UpdatedAt: v.UpdatedAt.UTC().Format(time.RFC3339Nano),
		})
	}
	return writeJSON(w, http.StatusOK, out)
}

func parseSearch(v url.Values) (query.SearchProducts, error) {
	for k, vals := range v {
		if !searchParams[k] {
			return query.SearchProducts{}, invalidParameter(k, "is not a search parameter")
		}
		if len(vals) > 1 {
			return query.SearchProducts{}, invalidParameter(k, "must be given once")
		}
	}
	q := query.SearchProducts{
		Text: v.Get("q"), Category: v.Get("category"), Brand: v.Get("brand"),
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
	if s := v.Get("size"); s != "" {
		n, perr := strconv.Atoi(s)
		if perr != nil || n < 1 || n > query.MaxSearchSize {
			return q, invalidParameter("size", "must be an integer from 1 to "+strconv.Itoa(query.MaxSearchSize))
		}
		q.Size = n
	}
	if s := v.Get("in_stock"); s != "" {
		b, perr := strconv.ParseBool(s)
		if perr != nil {
			return q, invalidParameter("in_stock", "must be true or false")
		}
		q.InStock = &b
	}
	return q, nil
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
