package wiring

import (
	"log/slog"
	"time"

	"github.com/google/wire"
	"google.golang.org/grpc/codes"

	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/adapters/metrics"
	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/application/rebuild"
	grpcport "github.com/marketplace/catalog/ports/grpc"
	"github.com/marketplace/catalog/service"
)

// RebuildSet provides the rebuild use case and the gRPC admin port that drives it.
var RebuildSet = wire.NewSet(provideRebuildService, provideGRPCServer)

// provideRebuildService is the rebuild use case of the admin role; nil without it or without a
// read model.
func provideRebuildService(cfg service.Config, db *postgres.DB, store *postgres.RebuildStore, kc kafka.Config, rm ReadModel, reg *metrics.Registry, log *slog.Logger) (*rebuild.Service, func(), error) {
	if rm.Target == nil || !cfg.Runs(service.RoleAdmin) {
		return nil, func() {}, nil
	}
	if _, err := metrics.NewRebuildMetrics(reg, store); err != nil {
		return nil, nil, err
	}
	source, err := postgres.NewProductSource(db)
	if err != nil {
		return nil, nil, err
	}
	events, err := kafka.NewEventLog(kc, cfg.ProductEventsTopic, log)
	if err != nil {
		return nil, nil, err
	}
	svc, err := rebuild.NewService(rebuild.Config{Settle: cfg.SearchRefreshInterval, ProjectorGroup: cfg.ProjectorGroup},
		store, source, events, rm.Target, log.With("component", "rebuild"))
	if err != nil {
		events.Close()
		return nil, nil, err
	}
	// Rebuilds whose runner died, and a live index left behind the event log, are recovered
	// by the rebuilds role (RunRecovery) as soon as the process serves, and from then on
	// whenever one appears: not here, where a long catch-up would hold up the start.
	cleanup := func() {
		// Shutdown hands a running rebuild off: it keeps its progress and its index, and the
		// next replica that holds the lock (or this one after its restart) resumes it.
		svc.HandOffAll()
		svc.Wait()
		events.Close()
	}
	return svc, cleanup, nil
}

func provideGRPCServer(cfg service.Config, svc *rebuild.Service, operations *grpcport.Operations, reg *metrics.Registry, log *slog.Logger) (*grpcport.Server, error) {
	if svc == nil {
		return nil, nil
	}
	gm, err := metrics.NewGRPCMetrics(reg)
	if err != nil {
		return nil, err
	}
	auth, opts, err := adminSecurity(cfg, log.With("component", "grpc"))
	if err != nil {
		return nil, err
	}
	deps := grpcport.Deps{
		Log:           log.With("component", "grpc"),
		Observe:       func(method string, code codes.Code, d time.Duration) { gm.Observe(method, code.String(), d) },
		Auth:          auth,
		ServerOptions: opts,
	}
	if operations != nil {
		deps.Register = append(deps.Register, operations.Register)
	}
	return grpcport.NewServer(grpcport.Config{Addr: cfg.GRPCAddr, ShutdownTimeout: cfg.ShutdownTimeout}, svc, deps)
}
