package wiring

import (
	"context"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/wire"

	"github.com/marketplace/catalog/adapters/metrics"
	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/adapters/tracing"
	"github.com/marketplace/catalog/api/envelope"
	"github.com/marketplace/catalog/application"
	"github.com/marketplace/catalog/application/command"
	"github.com/marketplace/catalog/application/decorator"
	"github.com/marketplace/catalog/application/query"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/service"
)

// ApplicationSet provides the use cases over the Postgres repository.
var ApplicationSet = wire.NewSet(
	provideProductRepository,
	wire.Bind(new(product.Repository), new(*postgres.ProductRepository)),
	provideClock,
	provideDecoratorDeps,
	command.NewCreateProductHandler,
	command.NewUpdateProductHandler,
	command.NewDeleteProductHandler,
	provideProductByIDHandler,
	provideProjectHandler,
	provideSearchHandler,
	wire.Struct(new(application.Commands), "*"),
	wire.Struct(new(application.Queries), "*"),
	wire.Struct(new(application.Application), "*"),
)

func provideProductRepository(db *postgres.DB, cfg service.Config, log *slog.Logger) (*postgres.ProductRepository, error) {
	decorate := tracing.InjectIntoMessage
	if cfg.CloudEventsSource != "" {
		cloudEvents, err := envelope.CloudEvents(cfg.CloudEventsSource)
		if err != nil {
			return nil, err
		}
		decorate = func(ctx context.Context, msg *message.Message) {
			tracing.InjectIntoMessage(ctx, msg)
			cloudEvents(msg)
		}
	}
	return postgres.NewProductRepository(db, postgres.ProductRepositoryConfig{Topic: cfg.ProductEventsTopic, Lanes: cfg.OutboxLanes, Decorate: decorate}, log)
}

func provideProjectHandler(rm ReadModel, deps decorator.Deps) (command.ProjectProductEventHandler, error) {
	if rm.Projection == nil {
		return nil, nil
	}
	return command.NewProjectProductEventHandler(rm.Projection, deps)
}

func provideSearchHandler(rm ReadModel, obs *metrics.ReadYourWritesMetrics, deps decorator.Deps) (query.SearchProductsHandler, error) {
	if rm.Search == nil {
		return nil, nil
	}
	waiter, err := query.NewVersionWaiter(rm.Versions, query.VersionWaiterConfig{ReadModel: "search", Observer: obs})
	if err != nil {
		return nil, err
	}
	return query.NewSearchProductsHandler(rm.Search, waiter, deps)
}

// provideProductByIDHandler reads products by id from the system of record; reads that wait
// for versions ask the same table.
func provideProductByIDHandler(repo *postgres.ProductRepository, obs *metrics.ReadYourWritesMetrics, deps decorator.Deps) (query.ProductByIDHandler, error) {
	waiter, err := query.NewVersionWaiter(repo, query.VersionWaiterConfig{ReadModel: "products", Observer: obs})
	if err != nil {
		return nil, err
	}
	return query.NewProductByIDHandler(repo, waiter, deps)
}

func provideClock() func() time.Time { return time.Now }

func provideDecoratorDeps(log *slog.Logger, m decorator.MetricsClient) decorator.Deps {
	return decorator.Deps{Log: log, Metrics: m}
}
