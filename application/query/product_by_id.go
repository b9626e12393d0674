// Package query holds the read use cases of the catalog, one file each.
package query

import (
	"context"
	"fmt"

	"github.com/marketplace/catalog/application/decorator"
	"github.com/marketplace/catalog/domain/product"
)

// ProductByID reads one product.
type ProductByID struct {
	// ID is the product id as the client sent it.
	ID string
	// Consistency asks the read to wait until the read model reflects given versions (of
	// this product or of others). The system of record has a write as soon as its response
	// is sent, so a version a write returned is there at once; the wait matters only for a
	// version still being written, and keeps its meaning should reads move to a replica.
	Consistency Consistency
}

// ProductByIDResult is the product read, and the versions of Consistency it did not see in
// time (the product is as the read model had it).
type ProductByIDResult struct {
	Product *product.Product
	Behind  []Lag
}

// ProductByIDReadModel is the port the query reads through; the Postgres repository is one.
type ProductByIDReadModel interface {
	Get(ctx context.Context, id product.ID) (*product.Product, error)
}

// ProductByIDHandler reads products by id. A tombstone is returned as product.ErrDeleted
// (with the product in the result).
type ProductByIDHandler decorator.Handler[ProductByID, ProductByIDResult]

type productByIDHandler struct {
	rm     ProductByIDReadModel
	waiter *VersionWaiter
}

// NewProductByIDHandler returns the decorated handler. waiter waits for the versions a read
// names (Consistency) through the same read model.
func NewProductByIDHandler(rm ProductByIDReadModel, waiter *VersionWaiter, deps decorator.Deps) (ProductByIDHandler, error) {
	if rm == nil {
		return nil, fmt.Errorf("product by id: nil read model")
	}
	if waiter == nil {
		return nil, fmt.Errorf("product by id: nil version waiter")
	}
	return decorator.Apply[ProductByID, ProductByIDResult](productByIDHandler{rm: rm, waiter: waiter}, deps.Log, deps.Metrics), nil
}

func (h productByIDHandler) Handle(ctx context.Context, q ProductByID) (ProductByIDResult, error) {
	id, err := product.ParseID(q.ID)
	if err != nil {
		return ProductByIDResult{}, err
	}
	c, err := q.Consistency.Normalize()
	if err != nil {
		return ProductByIDResult{}, err
	}
	behind, err := h.waiter.Wait(ctx, "", c)
	if err != nil {
		return ProductByIDResult{}, fmt.Errorf("product by id: %w", err)
	}
	p, err := h.rm.Get(ctx, id)
	if err != nil {
		return ProductByIDResult{}, fmt.Errorf("product by id: %w", err)
	}
	res := ProductByIDResult{Product: p, Behind: behind}
	if p.IsDeleted() {
		return res, fmt.Errorf("product by id %s: %w", id, product.ErrDeleted)
	}
	return res, nil
}
