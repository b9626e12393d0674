// Package wiring assembles the catalog from its parts with google/wire: provider sets here
// and in the adapter packages, injectors in wire.go, generated code in wire_gen.go. It is the
// only package besides cmd that sees every layer.
package wiring

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/wire"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"

	"github.com/marketplace/catalog/adapters/bleve"
	"github.com/marketplace/catalog/adapters/elasticsearch"
	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/adapters/metrics"
	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/adapters/tracing"
	"github.com/marketplace/catalog/api/envelope"
	"github.com/marketplace/catalog/application"
	"github.com/marketplace/catalog/application/command"
	"github.com/marketplace/catalog/application/decorator"
	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/application/query"
	apprebuild "github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/ports/adminauth"
	"github.com/marketplace/catalog/ports/console"
	grpcport "github.com/marketplace/catalog/ports/grpc"
	httpport "github.com/marketplace/catalog/ports/http"
	"github.com/marketplace/catalog/ports/projector"
	"github.com/marketplace/catalog/service"
)

// DatabaseSet provides the PostgreSQL connection.
var DatabaseSet = wire.NewSet(provideDB)

// KafkaSet provides the Kafka cluster (starting the embedded broker if none is configured)
// and the relay's pipelined producer.
var KafkaSet = wire.NewSet(provideKafka, provideKafkaPublisher)

// ApplicationSet provides the use cases over the Postgres repository.
var ApplicationSet = wire.NewSet(
	provideProductRepository,
	wire.Bind(new(product.Repository), new(*postgres.ProductRepository)),
	provideClock,
	provideDecoratorDeps,
	command.NewCreateProductHandler,
	command.NewUpdateProductHandler,
	command.NewDeleteProductHandler,
	provideProductByIDHandler,
	provideProjectHandler,
	provideSearchHandler,
	wire.Struct(new(application.Commands), "*"),
	wire.Struct(new(application.Queries), "*"),
	wire.Struct(new(application.Application), "*"),
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

func provideDB(ctx context.Context, cfg service.Config) (*postgres.DB, func(), error) {
	db, err := postgres.Open(ctx, postgres.Config{URL: cfg.DatabaseURL, MaxConns: int32(16 + 2*cfg.OutboxLanes)})
	if err != nil {
		return nil, nil, err
	}
	return db, db.Close, nil
}

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

func provideProductRepository(db *postgres.DB, cfg service.Config, log *slog.Logger) (*postgres.ProductRepository, error) {
	decorate := tracing.InjectIntoMessage
	if cfg.CloudEventsSource != "" {
		cloudEvents, err := envelope.CloudEvents(cfg.CloudEventsSource)
		if err != nil {
			return nil, err
		}
		decorate = func(ctx context.Context, msg *message.Message) {
			tracing.InjectIntoMessage(ctx, msg)
			cloudEvents(msg)
		}
	}
	return postgres.NewProductRepository(db, postgres.ProductRepositoryConfig{Topic: cfg.ProductEventsTopic, Lanes: cfg.OutboxLanes, Decorate: decorate}, log)
}

// ReadModel is the search read model the process uses, or the zero value when none is
// configured (ELASTICSEARCH_URL empty): the API then answers searches with 503 and no
// projector runs.
type ReadModel struct {
	// Projection writes documents; nil without a read model.
	Projection command.ProductProjection
	// Search reads documents; nil without a read model.
	Search query.ProductSearchReadModel
	// Target is where rebuilds build new indices; nil without a read model.
	Target apprebuild.Target
	// Versions tells which versions searches see, for reads that wait for their own writes;
	// nil without a read model.
	Versions query.VisibleVersionsReader
	// Cluster reports the search cluster's health; nil for the embedded engine, which has
	// no cluster.
	Cluster ops.SearchCluster
}

// ReadModelSet provides the search read model.
var ReadModelSet = wire.NewSet(provideReadModel)

func provideReadModel(ctx context.Context, cfg service.Config, log *slog.Logger) (ReadModel, func(), error) {
	if !cfg.NeedsSearch() {
		// A relay-only replica never touches the search cluster, so its outage cannot
		// keep the relay from starting.
		return ReadModel{}, func() {}, nil
	}
	if cfg.ElasticsearchURL == "" {
		return provideEmbeddedReadModel(ctx, cfg, log)
	}
	ecfg := elasticsearchConfig(cfg)
	client, err := elasticsearch.NewClient(ecfg)
	if err != nil {
		return ReadModel{}, nil, err
	}
	indices, err := elasticsearch.NewIndices(client, ecfg)
	if err != nil {
		return ReadModel{}, nil, err
	}
	index, created, err := indices.EnsureAlias(ctx)
	if err != nil {
		return ReadModel{}, nil, searchStartupError(cfg, err)
	}
	log.Info("search read model", "alias", cfg.SearchAlias, "index", index, "created", created, "credentials", ecfg.Credentials)
	extendLiveIndex(ctx, indices, index, log)
	projection, err := elasticsearch.NewProjection(client, ecfg)
	if err != nil {
		return ReadModel{}, nil, err
	}
	search, err := elasticsearch.NewSearch(client, ecfg)
	if err != nil {
		return ReadModel{}, nil, err
	}
	target, err := elasticsearch.NewTarget(client, indices, ecfg)
	if err != nil {
		return ReadModel{}, nil, err
	}
	cleanup := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := projection.Close(ctx); err != nil {
			log.Error("closing the bulk indexer", "err", err)
		}
		if err := target.Close(ctx); err != nil {
			log.Error("closing the rebuild bulk indexer", "err", err)
		}
	}
	return ReadModel{Projection: projection, Search: search, Target: target, Versions: search, Cluster: target}, cleanup, nil
}

