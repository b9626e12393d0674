package wiring

import (
	"context"

	"github.com/google/wire"

	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/service"
)

// DatabaseSet provides the PostgreSQL connection and the rebuild records on it, which the
// rebuild use case and the operations use cases share.
var DatabaseSet = wire.NewSet(provideDB, postgres.NewRebuildStore)

func provideDB(ctx context.Context, cfg service.Config) (*postgres.DB, func(), error) {
	db, err := postgres.Open(ctx, postgres.Config{URL: cfg.DatabaseURL, MaxConns: int32(16 + 2*cfg.OutboxLanes)})
	if err != nil {
		return nil, nil, err
	}
	return db, db.Close, nil
}
