package wiring

import (
	"context"
	"errors"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/trace"

	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/adapters/metrics"
	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/adapters/tracing"
	"github.com/marketplace/catalog/application"
	"github.com/marketplace/catalog/application/ops"
	httpport "github.com/marketplace/catalog/ports/http"
	"github.com/marketplace/catalog/ports/projector"
	"github.com/marketplace/catalog/service"
)

func provideProjector(cfg service.Config, kc kafka.Config, app application.Application, pm *metrics.ProjectorMetrics, reg *metrics.Registry, tp trace.TracerProvider, log *slog.Logger) (*projector.Projector, func(), error) {
	if app.Commands.ProjectProductEvent == nil || !cfg.Runs(service.RoleProjector) {
		return nil, func() {}, nil
	}
	// The concurrent subscriber keeps many messages of a partition in flight (acks may come
	// in any order; only the contiguous acked offset is committed): with one message per
	// partition in flight, as watermill-kafka's subscriber does, the bulk writes could never
	// batch more documents than there are partitions. A short session timeout hands a killed
	// replica's partitions to the others within seconds (static membership would not: it
	// only spares a replica that comes back within the timeout a rebalance).
	sub, err := kafka.NewConcurrentSubscriber(kc, kafka.ConcurrentSubscriberConfig{
		ConsumerGroup: cfg.ProjectorGroup, FromOldest: true, SessionTimeout: cfg.ProjectorSessionTimeout}, log)
	if err != nil {
		return nil, nil, err
	}
	// The DLQ publisher keeps each dead letter's key and cuts a payload too large for the
	// topic, so a dead letter always reaches the DLQ and its partition moves on.
	dlq, err := kafka.NewDLQPublisher(kc, kafka.DLQPublisherConfig{}, log)
	if err != nil {
		_ = sub.Close()
		return nil, nil, err
	}
	classes := ops.DeadLetterClasses()
	names := make([]string, len(classes))
	for i, c := range classes {
		names[i] = string(c)
	}
	pm.StartDeadLetterClasses(names...)
	pm.WatchWaiting(sub.Waiting)
	p, err := projector.New(projector.Config{Topic: cfg.ProductEventsTopic, DLQTopic: cfg.DLQTopic, CloseTimeout: cfg.ShutdownTimeout,
		RouterDecorator: reg.InstrumentRouter,
		Position:        kafkaPosition,
		Middlewares: []message.HandlerMiddleware{tracing.ConsumerMiddleware(tracing.ConsumerConfig{
			TracerProvider: tp, Topic: cfg.ProductEventsTopic, ConsumerGroup: cfg.ProjectorGroup, Position: kafkaPosition,
			Classify: projector.Classify,
		})},
	}, sub, dlq, app.Commands.ProjectProductEvent, pm, log)
	if err != nil {
		_ = sub.Close()
		_ = dlq.Close()
		return nil, nil, err
	}
	return p, func() { _ = sub.Close(); _ = dlq.Close() }, nil
}

// kafkaPosition reads the partition and offset the concurrent subscriber keeps in a
// message's context.
func kafkaPosition(ctx context.Context) (int32, int64, bool) {
	p, ok := kafka.PartitionFromContext(ctx)
	if !ok {
		return 0, 0, false
	}
	o, ok := kafka.OffsetFromContext(ctx)
	return p, o, ok
}

// ProjectProcess is `catalog project`: the projector alone.
type ProjectProcess struct{ *service.Process }

func provideProjectProcess(log *slog.Logger, proj *projector.Projector, ms *httpport.MetricsServer, db *postgres.DB, kc kafka.Config, rm ReadModel) (ProjectProcess, error) {
	if proj == nil {
		return ProjectProcess{}, errors.New("catalog project needs a search read model: set ELASTICSEARCH_URL")
	}
	if ms != nil {
		ms.ServeReadiness(service.RoleProjector, roleChecks(db, kc, rm)[service.RoleProjector])
	}
	return ProjectProcess{service.NewProcess(log, withMetrics([]service.NamedRole{{Name: "projector", Role: proj}}, ms)...)}, nil
}
