package wiring

import (
	"context"
	"log/slog"

	"github.com/google/wire"

	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/adapters/metrics"
	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/application/decorator"
	"github.com/marketplace/catalog/application/ops"
	grpcport "github.com/marketplace/catalog/ports/grpc"
	"github.com/marketplace/catalog/service"
)

// OpsSet provides the operator's use cases (catalog status, catalog verify), their gRPC
// service on the admin port, and the sampler of the operational gauges on /metrics.
var OpsSet = wire.NewSet(provideOpsStats, provideKafkaOpsStats, provideDLQAudit, provideCommitProgress, provideOpsService, provideStatusSampler, provideOperations, provideOpsSampler)

func provideDLQAudit(db *postgres.DB) (*postgres.DLQAudit, error) { return postgres.NewDLQAudit(db) }

// provideCommitProgress is the one record of the projector group's commits that the status
// and the metrics sampler share: the sampler looks every few seconds, so a status call knows
// how long a partition has stood still even when nobody asked before.
func provideCommitProgress() *ops.CommitProgress { return ops.NewCommitProgress(nil) }

func provideOpsStats(db *postgres.DB, cfg service.Config) (*postgres.OpsStats, error) {
	return postgres.NewOpsStats(db, postgres.OpsStatsConfig{Lanes: cfg.OutboxLanes})
}

// provideKafkaOpsStats reads lag and replication for the admin role's status and gauges;
// nil without the admin role.
func provideKafkaOpsStats(cfg service.Config, kc kafka.Config) (*kafka.OpsStats, func(), error) {
	if !cfg.Runs(service.RoleAdmin) {
		return nil, func() {}, nil
	}
	s, err := kafka.NewOpsStats(kc)
	if err != nil {
		return nil, nil, err
	}
	return s, s.Close, nil
}

func provideOpsService(cfg service.Config, store *postgres.RebuildStore, pg *postgres.OpsStats, ks *kafka.OpsStats, audit *postgres.DLQAudit, progress *ops.CommitProgress, rm ReadModel, m decorator.MetricsClient, log *slog.Logger) (*ops.Service, error) {
	if rm.Target == nil || ks == nil {
		return nil, nil
	}
	return ops.NewService(ops.Config{Alias: cfg.SearchAlias, EventsTopic: cfg.ProductEventsTopic, DLQTopic: cfg.DLQTopic, ProjectorGroup: cfg.ProjectorGroup},
		ops.Deps{Database: pg, Products: pg, Events: ks, Replication: ks, Search: rm.Cluster, ReadModel: rm.Target, Rebuilds: store, DeadLetters: audit,
			Progress: progress, Log: log.With("component", "ops"), Metrics: m})
}

func provideOperations(svc *ops.Service, sampler *metrics.StatusSampler) (*grpcport.Operations, error) {
	if svc == nil {
		return nil, nil
	}
	return grpcport.NewOperations(verifyRecorder{svc, sampler})
}

// provideStatusSampler exports the status findings and the last verify's differences; nil
// without a read model (there is no status service then).
func provideStatusSampler(reg *metrics.Registry, svc *ops.Service, log *slog.Logger) (*metrics.StatusSampler, error) {
	if svc == nil {
		return nil, nil
	}
	return metrics.NewStatusSampler(reg, svc, 0, log.With("component", "status-sampler"))
}

// verifyRecorder hands every finished verify's report to the metrics, so an alert sees
// what an operator's `catalog verify` found.
type verifyRecorder struct {
	*ops.Service
	sampler *metrics.StatusSampler
}

// Verify runs the verify and records its report.
func (v verifyRecorder) Verify(ctx context.Context, req ops.VerifyRequest, progress func(ops.VerifyProgress)) (ops.VerifyReport, error) {
	rep, err := v.Service.Verify(ctx, req, progress)
	if err == nil {
		v.sampler.ObserveVerify(rep)
	}
	return rep, err
}

// provideOpsSampler samples the pipeline's gauges (outbox, lag, dead letters) for /metrics. It
// belongs to the admin role: the gauges describe the whole pipeline, so one set of replicas
// samples them instead of every replica querying Postgres and Kafka for the same numbers.
func provideOpsSampler(cfg service.Config, reg *metrics.Registry, pg *postgres.OpsStats, ks *kafka.OpsStats, audit *postgres.DLQAudit, progress *ops.CommitProgress, rm ReadModel, log *slog.Logger) (*metrics.OpsSampler, error) {
	if ks == nil {
		return nil, nil
	}
	return metrics.NewOpsSampler(reg, metrics.OpsSources{Outbox: pg, Events: ks, DeadLetters: audit, Progress: progress, Replication: ks, Search: rm.Cluster}, metrics.OpsSamplerConfig{ProjectorGroup: cfg.ProjectorGroup, EventsTopic: cfg.ProductEventsTopic,
		DLQTopic: cfg.DLQTopic}, log.With("component", "ops-sampler"))
}
