package wiring

import (
	"context"

	"github.com/google/wire"

	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/service"
)

// DatabaseSet provides the PostgreSQL connection.
var DatabaseSet = wire.NewSet(provideDB)

func provideDB(ctx context.Context, cfg service.Config) (*postgres.DB, func(), error) {
	db, err := postgres.Open(ctx, postgres.Config{URL: cfg.DatabaseURL, MaxConns: int32(16 + 2*cfg.OutboxLanes)})
	if err != nil {
		return nil, nil, err
	}
	return db, db.Close, nil
}
