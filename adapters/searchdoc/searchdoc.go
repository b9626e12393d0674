// Package searchdoc is the product document of the search read models:
// the JSON the Elasticsearch adapter stores as _source and the Bleve adapter keeps in its
// source field. One definition, so that both engines (and the benchmarks' raw baselines)
// store the same bytes for the same snapshot.
package searchdoc

import (
	"cmp"
	"slices"
	"time"

	"github.com/marketplace/catalog/application/query"
	"github.com/marketplace/catalog/domain/product"
)

// Document is a product as stored in a search index.
type Document struct {
	ID          string      `json:"id"`
	SKU         string      `json:"sku"`
	Name        string      `json:"name"`
	Description string      `json:"description"`
	Category    string      `json:"category"`
	Brand       string      `json:"brand"`
	Price       Price       `json:"price"`
	Stock       int64       `json:"stock"`
	Attributes  []Attribute `json:"attributes"`
	// Tags are the product's tags in the client's order (mapping version 2 on). Documents
	// written before tags existed have none.
	Tags      []string   `json:"tags"`
	Version   int64      `json:"version"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	Deleted   bool       `json:"deleted"`
	DeletedAt *time.Time `json:"deleted_at,omitempty"`
}

// Price is a document's price in minor units.
type Price struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

// Attribute is one attribute; a list (sorted by key) rather than an object, so that arbitrary
// keys never grow a strict mapping.
type Attribute struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// New is the document of a snapshot; tombstones keep their last state and are marked
// deleted, so that they still carry the version that beats older events.
func New(s product.Snapshot) Document {
	d := s.Details
	attrs := make([]Attribute, 0, len(d.Attributes))
	for k, v := range d.Attributes {
		attrs = append(attrs, Attribute{Key: k, Value: v})
	}
	slices.SortFunc(attrs, func(a, b Attribute) int { return cmp.Compare(a.Key, b.Key) })
	if d.Tags == nil {
		d.Tags = []string{}
	}
	doc := Document{
		ID: string(s.ID), SKU: d.SKU, Name: d.Name, Description: d.Description,
		Category: d.Category, Brand: d.Brand,
		Price:      Price{Amount: d.Price.Amount(), Currency: d.Price.Currency()},
		Stock:      d.Stock,
		Attributes: attrs,
		Tags:       slices.Clone(d.Tags),
		Version:    s.Version,
		CreatedAt:  s.CreatedAt.UTC(),
		UpdatedAt:  s.UpdatedAt.UTC(),
		Deleted:    s.Deleted(),
	}
	if s.DeletedAt != nil {
		t := s.DeletedAt.UTC()
		doc.DeletedAt = &t
	}
	return doc
}

// View is the read side of a document, as the search API returns it.
func (d Document) View() query.ProductView {
	attrs := make(map[string]string, len(d.Attributes))
	for _, a := range d.Attributes {
		attrs[a.Key] = a.Value
	}
	tags := slices.Clone(d.Tags)
	if tags == nil {
		tags = []string{}
	}
	return query.ProductView{
		ID: d.ID, SKU: d.SKU, Name: d.Name, Description: d.Description,
		Category: d.Category, Brand: d.Brand,
		PriceAmount: d.Price.Amount, Currency: d.Price.Currency,
		Stock:      d.Stock,
		Attributes: attrs,
		Tags:       tags,
		Version:    d.Version,
		CreatedAt:  d.CreatedAt,
		UpdatedAt:  d.UpdatedAt,
	}
}
