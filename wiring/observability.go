package wiring

import (
	"context"
	"log/slog"
	"time"

	"github.com/google/wire"
	"go.opentelemetry.io/otel/trace"

	"github.com/marketplace/catalog/adapters/metrics"
	"github.com/marketplace/catalog/adapters/tracing"
	"github.com/marketplace/catalog/application/decorator"
	"github.com/marketplace/catalog/service"
)

// ObservabilitySet provides the metrics registry and the tracer provider.
var ObservabilitySet = wire.NewSet(
	provideTracing,
	provideRegistry,
	metrics.NewRelayMetrics,
	metrics.NewProjectorMetrics,
	metrics.NewReadYourWritesMetrics,
	wire.Bind(new(decorator.MetricsClient), new(*metrics.Registry)),
)

// provideRegistry is the process's metrics registry, with catalog_build_info.
func provideRegistry() (*metrics.Registry, error) {
	reg, err := metrics.NewRegistry()
	if err != nil {
		return nil, err
	}
	b := service.Build()
	if err := reg.RegisterBuildInfo(metrics.Build{Version: b.Version, Commit: b.Commit, GoVersion: b.GoVersion}); err != nil {
		return nil, err
	}
	return reg, nil
}

// provideTracing sets OpenTelemetry up from the OTEL_* environment (a no-op provider when
// unconfigured); the cleanup flushes buffered spans after every role has stopped.
func provideTracing(ctx context.Context, log *slog.Logger) (trace.TracerProvider, func(), error) {
	tp, shutdown, err := tracing.Setup(ctx, "catalog", tracing.WithLogger(log))
	if err != nil {
		return nil, nil, err
	}
	return tp, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			log.Warn("flushing traces", "err", err)
		}
	}, nil
}
