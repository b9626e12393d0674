// Package wiring assembles the catalog from its parts with google/wire: provider sets here
// and in the adapter packages, injectors in wire.go, generated code in wire_gen.go. It is the
// only package besides cmd that sees every layer.
package wiring

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/google/wire"

	"github.com/marketplace/catalog/adapters/elasticsearch"
	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/adapters/metrics"
	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/application"
	"github.com/marketplace/catalog/application/command"
	"github.com/marketplace/catalog/application/decorator"
	"github.com/marketplace/catalog/application/query"
	"github.com/marketplace/catalog/domain/product"
	httpport "github.com/marketplace/catalog/ports/http"
	"github.com/marketplace/catalog/ports/projector"
	"github.com/marketplace/catalog/service"
)

// Brokers are the Kafka bootstrap brokers the process talks to: the configured cluster, or
// the embedded broker this process started.
type Brokers []string

// DatabaseSet provides the PostgreSQL connection.
var DatabaseSet = wire.NewSet(provideDB)

// KafkaSet provides the brokers (starting the embedded one if none is configured) and the
// relay's producer.
var KafkaSet = wire.NewSet(provideBrokers, provideKafkaPublisher)

// ApplicationSet provides the use cases over the Postgres repository.
var ApplicationSet = wire.NewSet(
	provideProductRepository,
	wire.Bind(new(product.Repository), new(*postgres.ProductRepository)),
	wire.Bind(new(query.ProductByIDReadModel), new(*postgres.ProductRepository)),
	provideClock,
	provideDecoratorDeps,
	command.NewCreateProductHandler,
	command.NewUpdateProductHandler,
	command.NewDeleteProductHandler,
	query.NewProductByIDHandler,
	provideProjectHandler,
	provideSearchHandler,
	wire.Struct(new(application.Commands), "*"),
	wire.Struct(new(application.Queries), "*"),
	wire.Struct(new(application.Application), "*"),
)

// ObservabilitySet provides the metrics registry.
var ObservabilitySet = wire.NewSet(
	metrics.NewRegistry,
	metrics.NewRelayMetrics,
	metrics.NewProjectorMetrics,
	wire.Bind(new(decorator.MetricsClient), new(*metrics.Registry)),
)

func provideDB(ctx context.Context, cfg service.Config) (*postgres.DB, func(), error) {
	db, err := postgres.Open(ctx, postgres.Config{URL: cfg.DatabaseURL, MaxConns: int32(16 + 2*cfg.OutboxLanes)})
	if err != nil {
		return nil, nil, err
	}
	return db, db.Close, nil
}

func provideBrokers(ctx context.Context, cfg service.Config, log *slog.Logger) (Brokers, func(), error) {
	topics := []kafka.TopicSpec{
		{Name: cfg.ProductEventsTopic, Partitions: int32(cfg.TopicPartitions)},
		{Name: cfg.DLQTopic, Partitions: int32(cfg.TopicPartitions)},
	}
	if len(cfg.KafkaBrokers) == 0 {
		b, err := kafka.StartEmbeddedBroker(cfg.EmbeddedKafkaAddr, log, topics...)
		if err != nil {
			return nil, nil, err
		}
		return Brokers{b.Addr()}, b.Close, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, cfg.KafkaBrokers, topics...); err != nil {
		return nil, nil, err
	}
	return Brokers(cfg.KafkaBrokers), func() {}, nil
}

func provideKafkaPublisher(brokers Brokers, log *slog.Logger) (*wkafka.Publisher, func(), error) {
	pub, err := kafka.NewPublisher(kafka.Config{Brokers: brokers}, log)
	if err != nil {
		return nil, nil, err
	}
	return pub, func() { _ = pub.Close() }, nil
}

func provideProductRepository(db *postgres.DB, cfg service.Config, log *slog.Logger) (*postgres.ProductRepository, error) {
	return postgres.NewProductRepository(db, postgres.ProductRepositoryConfig{Topic: cfg.ProductEventsTopic, Lanes: cfg.OutboxLanes}, log)
}

// ReadModel is the search read model the process uses, or the zero value when none is
// configured (ELASTICSEARCH_URL empty): the API then answers searches with 503 and no
// projector runs.
type ReadModel struct {
	// Projection writes documents; nil without a read model.
	Projection command.ProductProjection
	// Search reads documents; nil without a read model.
	Search query.ProductSearchReadModel
	// Indices manages the versioned indices behind the alias; nil without a read model.
	Indices *elasticsearch.Indices
}

// ReadModelSet provides the search read model.
var ReadModelSet = wire.NewSet(provideReadModel)

