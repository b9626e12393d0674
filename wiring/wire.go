//go:build wireinject

package wiring

import (
	"context"
	"log/slog"

	"github.com/google/wire"

	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/service"
)

// InitializeServe builds `catalog serve`.
func InitializeServe(ctx context.Context, cfg service.Config, log *slog.Logger) (ServeProcess, func(), error) {
	wire.Build(DatabaseSet, KafkaSet, ObservabilitySet, ReadModelSet, ApplicationSet, RebuildSet, OpsSet, ConsoleSet, provideRelay, provideRetention, provideHTTPServer, provideProjector, provideMetricsServer, provideServeProcess)
	return ServeProcess{}, nil, nil
}

// InitializeAPI builds `catalog api`.
func InitializeAPI(ctx context.Context, cfg service.Config, log *slog.Logger) (APIProcess, func(), error) {
	wire.Build(DatabaseSet, KafkaSet, ObservabilitySet, ReadModelSet, ApplicationSet, RebuildSet, OpsSet, ConsoleSet, provideHTTPServer, provideMetricsServer, provideAPIProcess)
	return APIProcess{}, nil, nil
}

// InitializeRelay builds `catalog relay`.
func InitializeRelay(ctx context.Context, cfg service.Config, log *slog.Logger) (RelayProcess, func(), error) {
	wire.Build(DatabaseSet, KafkaSet, ObservabilitySet, provideRelay, provideRetention, provideMetricsServer, provideRelayProcess)
	return RelayProcess{}, nil, nil
}

// InitializeDatabase opens the database, for `catalog migrate`.
func InitializeDatabase(ctx context.Context, cfg service.Config) (*postgres.DB, func(), error) {
	wire.Build(DatabaseSet)
	return nil, nil, nil
}

// InitializeProject builds `catalog project`.
func InitializeProject(ctx context.Context, cfg service.Config, log *slog.Logger) (ProjectProcess, func(), error) {
	wire.Build(DatabaseSet, KafkaSet, ObservabilitySet, ReadModelSet, ApplicationSet, provideProjector, provideMetricsServer, provideProjectProcess)
	return ProjectProcess{}, nil, nil
}

// InitializeDLQ builds the DLQ use cases of a `catalog dlq` command: the reader of DLQ_TOPIC,
// and the replay publisher and the audit log when tool asks for them.
func InitializeDLQ(ctx context.Context, cfg service.Config, log *slog.Logger, tool DLQTool) (*ops.DLQService, func(), error) {
	wire.Build(CLISet)
	return nil, nil, nil
}

// InitializeDLQAuditLog opens the audit log of `catalog dlq audit`, which needs no Kafka;
// tool.Audit must be set.
func InitializeDLQAuditLog(ctx context.Context, cfg service.Config, tool DLQTool) (*postgres.DLQAudit, func(), error) {
	wire.Build(provideCLIAuditLog)
	return nil, nil, nil
}
