package command

import (
	"context"
	"fmt"
	"time"

	"github.com/marketplace/catalog/application/decorator"
	"github.com/marketplace/catalog/domain/product"
)

// CreateProduct creates a product.
type CreateProduct struct {
	// Input is the client's product.
	Input ProductInput
	// IdempotencyKey, when not empty, makes retries of this request return the first result.
	IdempotencyKey string
	// Fingerprint identifies the request body for the idempotency check.
	Fingerprint string
}

// CreateProductResult is the created (or, on an idempotent replay, the earlier) product.
type CreateProductResult struct {
	// Product is the stored product.
	Product *product.Product
	// Replayed is true when an earlier request with the same idempotency key created it.
	Replayed bool
}

// CreateProductHandler creates products.
type CreateProductHandler decorator.Handler[CreateProduct, CreateProductResult]

type createProductHandler struct {
	repo product.Repository
	now  func() time.Time
}

// NewCreateProductHandler returns the decorated handler.
func NewCreateProductHandler(repo product.Repository, now func() time.Time, deps decorator.Deps) (CreateProductHandler, error) {
	if repo == nil || now == nil {
		return nil, fmt.Errorf("create product: nil dependency")
	}
	return decorator.Apply[CreateProduct, CreateProductResult](createProductHandler{repo: repo, now: now}, deps.Log, deps.Metrics), nil
}

func (h createProductHandler) Handle(ctx context.Context, cmd CreateProduct) (CreateProductResult, error) {
	d, err := cmd.Input.Details()
	if err != nil {
		return CreateProductResult{}, err
	}
	now := h.now()
	p, err := product.New(product.NewID(now), d, now)
	if err != nil {
		return CreateProductResult{}, err
	}
	var key *product.IdempotencyKey
	if cmd.IdempotencyKey != "" {
		key = &product.IdempotencyKey{Key: cmd.IdempotencyKey, Fingerprint: cmd.Fingerprint}
	}
	stored, replayed, err := h.repo.Add(ctx, p, key)
	if err != nil {
		return CreateProductResult{}, fmt.Errorf("create product: %w", err)
	}
	return CreateProductResult{Product: stored, Replayed: replayed}, nil
}
