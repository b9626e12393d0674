package grpcport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	projectionv1 "github.com/marketplace/catalog/api/gen/catalog/projection/v1"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/readmodel"
)

// RebuildService is what the port needs from the rebuild use case; *rebuild.Service (in
// application/rebuild) satisfies it. It is declared here, where it is used, so tests can
// drive the port with a fake and the application does not know about gRPC.
type RebuildService interface {
	// Start begins a rebuild and returns its record at once.
	Start(ctx context.Context, source readmodel.Source) (readmodel.Snapshot, error)
	// Get returns a rebuild's record; "" means the newest.
	Get(ctx context.Context, id string) (readmodel.Snapshot, error)
	// Cancel asks a running rebuild to stop.
	Cancel(ctx context.Context, id string) (readmodel.Snapshot, error)
	// ListIndices lists the alias's indices, newest first.
	ListIndices(ctx context.Context) ([]rebuild.IndexInfo, error)
	// RollbackAlias brings the previous index up to date and points the alias back at it.
	RollbackAlias(ctx context.Context) (rebuild.Rollback, error)
	// RunnerLost reports whether an unfinished rebuild's runner stopped beating.
	RunnerLost(snap readmodel.Snapshot) bool
	// PruneIndices deletes all but the newest keep non-live indices.
	PruneIndices(ctx context.Context, keep int) ([]string, error)
}

// Deps are the collaborators of the server that are not use cases. Every field is optional.
type Deps struct {
	// Log receives one line per call (method, code, duration), the causes of INTERNAL
	// errors and recovered panics. Nil discards them.
	Log *slog.Logger
	// Observe, when set, is called once per finished call with its full method name
	// ("/catalog.projection.v1.ProjectionAdmin/StartRebuild"), its code and its duration:
	// the hook for request metrics, so this package does not depend on a metrics library.
	Observe func(method string, code codes.Code, d time.Duration)
	// ServerOptions are appended to the server's own options: TLS credentials, a tracing
	// stats handler (otelgrpc), message size limits. Interceptors given here run inside the
	// port's own (recovery, error mapping, logging), so they see mapped status codes.
	ServerOptions []grpc.ServerOption
	// Register adds further services of this port (operations: status, verify) to the same
	// server, so they share its listener, interceptors and error mapping.
	Register []func(grpc.ServiceRegistrar)
	// Auth, when set, must admit every call but those of the health and reflection services
	// (ADMIN_TOKEN); refused calls end UNAUTHENTICATED before any handler runs. Nil admits
	// every call: the port then relies on a loopback address or mutual TLS.
	Auth Authenticator
}

// Server is the gRPC admin port. It serves once: after Serve or Run returns it cannot be
// started again, because the underlying grpc.Server cannot.
type Server struct {
	projectionv1.UnimplementedProjectionAdminServer

	cfg     Config
	svc     RebuildService
	log     *slog.Logger
	observe func(string, codes.Code, time.Duration)
	auth    Authenticator

	grpc   *grpc.Server
	health *health.Server

	// stopping is closed when shutdown begins, so that open WatchRebuild streams end at
	// once instead of holding GracefulStop for as long as a rebuild runs.
	stopping     chan struct{}
	stoppingOnce sync.Once
}

// NewServer checks its inputs and registers the ProjectionAdmin, health and reflection
// services. It fails on a missing use case instead of answering every call with INTERNAL
// later, so a wiring mistake stops the process at start-up.
func NewServer(cfg Config, svc RebuildService, deps Deps) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if svc == nil {
		return nil, errors.New("grpc server: nil rebuild service")
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, svc: svc, log: log, observe: deps.Observe, auth: deps.Auth, stopping: make(chan struct{})}

	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(s.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.streamInterceptor),
		// Watch streams can be silent for minutes behind load balancers and NATs; pings
		// keep them open and detect dead clients, whose streams would otherwise poll forever.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		// Clients (the CLI) may ping a long watch; allow it, but not abusively often.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}
	s.grpc = grpc.NewServer(append(opts, deps.ServerOptions...)...)
	projectionv1.RegisterProjectionAdminServer(s.grpc, s)
	for _, register := range deps.Register {
		register(s.grpc)
	}

	s.health = health.NewServer()
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(projectionv1.ProjectionAdmin_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	return s, nil
}

// Run listens on Config.Addr and serves until ctx is cancelled, then shuts down gracefully.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("grpc listen %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx is cancelled. Then it reports NOT_SERVING on the health
// service (so balancers stop sending new calls), ends open watch streams with UNAVAILABLE,
// and waits up to Config.ShutdownTimeout for in-flight calls before it cuts them off. It
// takes a listener so that tests (bufconn) and socket-activated deployments can pass one.
// It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- s.grpc.Serve(ln) }()
	s.log.InfoContext(ctx, "grpc server listening", "addr", ln.Addr().String())

	select {
	case err := <-errc:
		s.beginShutdown()
		return fmt.Errorf("grpc serve: %w", err)
	case <-ctx.Done():
	}

	s.log.InfoContext(ctx, "grpc server shutting down", "timeout", s.cfg.ShutdownTimeout)
	s.beginShutdown()
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	timer := time.NewTimer(s.cfg.ShutdownTimeout)
	defer timer.Stop()
	var shutdownErr error
	select {
	case <-stopped:
	case <-timer.C:
		// In-flight calls outlived the grace period; cut them off rather than hang.
		s.grpc.Stop()
		<-stopped
		shutdownErr = fmt.Errorf("grpc shutdown: calls still running after %s were cut off", s.cfg.ShutdownTimeout)
	}
	if err := <-errc; err != nil {
		return errors.Join(fmt.Errorf("grpc serve: %w", err), shutdownErr)
	}
	return shutdownErr
}

func (s *Server) beginShutdown() {
	s.stoppingOnce.Do(func() {
		s.health.Shutdown()
		close(s.stopping)
	})
}
