package wiring

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/trace"

	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/adapters/metrics"
	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/adapters/tracing"
	"github.com/marketplace/catalog/application"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/ports/console"
	grpcport "github.com/marketplace/catalog/ports/grpc"
	httpport "github.com/marketplace/catalog/ports/http"
	"github.com/marketplace/catalog/ports/projector"
	"github.com/marketplace/catalog/service"
)

// provideHTTPServer is the HTTP listener of `catalog serve` on HTTP_ADDR: the REST API when the
// process runs the api role, otherwise the probes and metrics alone, which every replica's
// orchestrator needs. The API's readiness (/readyz, what a load balancer probes) is the
// database alone: writes go to Postgres and the outbox, so a Kafka outage must not take the
// write API out of rotation. The other roles' readiness is answered per role
// (/readyz?role=relay, ?role=projector, ?role=admin), for the roles the process runs.
func provideHTTPServer(cfg service.Config, app application.Application, db *postgres.DB, kc kafka.Config, rm ReadModel, reg *metrics.Registry, tp trace.TracerProvider, log *slog.Logger) (*httpport.Server, error) {
	hm, err := metrics.NewHTTPMetrics(reg)
	if err != nil {
		return nil, err
	}
	checks := roleChecks(db, kc, rm)
	roles := map[string]map[string]func(context.Context) error{}
	for _, r := range []string{service.RoleRelay, service.RoleProjector, service.RoleAdmin} {
		if c, ok := checks[r]; ok && cfg.Runs(r) {
			roles[r] = c
		}
	}
	// With METRICS_ADDR the metrics have a listener of their own (provideMetricsServer).
	var metricsHandler http.Handler
	if cfg.MetricsAddr == "" {
		metricsHandler = reg.Handler()
	}
	return httpport.NewServer(httpport.Config{Addr: cfg.HTTPAddr, ShutdownTimeout: cfg.ShutdownTimeout,
		TLSCertFile: cfg.HTTPTLSCertFile, TLSKeyFile: cfg.HTTPTLSKeyFile}, app, httpport.Deps{
		Log:        log,
		Ready:      roleChecks(db, kc, rm)[service.RoleAPI],
		RoleReady:  roles,
		ProbesOnly: !cfg.Runs(service.RoleAPI),
		Metrics:    metricsHandler,
		Middleware: tracing.HTTPMiddleware(tp),
		ObserveRequest: func(_ context.Context, rec httpport.RequestRecord) {
			hm.ObserveHTTP(rec.Method, rec.Route, rec.Status, rec.Duration)
		},
	})
}

// roleChecks are the readiness checks of each role, the one place that says what each
// role needs: the API Postgres alone (writes go to Postgres and the outbox, so a Kafka or
// search outage must not take the write API out of rotation); the relay Postgres and Kafka;
// the projector Kafka and the search alias; the admin port Postgres (every admin call reads
// the rebuild records or the pipeline from Postgres; a Kafka or search outage is what
// `catalog status` must still be able to report). Without a search read model there is no
// projector role.
func roleChecks(db *postgres.DB, kc kafka.Config, rm ReadModel) map[string]map[string]func(context.Context) error {
	kafkaPing := func(ctx context.Context) error { return kafka.Ping(ctx, kc) }
	roles := map[string]map[string]func(context.Context) error{
		service.RoleAPI:   {"postgres": db.Ping},
		service.RoleRelay: {"postgres": db.Ping, "kafka": kafkaPing},
		service.RoleAdmin: {"postgres": db.Ping},
	}
	if rm.Target != nil {
		roles[service.RoleProjector] = map[string]func(context.Context) error{
			"kafka": kafkaPing,
			// The projector writes through the alias only: a cluster that answers but has
			// lost the alias stalls it just as much as one that does not answer.
			"search": func(ctx context.Context) error { _, err := rm.Target.AliasTarget(ctx); return err },
		}
	}
	return roles
}

// ServeProcess is `catalog serve`: the roles of CATALOG_ROLES (every role by default) in one
// process.
type ServeProcess struct{ *service.Process }

// rebuildsRole ties the rebuilds this process runs to its lifetime: while it serves it
// recovers (resumes, drains or ends) rebuilds whose runner stopped and a live index left
// behind the event log, on any replica; on SIGTERM the rebuilds it runs stop at once and are
// handed off with their progress and index, for a replica to resume, instead of racing the
// shutdown.
type rebuildsRole struct{ svc *rebuild.Service }

func (r rebuildsRole) Run(ctx context.Context) error {
	r.svc.RunRecovery(ctx)
	r.svc.HandOffAll()
	r.svc.Wait()
	return nil
}