// extendLiveIndex gives a live index of an older mapping version the fields this release
// writes, so the projector keeps writing to it until a rebuild replaces it (see
// elasticsearch.Indices.ExtendMapping). It does not stop the start when it fails: the
// projection then waits on such documents (ErrMappingBehind, retried, never dead-lettered)
// and tries again itself, and 'catalog rebuild' ends the wait.
func extendLiveIndex(ctx context.Context, indices *elasticsearch.Indices, index string, log *slog.Logger) {
	v, ok := indices.MappingVersionOf(index)
	if !ok || v >= elasticsearch.MappingVersion {
		return
	}
	added, err := indices.ExtendMapping(ctx, index)
	switch {
	case err != nil:
		log.Error("the live index has an older mapping and could not be given the fields this release writes; the projector retries documents with them until 'catalog rebuild' replaces the index",
			"index", index, "index_mapping_version", v, "code_mapping_version", elasticsearch.MappingVersion, "err", err)
	case len(added) > 0:
		log.Warn("the live index has an older mapping: added the fields this release writes in place; run 'catalog rebuild' to index every document with the current mapping",
			"index", index, "index_mapping_version", v, "code_mapping_version", elasticsearch.MappingVersion, "added", added)
	default:
		log.Warn("the live index has an older mapping; run 'catalog rebuild' to index every document with the current mapping",
			"index", index, "index_mapping_version", v, "code_mapping_version", elasticsearch.MappingVersion)
	}
}

// provideEmbeddedReadModel opens the embedded search engine (Bleve, on disk under
// CATALOG_DATA_DIR/search). The process holds its directory exclusively: a second process on
// the same directory stops here with the reason.
func provideEmbeddedReadModel(ctx context.Context, cfg service.Config, log *slog.Logger) (ReadModel, func(), error) {
	if err := ensureDataDir(cfg); err != nil {
		return ReadModel{}, nil, err
	}
	dir := filepath.Join(cfg.DataDir, "search")
	store, err := bleve.Open(bleve.Config{Dir: dir, Alias: cfg.SearchAlias})
	if err != nil {
		return ReadModel{}, nil, fmt.Errorf("embedded search engine: %w", err)
	}
	index, created, err := store.EnsureAlias(ctx)
	if err != nil {
		_ = store.Close()
		return ReadModel{}, nil, fmt.Errorf("embedded search engine: %w", err)
	}
	log.Warn("EMBEDDED SEARCH ENGINE: the read model lives on this machine's disk; set ELASTICSEARCH_URL for a search cluster",
		"dir", dir, "alias", cfg.SearchAlias, "index", index, "created", created)
	cleanup := func() {
		if err := store.Close(); err != nil {
			log.Error("closing the embedded search engine", "err", err)
		}
	}
	return ReadModel{Projection: store, Search: store, Target: store, Versions: store}, cleanup, nil
}

func provideProjectHandler(rm ReadModel, deps decorator.Deps) (command.ProjectProductEventHandler, error) {
	if rm.Projection == nil {
		return nil, nil
	}
	return command.NewProjectProductEventHandler(rm.Projection, deps)
}

func provideSearchHandler(rm ReadModel, obs *metrics.ReadYourWritesMetrics, deps decorator.Deps) (query.SearchProductsHandler, error) {
	if rm.Search == nil {
		return nil, nil
	}
	waiter, err := query.NewVersionWaiter(rm.Versions, query.VersionWaiterConfig{ReadModel: "search", Observer: obs})
	if err != nil {
		return nil, err
	}
	return query.NewSearchProductsHandler(rm.Search, waiter, deps)
}

// provideProductByIDHandler reads products by id from the system of record; reads that wait
// for versions ask the same table.
func provideProductByIDHandler(repo *postgres.ProductRepository, obs *metrics.ReadYourWritesMetrics, deps decorator.Deps) (query.ProductByIDHandler, error) {
	waiter, err := query.NewVersionWaiter(repo, query.VersionWaiterConfig{ReadModel: "products", Observer: obs})
	if err != nil {
		return nil, err
	}
	return query.NewProductByIDHandler(repo, waiter, deps)
}

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

// RebuildSet provides the rebuild use case and the gRPC admin port that drives it.
var RebuildSet = wire.NewSet(provideRebuildService, provideGRPCServer)

