package command

import (
	"context"
	"fmt"
	"time"

	"github.com/marketplace/catalog/application/decorator"
	"github.com/marketplace/catalog/domain/product"
)

// UpdateProduct replaces a product's details if it is still at ExpectedVersion.
type UpdateProduct struct {
	// ID is the product id as the client sent it.
	ID string
	// ExpectedVersion is the version the client read (If-Match).
	ExpectedVersion int64
	// Input is the new state.
	Input ProductInput
}

// UpdateProductHandler updates products.
type UpdateProductHandler decorator.Handler[UpdateProduct, *product.Product]

type updateProductHandler struct {
	repo product.Repository
	now  func() time.Time
}

// NewUpdateProductHandler returns the decorated handler.
func NewUpdateProductHandler(repo product.Repository, now func() time.Time, deps decorator.Deps) (UpdateProductHandler, error) {
	if repo == nil || now == nil {
		return nil, fmt.Errorf("update product: nil dependency")
	}
	return decorator.Apply[UpdateProduct, *product.Product](updateProductHandler{repo: repo, now: now}, deps.Log, deps.Metrics), nil
}

func (h updateProductHandler) Handle(ctx context.Context, cmd UpdateProduct) (*product.Product, error) {
	id, err := product.ParseID(cmd.ID)
	if err != nil {
		return nil, err
	}
	d, err := cmd.Input.Details()
	if err != nil {
		return nil, err
	}
	p, err := h.repo.Update(ctx, id, func(_ context.Context, p *product.Product) (*product.Product, error) {
		if p.IsDeleted() {
			return nil, product.ErrDeleted
		}
		if err := p.CheckVersion(cmd.ExpectedVersion); err != nil {
			return nil, err
		}
		d := d
		if cmd.Input.TagsOmitted {
			d.Tags = p.Details().Tags
		}
		if err := p.Update(d, h.now()); err != nil {
			return nil, err
		}
		return p, nil
	})
	if err != nil {
		return nil, fmt.Errorf("update product: %w", err)
	}
	return p, nil
}
