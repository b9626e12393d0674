package command

import (
	"context"
	"fmt"
	"time"

	"github.com/marketplace/catalog/application/decorator"
	"github.com/marketplace/catalog/domain/product"
)

// DeleteProduct turns a product into a tombstone.
type DeleteProduct struct {
	// ID is the product id as the client sent it.
	ID string
	// ExpectedVersion, when set (If-Match), must be the stored version.
	ExpectedVersion *int64
}

// DeleteProductHandler deletes products.
type DeleteProductHandler decorator.Handler[DeleteProduct, *product.Product]

type deleteProductHandler struct {
	repo product.Repository
	now  func() time.Time
}

// NewDeleteProductHandler returns the decorated handler.
func NewDeleteProductHandler(repo product.Repository, now func() time.Time, deps decorator.Deps) (DeleteProductHandler, error) {
	if repo == nil || now == nil {
		return nil, fmt.Errorf("delete product: nil dependency")
	}
	return decorator.Apply[DeleteProduct, *product.Product](deleteProductHandler{repo: repo, now: now}, deps.Log, deps.Metrics), nil
}

func (h deleteProductHandler) Handle(ctx context.Context, cmd DeleteProduct) (*product.Product, error) {
	id, err := product.ParseID(cmd.ID)
	if err != nil {
		return nil, err
	}
	p, err := h.repo.Update(ctx, id, func(_ context.Context, p *product.Product) (*product.Product, error) {
		// Gone before stale: a retried delete whose first answer was lost must learn that
		// the product is deleted, not that its version is behind the tombstone's.
		if p.IsDeleted() {
			return nil, product.ErrDeleted
		}
		if cmd.ExpectedVersion != nil {
			if err := p.CheckVersion(*cmd.ExpectedVersion); err != nil {
				return nil, err
			}
		}
		if err := p.Delete(h.now()); err != nil {
			return nil, err
		}
		return p, nil
	})
	if err != nil {
		return nil, fmt.Errorf("delete product: %w", err)
	}
	return p, nil
}
