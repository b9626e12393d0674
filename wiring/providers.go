// Package wiring assembles the catalog from its parts with google/wire: provider sets here
// and in the adapter packages, injectors in wire.go, generated code in wire_gen.go. It is the
// only package besides cmd that sees every layer.
package wiring

import (
	"context"
	"log/slog"
	"time"

	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/google/wire"

	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/adapters/metrics"
	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/application"
	"github.com/marketplace/catalog/application/command"
	"github.com/marketplace/catalog/application/decorator"
	"github.com/marketplace/catalog/application/query"
	"github.com/marketplace/catalog/domain/product"
	httpport "github.com/marketplace/catalog/ports/http"
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
	wire.Struct(new(application.Commands), "*"),
	wire.Struct(new(application.Queries), "*"),
	wire.Struct(new(application.Application), "*"),
)

// ObservabilitySet provides the metrics registry.
var ObservabilitySet = wire.NewSet(
	metrics.NewRegistry,
	metrics.NewRelayMetrics,
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

func provideServeProcess(log *slog.Logger, api *httpport.Server, relay *postgres.Relay) ServeProcess {
	return ServeProcess{service.NewProcess(log,
		service.NamedRole{Name: "api", Role: api},
		service.NamedRole{Name: "relay", Role: relay},
	)}
}

func provideRelayProcess(log *slog.Logger, relay *postgres.Relay) RelayProcess {
	return RelayProcess{service.NewProcess(log, service.NamedRole{Name: "relay", Role: relay})}
}