func provideServeProcess(cfg service.Config, log *slog.Logger, http *httpport.Server, relay *postgres.Relay, retention *postgres.OutboxRetention, proj *projector.Projector, admin *grpcport.Server, rebuilds *rebuild.Service, sampler *metrics.OpsSampler, status *metrics.StatusSampler, ms *httpport.MetricsServer, db *postgres.DB, kc kafka.Config, rm ReadModel, con *console.Server) (ServeProcess, error) {
	httpRole := "api"
	if !cfg.Runs(service.RoleAPI) {
		httpRole = "probes"
	}
	roles := []service.NamedRole{{Name: httpRole, Role: listenerRole{http, "HTTP_ADDR", cfg.HTTPAddr}}}
	// Each role runs where it was asked for and has what it needs; a role asked for that
	// could not be built (the projector and the admin port need a read model) is an error,
	// not a replica that silently does less.
	for _, r := range []struct {
		role, name string
		run        service.Role
		built      bool
	}{
		{service.RoleRelay, "relay", relay, relay != nil},
		{service.RoleRelay, "outbox-retention", retention, retention != nil},
		{service.RoleAdmin, "ops-metrics", sampler, sampler != nil},
		{service.RoleAdmin, "status-metrics", status, status != nil && cfg.Runs(service.RoleAdmin)},
		{service.RoleAdmin, "rebuilds", rebuildsRole{rebuilds}, rebuilds != nil},
		{service.RoleProjector, "projector", proj, proj != nil},
		{service.RoleAdmin, "grpc-admin", listenerRole{admin, "GRPC_ADDR", cfg.GRPCAddr}, admin != nil},
	} {
		switch {
		case r.built:
			roles = append(roles, service.NamedRole{Name: r.name, Role: r.run})
		case cfg.Runs(r.role):
			return ServeProcess{}, fmt.Errorf("catalog serve: the %s role needs a search read model (%s): set ELASTICSEARCH_URL", r.role, r.name)
		}
	}
	if con != nil {
		roles = append(roles, service.NamedRole{Name: "console", Role: con})
	}
	if ms != nil && cfg.Runs(service.RoleAPI) {
		ms.ServeReadiness(service.RoleAPI, roleChecks(db, kc, rm)[service.RoleAPI])
	}
	log.Info("catalog serve", "roles", strings.Join(cfg.Roles, ","))
	return ServeProcess{service.NewProcess(log, withMetrics(roles, ms)...)}, nil
}

// adminRoles are what runs beside the API in `catalog serve` and `catalog api`: the
// operational gauges, rebuild recovery and the gRPC admin port.
func adminRoles(cfg service.Config, sampler *metrics.OpsSampler, status *metrics.StatusSampler, rebuilds *rebuild.Service, admin *grpcport.Server) []service.NamedRole {
	roles := []service.NamedRole{{Name: "ops-metrics", Role: sampler}}
	if status != nil {
		roles = append(roles, service.NamedRole{Name: "status-metrics", Role: status})
	}
	if rebuilds != nil {
		roles = append(roles, service.NamedRole{Name: "rebuilds", Role: rebuildsRole{rebuilds}})
	}
	if admin != nil {
		roles = append(roles, service.NamedRole{Name: "grpc-admin", Role: listenerRole{admin, "GRPC_ADDR", cfg.GRPCAddr}})
	}
	return roles
}

// APIProcess is `catalog api`: the REST API with the admin port, the operational gauges and
// rebuild recovery, without relay or projector, for deployments that scale each role apart.
type APIProcess struct{ *service.Process }

func provideAPIProcess(cfg service.Config, log *slog.Logger, api *httpport.Server, admin *grpcport.Server, rebuilds *rebuild.Service, sampler *metrics.OpsSampler, status *metrics.StatusSampler, ms *httpport.MetricsServer, db *postgres.DB, kc kafka.Config, rm ReadModel, con *console.Server) APIProcess {
	if ms != nil {
		ms.ServeReadiness(service.RoleAPI, roleChecks(db, kc, rm)[service.RoleAPI])
	}
	roles := append([]service.NamedRole{{Name: "api", Role: listenerRole{api, "HTTP_ADDR", cfg.HTTPAddr}}}, adminRoles(cfg, sampler, status, rebuilds, admin)...)
	if con != nil {
		roles = append(roles, service.NamedRole{Name: "console", Role: con})
	}
	return APIProcess{service.NewProcess(log, withMetrics(roles, ms)...)}
}

// withMetrics adds the METRICS_ADDR listener to a process's roles when there is one.
func withMetrics(roles []service.NamedRole, ms *httpport.MetricsServer) []service.NamedRole {
	if ms == nil {
		return roles
	}
	return append(roles, service.NamedRole{Name: "metrics", Role: listenerRole{ms, "METRICS_ADDR", ms.Addr()}})
}
