package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/marketplace/catalog/service"
	"github.com/marketplace/catalog/wiring"
)

func newMigrateCmd(cfg *service.Config) *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Apply the database migrations to DATABASE_URL (idempotent, safe from several processes)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := service.NewLogger(cmd.ErrOrStderr(), cfg.LogFormat, cfg.LogLevel)
			n, err := wiring.Migrate(cmd.Context(), *cfg, log)
			if err != nil {
				return err
			}
			log.Info("database is up to date", "applied_now", n)
			return nil
		},
	}
}

func newServeCmd(cfg *service.Config) *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Run the roles of CATALOG_ROLES in one process (default: REST API, outbox relay, projector and admin port)",
		Long: `Runs the REST API on HTTP_ADDR, the outbox relay to Kafka, the projector and the gRPC
admin port on GRPC_ADDR, or the subset that --roles (CATALOG_ROLES) names, so each set of
replicas of a scaled-out deployment runs its own roles:

  api        the REST API (Postgres and the search alias; never Kafka)
  relay      the outbox relay and the outbox retention job (Postgres and Kafka)
  projector  the projector in consumer group PROJECTOR_GROUP (Kafka and the search cluster)
  admin      the gRPC admin port, the recovery of rebuilds whose runner died, and the
             operational gauges on /metrics (Postgres, Kafka and the search cluster)

HTTP_ADDR always serves /healthz, /readyz and /metrics; without the api role it answers the
product routes with 404. /readyz?role=NAME reports one role's dependencies. With KAFKA_BROKERS empty it starts an embedded Kafka-protocol broker on
EMBEDDED_KAFKA_ADDR that keeps its log under CATALOG_DATA_DIR/kafka; with ELASTICSEARCH_URL
empty the read model is the embedded search engine under CATALOG_DATA_DIR/search. Both
directories are locked by this process. SIGINT or SIGTERM finishes in-flight requests and
relays, then exits.

The admin port can prune indices, roll the alias back, start rebuilds and replay the DLQ:
with the admin role, serve refuses to start (exit 2) when GRPC_ADDR is not a loopback address and neither
ADMIN_TOKEN (or ADMIN_TOKEN_FILE) nor mutual TLS (GRPC_TLS_CLIENT_CA_FILE) protects it.

The admin role also serves the operations console (pipeline, charts, rebuilds, indices, dead
letters, verify) on CONSOLE_ADDR (default 127.0.0.1:8081; empty disables it), behind a login
with ADMIN_TOKEN; serve refuses to start when CONSOLE_ADDR is not a loopback address and
ADMIN_TOKEN is unset.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Refused before anything is started or connected: an admin port that anyone on
			// the network could use is a configuration mistake (exit 2).
			if err := errors.Join(cfg.CheckAdminExposure(), cfg.CheckConsoleExposure()); err != nil && cfg.Runs(service.RoleAdmin) {
				return configError(err)
			}
			log := service.NewLogger(cmd.ErrOrStderr(), cfg.LogFormat, cfg.LogLevel)
			p, cleanup, err := wiring.InitializeServe(cmd.Context(), *cfg, log)
			if err != nil {
				return err
			}
			defer cleanup()
			return runProcess(cmd.Context(), p.Process)
		},
	}
}

func newAPICmd(cfg *service.Config) *cobra.Command {
	return &cobra.Command{
		Use:   "api",
		Short: "Run the REST API and the gRPC admin port only (no relay, no projector)",
		Long: `Runs what 'catalog serve' runs except the outbox relay and the projector: the REST API on
HTTP_ADDR, the gRPC admin port on GRPC_ADDR (rebuilds run here), the operational gauges
(outbox age, projector lag, DLQ) and the recovery of rebuilds whose runner died. Run it with
'catalog relay' and 'catalog project' to scale each role on its own, as the Helm chart does.
The admin port's protection is required as for serve.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cfg.CheckAdminExposure(); err != nil {
				return configError(err)
			}
			log := service.NewLogger(cmd.ErrOrStderr(), cfg.LogFormat, cfg.LogLevel)
			p, cleanup, err := wiring.InitializeAPI(cmd.Context(), onlyRoles(*cfg, service.RoleAPI, service.RoleAdmin), log)
			if err != nil {
				return err
			}
			defer cleanup()
			return runProcess(cmd.Context(), p.Process)
		},
	}
}

func newRelayCmd(cfg *service.Config) *cobra.Command {
	return &cobra.Command{
		Use:   "relay",
		Short: "Run the outbox relay only (the runbook's process_outbox)",
		Long: `Forwards committed outbox events to PRODUCT_EVENTS_TOPIC, one forwarder per outbox lane.
Several relay processes may run at once: each lane is owned by one of them at a time.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := service.NewLogger(cmd.ErrOrStderr(), cfg.LogFormat, cfg.LogLevel)
			p, cleanup, err := wiring.InitializeRelay(cmd.Context(), onlyRoles(*cfg, service.RoleRelay), log)
			if err != nil {
				return err
			}
			defer cleanup()
			return runProcess(cmd.Context(), p.Process)
		},
	}
}

// onlyRoles is cfg for a command that runs fixed roles whatever CATALOG_ROLES says (that
// setting is serve's), so its providers build exactly what the roles need.
func onlyRoles(cfg service.Config, roles ...string) service.Config {
	cfg.Roles = roles
	return cfg
}

func runProcess(ctx context.Context, p *service.Process) error {
	if err := p.Run(ctx); err != nil {
		return fmt.Errorf("stopped: %w", err)
	}
	return nil
}

func newProjectCmd(cfg *service.Config) *cobra.Command {
	return &cobra.Command{
		Use:   "project",
		Short: "Run the projector only (the runbook's run_product_event_consumer)",
		Long: `Consumes PRODUCT_EVENTS_TOPIC in consumer group catalog-projector and writes each event
to the search read model behind SEARCH_ALIAS (documents keyed by product id, the aggregate
version as external version). Transient failures are retried until they clear; permanent ones
go to DLQ_TOPIC with headers saying why. Several projector processes share the partitions.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := service.NewLogger(cmd.ErrOrStderr(), cfg.LogFormat, cfg.LogLevel)
			p, cleanup, err := wiring.InitializeProject(cmd.Context(), onlyRoles(*cfg, service.RoleProjector), log)
			if err != nil {
				return err
			}
			defer cleanup()
			return runProcess(cmd.Context(), p.Process)
		},
	}
}
