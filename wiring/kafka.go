package wiring

import (
	"log/slog"

	"github.com/google/wire"

	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/service"
)

// KafkaSet provides the Kafka cluster (starting the embedded broker if none is configured)
// and the relay's pipelined producer.
var KafkaSet = wire.NewSet(provideKafka, provideKafkaPublisher)

// provideKafkaPublisher is the relay's producer, with the cluster's TLS and SASL settings: it
// tells the outbox subscriber that an event was enqueued (postgres.Dispatched), so that a lane
// hands over its next event while this one is on its way. Its default buffer (100,000
// records) is far above what the lanes can have in flight (128 each), so a stuck partition
// cannot block the others' sends. nil in a process without the relay role.
func provideKafkaPublisher(kc kafka.Config, cfg service.Config, log *slog.Logger) (*kafka.Publisher, func(), error) {
	if !cfg.Runs(service.RoleRelay) {
		return nil, func() {}, nil
	}
	pub, err := kafka.NewPipelinedPublisher(kc, kafka.PublisherConfig{
		Enqueued:     postgres.Dispatched,
		CloseTimeout: cfg.ShutdownTimeout,
	}, log)
	if err != nil {
		return nil, nil, err
	}
	return pub, func() { _ = pub.Close() }, nil
}
