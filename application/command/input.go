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
	// Tags are the product's tags. When TagsOmitted is set the client did not send any: a
	// create stores none and an update keeps the stored ones, so a client written before tags
	// existed never erases the tags another client set.
	Tags        []string
	TagsOmitted bool
}

// Details validates the input into domain details (no tags when TagsOmitted).
func (in ProductInput) Details() (product.Details, error) {
	var tags []string
	if !in.TagsOmitted {
		tags = in.Tags
	}
	return product.NewDetails(in.SKU, in.Name, in.Description, in.Category, in.Brand, in.Amount, in.Currency, in.Stock, in.Attributes, tags...)
}
