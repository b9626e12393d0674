package httpport

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/marketplace/catalog/application/command"
	"github.com/marketplace/catalog/application/query"
	"github.com/marketplace/catalog/domain/product"
)

// productsPath is the collection; Location headers are built from it.
const productsPath = "/v1/products"

// productJSON is a product on the wire (docs/ARCHITECTURE.md, "Public contract"). It is a separate type from the
// aggregate so that renaming a Go field can never change the public contract.
type productJSON struct {
	ID          string            `json:"id"`
	SKU         string            `json:"sku"`
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Category    string            `json:"category"`
	Brand       string            `json:"brand"`
	Price       priceJSON         `json:"price"`
	Stock       int64             `json:"stock"`
	Attributes  map[string]string `json:"attributes"`
	Tags        []string          `json:"tags"`
	Version     int64             `json:"version"`
	CreatedAt   string            `json:"created_at"`
	UpdatedAt   string            `json:"updated_at"`
}

type priceJSON struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

func toProductJSON(p *product.Product) productJSON {
	d := p.Details()
	attrs := d.Attributes
	if attrs == nil {
		attrs = map[string]string{} // clients iterate it; null would be a second way to say "none"
	}
	return productJSON{
		ID: p.ID().String(), SKU: d.SKU, Name: d.Name, Description: d.Description,
		Category: d.Category, Brand: d.Brand,
		Price: priceJSON{Amount: d.Price.Amount(), Currency: d.Price.Currency()},
		Stock: d.Stock, Attributes: attrs, Tags: nonNilTags(d.Tags), Version: p.Version(),
		CreatedAt: p.CreatedAt().UTC().Format(time.RFC3339Nano),
		UpdatedAt: p.UpdatedAt().UTC().Format(time.RFC3339Nano),
	}
}

// nonNilTags keeps "tags": [] on the wire for a product without tags: clients iterate it, and
// null would be a second way to say "none".
func nonNilTags(tags []string) []string {
	if tags == nil {
		return []string{}
	}
	return tags
}

// errNoProduct guards against an application handler that reports success without a
// product; it is a server bug, so it becomes a 500, not a panic on a nil pointer.
var errNoProduct = errors.New("application returned no product")

// writeProduct sends a product with its entity tag, so the client can use it for If-Match
// straight away.
func writeProduct(w http.ResponseWriter, status int, p *product.Product) error {
	if p == nil {
		return errNoProduct
	}
	w.Header().Set(headerETag, etag(p.Version()))
	return writeJSON(w, status, toProductJSON(p))
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n')) // a failed write means the client left; no one to tell
	return nil
}

// createProduct handles POST /v1/products.
func (s *Server) createProduct(w http.ResponseWriter, r *http.Request) error {
	key, err := idempotencyKey(r)
	if err != nil {
		return err
	}
	in, err := s.decodeProductInput(w, r)
	if err != nil {
		return err
	}
	cmd := command.CreateProduct{Input: in}
	if key != "" {
		cmd.IdempotencyKey = key
		cmd.Fingerprint = fingerprint(r, in)
	}
	res, err := s.app.Commands.CreateProduct.Handle(r.Context(), cmd)
	if err != nil {
		return err
	}
	if res.Product == nil {
		return errNoProduct
	}
	if res.Replayed {
		w.Header().Set(headerIdempotentReplayed, "true")
	}
	w.Header().Set("Location", productsPath+"/"+res.Product.ID().String())
	return writeProduct(w, http.StatusCreated, res.Product)
}

// getProduct handles GET /v1/products/{id}.
// It accepts the read-your-writes parameters of the search (wait_for, wait_timeout, wait).
func (s *Server) getProduct(w http.ResponseWriter, r *http.Request) error {
	v := r.URL.Query()
	for _, k := range []string{"wait_timeout", "wait"} {
		if len(v[k]) > 1 {
			return invalidParameter(k, "must be given once")
		}
	}
	c, err := parseConsistency(v)
	if err != nil {
		return err
	}
	allowSlowness(r, c)
	res, err := s.app.Queries.ProductByID.Handle(r.Context(), query.ProductByID{ID: chi.URLParam(r, "id"), Consistency: c})
	setBehind(w, res.Behind)
	if err != nil {
		return err
	}
	return writeProduct(w, http.StatusOK, res.Product)
}

// updateProduct handles PUT /v1/products/{id}. If-Match is mandatory: a full replacement
// without it would silently overwrite a concurrent change (the lost-update problem).
func (s *Server) updateProduct(w http.ResponseWriter, r *http.Request) error {
	version, err := requiredIfMatch(r, "so a concurrent change is not overwritten")
	if err != nil {
		return err
	}
	in, err := s.decodeProductInput(w, r)
	if err != nil {
		return err
	}
	p, err := s.app.Commands.UpdateProduct.Handle(r.Context(), command.UpdateProduct{
		ID: chi.URLParam(r, "id"), ExpectedVersion: version, Input: in,
	})
	if err != nil {
		return err
	}
	return writeProduct(w, http.StatusOK, p)
}

// deleteProduct handles DELETE /v1/products/{id}. If-Match is mandatory, as for PUT: a
// delete decided on a stale read would throw away a change the client never saw, and a
// write API where one verb checks versions and the other does not invites exactly that.
func (s *Server) deleteProduct(w http.ResponseWriter, r *http.Request) error {
	version, err := requiredIfMatch(r, "so a change made since is not deleted unseen")
	if err != nil {
		return err
	}
	cmd := command.DeleteProduct{ID: chi.URLParam(r, "id"), ExpectedVersion: &version}
	if _, err := s.app.Commands.DeleteProduct.Handle(r.Context(), cmd); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
