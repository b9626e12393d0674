package wiring

import (
	"log/slog"

	"go.opentelemetry.io/otel/trace"

	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/adapters/metrics"
	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/adapters/tracing"
	httpport "github.com/marketplace/catalog/ports/http"
	"github.com/marketplace/catalog/service"
)

// provideRelay is the outbox relay; nil in a process without the relay role.
func provideRelay(db *postgres.DB, pub *kafka.Publisher, rm *metrics.RelayMetrics, reg *metrics.Registry, tp trace.TracerProvider, cfg service.Config, log *slog.Logger) (*postgres.Relay, error) {
	if pub == nil {
		return nil, nil
	}
	return postgres.NewRelay(db, rm.WrapPublisher(tracing.WrapPublisher(tp, pub)), postgres.RelayConfig{
		Lanes:           cfg.OutboxLanes,
		PollInterval:    cfg.RelayPollInterval,
		BatchSize:       cfg.RelayBatchSize,
		CloseTimeout:    cfg.ShutdownTimeout,
		RouterDecorator: reg.InstrumentRouter,
	}, log)
}

// RelayProcess is `catalog relay`: the outbox relay alone.
type RelayProcess struct{ *service.Process }

// provideRetention is the relay role's outbox hygiene job; nil without the relay role.
func provideRetention(cfg service.Config, db *postgres.DB, reg *metrics.Registry, log *slog.Logger) (*postgres.OutboxRetention, error) {
	if !cfg.Runs(service.RoleRelay) {
		return nil, nil
	}
	m, err := metrics.NewRetentionMetrics(reg)
	if err != nil {
		return nil, err
	}
	return postgres.NewOutboxRetention(db, postgres.OutboxRetentionConfig{Retention: cfg.OutboxRetention}, retentionObserver{m}, log)
}

// retentionObserver adapts the retention metrics to the job's observer; the table size is
// sampled by the operations sampler instead.
type retentionObserver struct{ m *metrics.RetentionMetrics }

func (o retentionObserver) OutboxRowsDeleted(n int64) { o.m.OutboxRowsDeleted(n) }

func (o retentionObserver) OutboxTableSize(postgres.OutboxTableStats) {}

func provideRelayProcess(log *slog.Logger, relay *postgres.Relay, retention *postgres.OutboxRetention, ms *httpport.MetricsServer, db *postgres.DB, kc kafka.Config) RelayProcess {
	if ms != nil {
		ms.ServeReadiness(service.RoleRelay, roleChecks(db, kc, ReadModel{})[service.RoleRelay])
	}
	return RelayProcess{service.NewProcess(log, withMetrics([]service.NamedRole{{Name: "relay", Role: relay},
		{Name: "outbox-retention", Role: retention}}, ms)...)}
}
