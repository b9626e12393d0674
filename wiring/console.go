package wiring

import (
	"log/slog"

	"github.com/google/wire"

	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/application/decorator"
	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/ports/adminauth"
	"github.com/marketplace/catalog/ports/console"
	"github.com/marketplace/catalog/service"
)

// ConsoleSet provides the operations console of `catalog serve`.
var ConsoleSet = wire.NewSet(provideConsole)

// provideConsole is the console on CONSOLE_ADDR over the same use cases as the admin port
// and the CLI, nil when CONSOLE_ADDR is empty or the process has no read model. Its dead
// letter use cases read DLQ_TOPIC and replay to PRODUCT_EVENTS_TOPIC, with the audit log in
// the database, as `catalog dlq` does.
func provideConsole(cfg service.Config, opsSvc *ops.Service, rebuilds *rebuild.Service, kc kafka.Config, audit *postgres.DLQAudit, m decorator.MetricsClient, log *slog.Logger) (*console.Server, func(), error) {
	if cfg.ConsoleAddr == "" || opsSvc == nil || rebuilds == nil || !cfg.Runs(service.RoleAdmin) {
		return nil, func() {}, nil
	}
	if err := cfg.CheckConsoleExposure(); err != nil {
		return nil, nil, err
	}
	clog := log.With("component", "console")
	reader, err := kafka.NewDLQReader(kc, cfg.DLQTopic, clog)
	if err != nil {
		return nil, nil, err
	}
	pub, err := kafka.NewReplayPublisher(kc, cfg.ProductEventsTopic)
	if err != nil {
		reader.Close()
		return nil, nil, err
	}
	cleanup := func() { pub.Close(); reader.Close() }
	dlq, err := ops.NewDLQService(reader, pub, audit, decorator.Deps{Log: clog, Metrics: m})
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	deps := console.Deps{Operations: opsSvc, Rebuilds: rebuilds, DeadLetters: dlq, Log: clog}
	if cfg.AdminToken.IsSet() {
		v, err := adminauth.NewVerifier(cfg.AdminToken.Reveal())
		if err != nil {
			cleanup()
			return nil, nil, err
		}
		deps.Auth = v
		if cfg.ConsoleTLSCertFile == "" && !service.IsLoopback(cfg.ConsoleAddr) {
			clog.Warn("the console's login and session cookie travel in clear text to a non-loopback CONSOLE_ADDR: set CONSOLE_TLS_CERT_FILE and CONSOLE_TLS_KEY_FILE unless the network encrypts it",
				"console_addr", cfg.ConsoleAddr)
		}
	} else {
		clog.Warn("the console has no login (ADMIN_TOKEN is unset): anyone who can reach CONSOLE_ADDR on this machine can operate the catalog", "console_addr", cfg.ConsoleAddr)
	}
	srv, err := console.NewServer(console.Config{Addr: cfg.ConsoleAddr, ShutdownTimeout: cfg.ShutdownTimeout, SampleInterval: cfg.ConsoleSampleInterval,
		TLSCertFile: cfg.ConsoleTLSCertFile, TLSKeyFile: cfg.ConsoleTLSKeyFile}, deps)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return srv, cleanup, nil
}
