package console

import (
	"context"
	"crypto/tls"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/readmodel"
	"github.com/marketplace/catalog/internal/tlsfiles"
)

// Operations is what the console needs of the operator's use cases; *ops.Service satisfies
// it. Declared here, where it is used, so tests drive the pages with a fake.
type Operations interface {
	// Status reads the pipeline and judges it against the thresholds.
	Status(ctx context.Context, th ops.Thresholds) (ops.Status, error)
	// Verify compares the database with the read model.
	Verify(ctx context.Context, req ops.VerifyRequest, progress func(ops.VerifyProgress)) (ops.VerifyReport, error)
}

// Rebuilds is what the console needs of the rebuild use cases; *rebuild.Service
// satisfies it.
type Rebuilds interface {
	// Start begins a rebuild from source in the background.
	Start(ctx context.Context, source readmodel.Source) (readmodel.Snapshot, error)
	// Get reads one rebuild.
	Get(ctx context.Context, id string) (readmodel.Snapshot, error)
	// List returns the newest rebuilds, newest first.
	List(ctx context.Context, limit int) ([]readmodel.Snapshot, error)
	// Cancel stops a running rebuild.
	Cancel(ctx context.Context, id string) (readmodel.Snapshot, error)
	// ListIndices lists the alias's indices, newest first.
	ListIndices(ctx context.Context) ([]rebuild.IndexInfo, error)
	// RollbackAlias points the alias back at the previous index, caught up.
	RollbackAlias(ctx context.Context) (rebuild.Rollback, error)
	// PruneIndices deletes old indices, keeping the newest keep besides the live one.
	PruneIndices(ctx context.Context, keep int) ([]string, error)
}

// DeadLetters is what the console needs of the DLQ use cases; *ops.DLQService satisfies it.
type DeadLetters interface {
	// List returns the dead letters f selects.
	List(ctx context.Context, f ops.DLQFilter, limit int, unhandledOnly bool) (ops.DLQListResult, error)
	// Show returns one dead letter.
	Show(ctx context.Context, ref ops.DLQRef) (ops.DLQMessage, error)
	// Replay republishes dead letters (or says what it would, in a dry run).
	Replay(ctx context.Context, req ops.ReplayRequest, onOutcome func(ops.ReplayOutcome)) (ops.ReplaySummary, error)
	// Resolve records dead letters as dropped on purpose.
	Resolve(ctx context.Context, req ops.ResolveRequest, onOutcome func(ops.ResolveOutcome)) (ops.ResolveSummary, error)
	// Audit returns the audit trail, newest first.
	Audit(ctx context.Context, f ops.AuditFilter) ([]ops.ReplayAuditEntry, error)
}

// TokenChecker compares a login's token with the admin token; *adminauth.Verifier
// satisfies it.
type TokenChecker interface {
	// Check reports whether token is the admin token.
	Check(token string) bool
}

// Deps are the use cases and services the console presents.
type Deps struct {
	// Operations is required.
	Operations Operations
	// Rebuilds is required.
	Rebuilds Rebuilds
	// DeadLetters is required.
	DeadLetters DeadLetters
	// Auth checks the login token. Nil means no login (a loopback-only deployment without
	// ADMIN_TOKEN, as the admin port allows): each browser gets a session on its first visit.
	Auth TokenChecker
	// Log receives the console's own lines (actions with their operator, failures).
	Log *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

//go:embed assets
var assets embed.FS

// Server is the console's HTTP server.
type Server struct {
	cfg      Config
	deps     Deps
	log      *slog.Logger
	now      func() time.Time
	sessions *sessions
	pages    *pages
	history  *history
	handler  http.Handler
	tls      *tls.Config // nil: plain HTTP
}

// NewServer validates cfg and returns the console over deps.
func NewServer(cfg Config, deps Deps) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Operations == nil || deps.Rebuilds == nil || deps.DeadLetters == nil {
		return nil, errors.New("console: missing use cases (operations, rebuilds and dead letters are required)")
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	p, err := parsePages(deps.Log)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, deps: deps, log: deps.Log, now: deps.Now, pages: p,
		sessions: newSessions(cfg.SessionTTL, deps.Now), history: newHistory(cfg.History)}
	s.handler = s.routes()
	if cfg.TLSCertFile != "" {
		cert, err := tlsfiles.KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("console TLS: %w", err)
		}
		s.tls = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	}
	return s, nil
}

// Handler is the console's handler, for tests and for mounting behind a listener of the
// caller's choice.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) routes() http.Handler {
	static, err := fs.Sub(assets, "assets/static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	mux := http.NewServeMux()
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("POST /logout", s.authed(s.logout))

	mux.HandleFunc("GET /{$}", s.authed(s.pipelinePage))
	mux.HandleFunc("GET /charts", s.authed(s.chartsPage))
	mux.HandleFunc("GET /rebuilds", s.authed(s.rebuildsPage))
	mux.HandleFunc("POST /rebuilds", s.authed(s.startRebuild))
	mux.HandleFunc("GET /rebuilds/{id}", s.authed(s.rebuildPage))
	mux.HandleFunc("POST /rebuilds/{id}/cancel", s.authed(s.cancelRebuild))
	mux.HandleFunc("GET /indices", s.authed(s.indicesPage))
	mux.HandleFunc("POST /indices/rollback", s.authed(s.rollback))
	mux.HandleFunc("POST /indices/prune", s.authed(s.prune))
	mux.HandleFunc("GET /dlq", s.authed(s.dlqPage))
	mux.HandleFunc("GET /dlq/{ref}", s.authed(s.dlqMessagePage))
	mux.HandleFunc("POST /dlq/replay", s.authed(s.replay))
	mux.HandleFunc("POST /dlq/resolve", s.authed(s.resolve))
	mux.HandleFunc("GET /verify", s.authed(s.verifyPage))
	mux.HandleFunc("POST /verify", s.authed(s.verify))
	return securityHeaders(sameOrigin(mux))
}

// Run listens on Config.Addr and serves until ctx is cancelled; it also samples the status
// for the charts. It is a role of the serve process.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("console listen %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx is cancelled, then shuts down within Config.ShutdownTimeout.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		TLSConfig:         s.tls,
	}
	sampleCtx, stopSampling := context.WithCancel(ctx)
	defer stopSampling()
	go s.sample(sampleCtx)

	errc := make(chan error, 1)
	go func() {
		if s.tls != nil {
			errc <- srv.ServeTLS(ln, "", "")
			return
		}
		errc <- srv.Serve(ln)
	}()
	s.log.InfoContext(ctx, "console listening", "addr", ln.Addr().String(), "login", s.deps.Auth != nil, "tls", s.tls != nil)
	select {
	case err := <-errc:
		return fmt.Errorf("console: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	shutdownErr := srv.Shutdown(shutdownCtx)
	if shutdownErr != nil {
		shutdownErr = errors.Join(fmt.Errorf("console shutdown: %w", shutdownErr), srv.Close())
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return errors.Join(fmt.Errorf("console: %w", err), shutdownErr)
	}
	return shutdownErr
}
