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
}

// ProductByIDReadModel is the port the query reads through; the Postgres repository is one.
type ProductByIDReadModel interface {
	Get(ctx context.Context, id product.ID) (*product.Product, error)
}

// ProductByIDHandler reads products by id. A tombstone is returned as product.ErrDeleted.
type ProductByIDHandler decorator.Handler[ProductByID, *product.Product]

type productByIDHandler struct {
	rm ProductByIDReadModel
}

// NewProductByIDHandler returns the decorated handler.
func NewProductByIDHandler(rm ProductByIDReadModel, deps decorator.Deps) (ProductByIDHandler, error) {
	if rm == nil {
		return nil, fmt.Errorf("product by id: nil read model")
	}
	return decorator.Apply[ProductByID, *product.Product](productByIDHandler{rm: rm}, deps.Log, deps.Metrics), nil
}

func (h productByIDHandler) Handle(ctx context.Context, q ProductByID) (*product.Product, error) {
	id, err := product.ParseID(q.ID)
	if err != nil {
		return nil, err
	}
	p, err := h.rm.Get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("product by id: %w", err)
	}
	if p.IsDeleted() {
		return p, fmt.Errorf("product by id %s: %w", id, product.ErrDeleted)
	}
	return p, nil
}