func provideReadModel(ctx context.Context, cfg service.Config, log *slog.Logger) (ReadModel, func(), error) {
	if cfg.ElasticsearchURL == "" {
		log.Warn("no search read model: ELASTICSEARCH_URL is empty; searches answer 503 and no projector runs")
		return ReadModel{}, func() {}, nil
	}
	ecfg := elasticsearch.Config{URL: cfg.ElasticsearchURL, Compat: cfg.ElasticsearchCompat, Alias: cfg.SearchAlias, RefreshInterval: cfg.SearchRefreshInterval}
	client, err := elasticsearch.NewClient(ecfg)
	if err != nil {
		return ReadModel{}, nil, err
	}
	indices, err := elasticsearch.NewIndices(client, ecfg)
	if err != nil {
		return ReadModel{}, nil, err
	}
	index, created, err := indices.EnsureAlias(ctx)
	if err != nil {
		return ReadModel{}, nil, fmt.Errorf("search read model at %s: %w", cfg.ElasticsearchURL, err)
	}
	log.Info("search read model", "alias", cfg.SearchAlias, "index", index, "created", created)
	projection, err := elasticsearch.NewProjection(client, ecfg)
	if err != nil {
		return ReadModel{}, nil, err
	}
	search, err := elasticsearch.NewSearch(client, ecfg)
	if err != nil {
		return ReadModel{}, nil, err
	}
	cleanup := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := projection.Close(ctx); err != nil {
			log.Error("closing the bulk indexer", "err", err)
		}
	}
	return ReadModel{Projection: projection, Search: search, Indices: indices}, cleanup, nil
}

func provideProjectHandler(rm ReadModel, deps decorator.Deps) (command.ProjectProductEventHandler, error) {
	if rm.Projection == nil {
		return nil, nil
	}
	return command.NewProjectProductEventHandler(rm.Projection, deps)
}

func provideSearchHandler(rm ReadModel, deps decorator.Deps) (query.SearchProductsHandler, error) {
	if rm.Search == nil {
		return nil, nil
	}
	return query.NewSearchProductsHandler(rm.Search, deps)
}

func provideProjector(cfg service.Config, brokers Brokers, dlq *wkafka.Publisher, app application.Application, pm *metrics.ProjectorMetrics, log *slog.Logger) (*projector.Projector, func(), error) {
	if app.Commands.ProjectProductEvent == nil {
		return nil, func() {}, nil
	}
	sub, err := kafka.NewSubscriber(kafka.Config{Brokers: brokers}, kafka.SubscriberConfig{ConsumerGroup: cfg.ProjectorGroup, FromOldest: true}, log)
	if err != nil {
		return nil, nil, err
	}
	p, err := projector.New(projector.Config{Topic: cfg.ProductEventsTopic, DLQTopic: cfg.DLQTopic, CloseTimeout: cfg.ShutdownTimeout},
		sub, dlq, app.Commands.ProjectProductEvent, pm, log)
	if err != nil {
		_ = sub.Close()
		return nil, nil, err
	}
	return p, func() { _ = sub.Close() }, nil
}

func provideClock() func() time.Time { return time.Now }

func provideDecoratorDeps(log *slog.Logger, m decorator.MetricsClient) decorator.Deps {
	return decorator.Deps{Log: log, Metrics: m}
}

func provideRelay(db *postgres.DB, pub *wkafka.Publisher, rm *metrics.RelayMetrics, cfg service.Config, log *slog.Logger) (*postgres.Relay, error) {
	return postgres.NewRelay(db, rm.WrapPublisher(pub), postgres.RelayConfig{
		Lanes:        cfg.OutboxLanes,
		PollInterval: cfg.RelayPollInterval,
		BatchSize:    cfg.RelayBatchSize,
		CloseTimeout: cfg.ShutdownTimeout,
	}, log)
}

func provideHTTPServer(cfg service.Config, app application.Application, db *postgres.DB, brokers Brokers, reg *metrics.Registry, log *slog.Logger) (*httpport.Server, error) {
	return httpport.NewServer(httpport.Config{Addr: cfg.HTTPAddr, ShutdownTimeout: cfg.ShutdownTimeout}, app, httpport.Deps{
		Log: log,
		Ready: map[string]func(context.Context) error{
			"postgres": db.Ping,
			"kafka":    func(ctx context.Context) error { return kafka.Ping(ctx, brokers) },
		},
		Metrics: reg.Handler(),
	})
}

// ServeProcess is `catalog serve`: every role in one process.
type ServeProcess struct{ *service.Process }

// RelayProcess is `catalog relay`: the outbox relay alone.
type RelayProcess struct{ *service.Process }

func provideServeProcess(log *slog.Logger, api *httpport.Server, relay *postgres.Relay, proj *projector.Projector) ServeProcess {
	roles := []service.NamedRole{{Name: "api", Role: api}, {Name: "relay", Role: relay}}
	if proj != nil {
		roles = append(roles, service.NamedRole{Name: "projector", Role: proj})
	}
	return ServeProcess{service.NewProcess(log, roles...)}
}

// ProjectProcess is `catalog project`: the projector alone.
type ProjectProcess struct{ *service.Process }

func provideProjectProcess(log *slog.Logger, proj *projector.Projector) (ProjectProcess, error) {
	if proj == nil {
		return ProjectProcess{}, errors.New("catalog project needs a search read model: set ELASTICSEARCH_URL")
	}
	return ProjectProcess{service.NewProcess(log, service.NamedRole{Name: "projector", Role: proj})}, nil
}

func provideRelayProcess(log *slog.Logger, relay *postgres.Relay) RelayProcess {
	return RelayProcess{service.NewProcess(log, service.NamedRole{Name: "relay", Role: relay})}
}
