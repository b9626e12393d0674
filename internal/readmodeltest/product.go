package readmodeltest

import (
	"testing"
	"time"

	"github.com/marketplace/catalog/domain/product"
)

// Product describes a test product; Snapshot turns it into the domain snapshot.
type Product struct {
	ID          product.ID
	Version     int64
	SKU         string
	Name        string
	Description string
	Category    string
	Brand       string
	Amount      int64
	Currency    string
	Stock       int64
	Attributes  map[string]string
	Tags        []string
	Created     time.Time
	Deleted     bool
}

// Snapshot is the domain snapshot of p, with defaults for what p leaves empty.
func (p Product) Snapshot(t testing.TB) product.Snapshot {
	t.Helper()
	if p.ID == "" {
		p.ID = NewID()
	}
	sku := p.SKU
	if sku == "" {
		sku = "SKU-" + string(p.ID)[24:]
	}
	cur := p.Currency
	if cur == "" {
		cur = "EUR"
	}
	name := p.Name
	if name == "" {
		name = "Product " + string(p.ID)[24:]
	}
	d, err := product.NewDetails(sku, name, p.Description, p.Category, p.Brand, p.Amount, cur, p.Stock, p.Attributes, p.Tags...)
	if err != nil {
		t.Fatalf("NewDetails: %v", err)
	}
	created := p.Created
	if created.IsZero() {
		created = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	v := p.Version
	if v == 0 {
		v = 1
	}
	s := product.Snapshot{ID: p.ID, Details: d, Version: v, CreatedAt: created, UpdatedAt: created.Add(time.Duration(v) * time.Minute)}
	if p.Deleted {
		at := s.UpdatedAt
		s.DeletedAt = &at
	}
	return s
}

// NewID returns a fresh product id.
func NewID() product.ID { return product.NewID(time.Now()) }