// provideRebuildService is the rebuild use case of the admin role; nil without it or without a
// read model.
func provideRebuildService(cfg service.Config, db *postgres.DB, kc kafka.Config, rm ReadModel, reg *metrics.Registry, log *slog.Logger) (*apprebuild.Service, func(), error) {
	if rm.Target == nil || !cfg.Runs(service.RoleAdmin) {
		return nil, func() {}, nil
	}
	store, err := postgres.NewRebuildStore(db)
	if err != nil {
		return nil, nil, err
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
	svc, err := apprebuild.NewService(apprebuild.Config{Settle: cfg.SearchRefreshInterval, ProjectorGroup: cfg.ProjectorGroup},
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

func provideGRPCServer(cfg service.Config, svc *apprebuild.Service, operations *grpcport.Operations, reg *metrics.Registry, log *slog.Logger) (*grpcport.Server, error) {
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

func provideOpsService(cfg service.Config, db *postgres.DB, pg *postgres.OpsStats, ks *kafka.OpsStats, audit *postgres.DLQAudit, progress *ops.CommitProgress, rm ReadModel, log *slog.Logger) (*ops.Service, error) {
	if rm.Target == nil || ks == nil {
		return nil, nil
	}
	store, err := postgres.NewRebuildStore(db)
	if err != nil {
		return nil, err
	}
	return ops.NewService(ops.Config{Alias: cfg.SearchAlias, EventsTopic: cfg.ProductEventsTopic, DLQTopic: cfg.DLQTopic, ProjectorGroup: cfg.ProjectorGroup},
		ops.Deps{Database: pg, Products: pg, Events: ks, Replication: ks, Search: rm.Cluster, ReadModel: rm.Target, Rebuilds: store, DeadLetters: audit,
			Progress: progress, Log: log.With("component", "ops")})
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

// ConsoleSet provides the operations console of `catalog serve`.
var ConsoleSet = wire.NewSet(provideConsole)

// provideConsole is the console on CONSOLE_ADDR over the same use cases as the admin port
// and the CLI, nil when CONSOLE_ADDR is empty or the process has no read model. Its dead
// letter use cases read DLQ_TOPIC and replay to PRODUCT_EVENTS_TOPIC, with the audit log in
// the database, as `catalog dlq` does.
func provideConsole(cfg service.Config, opsSvc *ops.Service, rebuilds *apprebuild.Service, kc kafka.Config, audit *postgres.DLQAudit, log *slog.Logger) (*console.Server, func(), error) {
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
	dlq, err := ops.NewDLQService(reader, pub, audit)
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

func provideClock() func() time.Time { return time.Now }

func provideDecoratorDeps(log *slog.Logger, m decorator.MetricsClient) decorator.Deps {
	return decorator.Deps{Log: log, Metrics: m}
}

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

func (o retentionObserver) OutboxRowsDeleted(n int64)                 { o.m.OutboxRowsDeleted(n) }
func (o retentionObserver) OutboxTableSize(postgres.OutboxTableStats) {}

// rebuildsRole ties the rebuilds this process runs to its lifetime: while it serves it
// recovers (resumes, drains or ends) rebuilds whose runner stopped and a live index left
// behind the event log, on any replica; on SIGTERM the rebuilds it runs stop at once and are
// handed off with their progress and index, for a replica to resume, instead of racing the
// shutdown.
type rebuildsRole struct{ svc *apprebuild.Service }

func (r rebuildsRole) Run(ctx context.Context) error {
	r.svc.RunRecovery(ctx)
	r.svc.HandOffAll()
	r.svc.Wait()
	return nil
}

func provideServeProcess(cfg service.Config, log *slog.Logger, http *httpport.Server, relay *postgres.Relay, retention *postgres.OutboxRetention, proj *projector.Projector, admin *grpcport.Server, rebuilds *apprebuild.Service, sampler *metrics.OpsSampler, status *metrics.StatusSampler, ms *httpport.MetricsServer, db *postgres.DB, kc kafka.Config, rm ReadModel, con *console.Server) (ServeProcess, error) {
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
func adminRoles(cfg service.Config, sampler *metrics.OpsSampler, status *metrics.StatusSampler, rebuilds *apprebuild.Service, admin *grpcport.Server) []service.NamedRole {
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

func provideAPIProcess(cfg service.Config, log *slog.Logger, api *httpport.Server, admin *grpcport.Server, rebuilds *apprebuild.Service, sampler *metrics.OpsSampler, status *metrics.StatusSampler, ms *httpport.MetricsServer, db *postgres.DB, kc kafka.Config, rm ReadModel, con *console.Server) APIProcess {
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

func provideRelayProcess(log *slog.Logger, relay *postgres.Relay, retention *postgres.OutboxRetention, ms *httpport.MetricsServer, db *postgres.DB, kc kafka.Config) RelayProcess {
	if ms != nil {
		ms.ServeReadiness(service.RoleRelay, roleChecks(db, kc, ReadModel{})[service.RoleRelay])
	}
	return RelayProcess{service.NewProcess(log, withMetrics([]service.NamedRole{{Name: "relay", Role: relay},
		{Name: "outbox-retention", Role: retention}}, ms)...)}
}
