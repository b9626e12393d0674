// Package command holds the write use cases of the catalog, one file each.
package command

import "github.com/marketplace/catalog/domain/product"

// ProductInput is what a client sends to create or update a product, before validation.
type ProductInput struct {
	SKU         string
	Name        string
	Description string
	Category    string
	Brand       string
	Amount      int64
	Currency    string
	Stock       int64
	Attributes  map[string]string
}

// Details validates the input into domain details.
func (in ProductInput) Details() (product.Details, error) {
	return product.NewDetails(in.SKU, in.Name, in.Description, in.Category, in.Brand, in.Amount, in.Currency, in.Stock, in.Attributes)
}
