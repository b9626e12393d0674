// Package application holds the catalog's use cases: one file per command or query, each a
// small handler over ports the domain or the handler itself declares. Cross-cutting concerns
// (logging, metrics) are decorators applied at wiring time, never code inside a handler.
package application

import (
	"github.com/marketplace/catalog/application/command"
	"github.com/marketplace/catalog/application/query"
)

// Application is what the ports (HTTP, gRPC, CLI) drive.
type Application struct {
	// Commands change state.
	Commands Commands
	// Queries read state.
	Queries Queries
}

// Commands are the write use cases.
type Commands struct {
	// CreateProduct creates a product, honouring idempotency keys.
	CreateProduct command.CreateProductHandler
	// UpdateProduct replaces a product's details under optimistic concurrency.
	UpdateProduct command.UpdateProductHandler
	// DeleteProduct turns a product into a tombstone.
	DeleteProduct command.DeleteProductHandler
	// ProjectProductEvent applies a product event to the search read model.
	ProjectProductEvent command.ProjectProductEventHandler
}

// Queries are the read use cases.
type Queries struct {
	// ProductByID reads one product from the system of record.
	ProductByID query.ProductByIDHandler
	// SearchProducts searches the read model behind the search alias.
	SearchProducts query.SearchProductsHandler
}
