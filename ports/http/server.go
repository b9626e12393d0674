package httpport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/marketplace/catalog/application"
	"github.com/marketplace/catalog/application/query"
	"github.com/marketplace/catalog/internal/tlsfiles"
)

// Deps are the collaborators of the server that are not use cases. Every field is optional
// except where noted, so a test or a laptop run wires only what it has.
type Deps struct {
	// Log receives the access log, server faults and panics. Nil discards them.
	Log *slog.Logger
	// Ready holds the named checks of the API's readiness, GET /readyz (also ?role=api): only
	// what serving requests needs. A load balancer acts on it, so a dependency the requests
	// do not need (Kafka, behind the outbox) must not be here: its outage would take the
	// write API out of rotation although writes still succeed. Each check gets its own 2 s
	// deadline; nil checks are rejected by NewServer.
	Ready map[string]func(context.Context) error
	// RoleReady holds the readiness checks of the process's other roles by role name, answered
	// at GET /readyz?role=NAME (for example "relay": database and Kafka; "projector": Kafka and
	// the search cluster). They are for alerts and dashboards, not for the API's load balancer.
	RoleReady map[string]map[string]func(context.Context) error
	// Metrics, when set, is served at GET /metrics (a Prometheus handler). It is a handler,
	// not a registry, so this package does not depend on a metrics library.
	Metrics http.Handler
	// Middleware, when set, wraps the whole router as the outermost layer, so that tracing
	// (otelhttp) sees every request, including 404s and requests that panic.
	Middleware func(http.Handler) http.Handler
	// ObserveRequest, when set, is called once per finished request with its route pattern
	// and status: the hook for request metrics, which must not label by raw path.
	ObserveRequest func(ctx context.Context, rec RequestRecord)
	// ProbesOnly serves the orchestrator's endpoints alone (/healthz, /readyz, /metrics), for
	// a replica that does not run the API (catalog serve --roles=relay, ...): the product
	// routes answer 404 with a problem saying so, no use case is needed, Ready is unused, and
	// /readyz without ?role= answers for every role of RoleReady together.
	ProbesOnly bool
}

// Server is the REST port. It is a concrete type, not an interface, because it has exactly
// one implementation; callers that need less take an http.Handler from Handler.
type Server struct {
	cfg          Config
	app          application.Application
	log          *slog.Logger
	ready        map[string]map[string]func(context.Context) error // by role
	defaultRole  string                                            // what /readyz answers for without ?role=
	probesOnly   bool
	metrics      http.Handler
	observe      func(context.Context, RequestRecord)
	readyTimeout time.Duration

	router  *chi.Mux
	handler http.Handler
	tls     *tls.Config // nil: plain HTTP
}

// NewServer checks its inputs and builds the router. It fails on a missing use case instead
// of serving 500s later, so a wiring mistake stops the process at start-up.
func NewServer(cfg Config, app application.Application, deps Deps) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if missing := missingUseCases(app); len(missing) > 0 && !deps.ProbesOnly {
		return nil, fmt.Errorf("http server: missing use cases: %s", strings.Join(missing, ", "))
	}
	roles := map[string]map[string]func(context.Context) error{apiRole: deps.Ready}
	defaultRole := apiRole
	if deps.ProbesOnly {
		roles, defaultRole = probeRoles(deps.RoleReady)
	}
	for role, checks := range deps.RoleReady {
		if role == "" || role == apiRole {
			return nil, fmt.Errorf("http server: readiness role %q is empty or reserved for Ready", role)
		}
		roles[role] = checks
	}
	for role, checks := range roles {
		for name, check := range checks {
			if name == "" || check == nil {
				return nil, fmt.Errorf("http server: readiness check %q of role %s is nil or unnamed", name, role)
			}
		}
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg: cfg, app: app, log: log, ready: roles, defaultRole: defaultRole, probesOnly: deps.ProbesOnly, metrics: deps.Metrics,
		observe: deps.ObserveRequest, readyTimeout: defaultReadyTimeout,
	}
	if cfg.TLSCertFile != "" {
		cert, err := tlsfiles.KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("http server: %w", err)
		}
		s.tls = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	}
	s.router = s.routes()
	s.handler = s.router
	if deps.Middleware != nil {
		s.handler = deps.Middleware(s.router)
	}
	return s, nil
}

// missingUseCases names the use cases the API needs that app lacks.
func missingUseCases(app application.Application) []string {
	var missing []string
	for name, absent := range map[string]bool{
		"CreateProduct": app.Commands.CreateProduct == nil, "UpdateProduct": app.Commands.UpdateProduct == nil,
		"DeleteProduct": app.Commands.DeleteProduct == nil, "ProductByID": app.Queries.ProductByID == nil,
	} {
		if absent {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	return missing
}

// routes registers every endpoint. Each route is one line so that the table reads like the
// API; openapi.yaml must list exactly these (method, path) pairs, which a test enforces.
//
// The search endpoint (GET /v1/products/search) is added here as one more r.Get line when it
// exists; chi matches static segments before {id}, so it needs no ordering tricks.
func (s *Server) routes() *chi.Mux {
	r := chi.NewRouter()
	r.Use(requestID, s.accessLog, s.recoverer)
	r.NotFound(s.handle(s.notFound))
	r.MethodNotAllowed(s.handle(s.methodNotAllowed))

	r.Get("/healthz", s.handle(s.healthz))
	r.Get("/readyz", s.handle(s.readyz))
	if s.metrics != nil {
		r.Method(http.MethodGet, "/metrics", s.metrics)
	}
	if s.probesOnly {
		r.HandleFunc("/v1/*", s.handle(s.noAPI))
		return r
	}

	r.Post(productsPath, s.handle(s.createProduct))
	r.Get(productsPath+"/search", s.handle(s.searchProducts))
	r.Get(productsPath+"/{id}", s.handle(s.getProduct))
	r.Put(productsPath+"/{id}", s.handle(s.updateProduct))
	r.Delete(productsPath+"/{id}", s.handle(s.deleteProduct))
	r.Get("/openapi.yaml", serveOpenAPI)
	r.Get("/asyncapi.yaml", serveAsyncAPI)
	return r
}

// Handler returns the complete HTTP handler, Deps.Middleware included. Tests and callers
// that run their own http.Server use it.
func (s *Server) Handler() http.Handler { return s.handler }

// handlerFunc is an endpoint that reports failure by returning an error, so that every
// endpoint answers errors the same way and none forgets to return after writing one.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (s *Server) handle(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.respondError(w, r, err)
		}
	}
}

// respondError writes the problem for err and logs server faults with the request id, so
// the generic detail the client sees can be traced to the cause. The message says what
// happened: a search cluster that refuses connections is "unavailable", not "timed out".
func (s *Server) respondError(w http.ResponseWriter, r *http.Request, err error) {
	p, fault := problemFor(err)
	if fault {
		attrs := []any{"err", err, "method", r.Method, "route", routePattern(r), "request_id", RequestID(r.Context())}
		switch {
		case r.Context().Err() != nil:
			// The client closed the connection: nothing failed on this side.
			s.log.DebugContext(r.Context(), "client went away before the response", attrs...)
		case errors.Is(err, context.DeadlineExceeded):
			s.log.WarnContext(r.Context(), "request timed out", attrs...)
		case errors.Is(err, query.ErrReadModelUnavailable):
			s.log.WarnContext(r.Context(), "search read model unavailable", attrs...)
		case p.Status == http.StatusServiceUnavailable:
			s.log.WarnContext(r.Context(), "request could not be completed", attrs...)
		default:
			s.log.ErrorContext(r.Context(), "request failed", attrs...)
		}
	}
	writeProblem(w, r, p)
}

// noAPI answers the product routes of a replica that does not run the API: a load balancer
// or client pointed at the wrong replicas learns why from the answer.
func (s *Server) noAPI(_ http.ResponseWriter, _ *http.Request) error {
	return &requestError{status: http.StatusNotFound, typ: ProblemNotFound, title: "Not found",
		detail: "this replica does not run the api role (CATALOG_ROLES); send API requests to the API replicas"}
}

// probeRoles are the readiness roles of a probes-only server: each role of the process, and
// their union under the name of all of them joined by "+", which /readyz answers without
// ?role= (a dependency shared by two roles is checked once).
func probeRoles(byRole map[string]map[string]func(context.Context) error) (map[string]map[string]func(context.Context) error, string) {
	names := make([]string, 0, len(byRole))
	union := map[string]func(context.Context) error{}
	for role, checks := range byRole {
		names = append(names, role)
		for name, check := range checks {
			union[name] = check
		}
	}
	sort.Strings(names)
	all := strings.Join(names, "+")
	return map[string]map[string]func(context.Context) error{all: union}, all
}

func (s *Server) notFound(_ http.ResponseWriter, _ *http.Request) error {
	return &requestError{status: http.StatusNotFound, typ: ProblemNotFound, title: "Not found", detail: "no endpoint has this path"}
}

// methodNotAllowed answers 405 with the Allow header RFC 9110 requires. chi does not pass
// the allowed methods to a custom handler, so they are found by asking the router.
func (s *Server) methodNotAllowed(w http.ResponseWriter, r *http.Request) error {
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions} {
		if s.router.Match(chi.NewRouteContext(), m, r.URL.Path) {
			allowed = append(allowed, m)
		}
	}
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	return &requestError{
		status: http.StatusMethodNotAllowed, typ: ProblemMethodNotAllowed, title: "Method not allowed",
		detail: fmt.Sprintf("%s is not allowed here; allowed: %s", r.Method, strings.Join(allowed, ", ")),
	}
}

// Run listens on Config.Addr and serves until ctx is cancelled, then shuts down gracefully.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("http listen %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx is cancelled, then stops accepting connections and waits up
// to Config.ShutdownTimeout for in-flight requests before it closes what is left. It takes
// a listener so that tests and socket-activated deployments can pass one (":0", systemd).
// With a certificate configured it serves HTTPS (HTTP/2 included) on ln. It returns nil
// after a clean shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		TLSConfig:         s.tls,
	}
	return serve(ctx, srv, ln, s.log, "http server", s.cfg.ShutdownTimeout)
}

// serve runs srv on ln (over TLS when srv.TLSConfig is set) until ctx is cancelled, then
// shuts it down gracefully within timeout; name tells its log lines apart.
func serve(ctx context.Context, srv *http.Server, ln net.Listener, log *slog.Logger, name string, timeout time.Duration) error {
	srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	// Requests keep ctx's values (trace, logger) but not its cancellation: shutting down
	// must let in-flight requests finish, not abort them.
	srv.BaseContext = func(net.Listener) context.Context { return context.WithoutCancel(ctx) }
	errc := make(chan error, 1)
	go func() {
		if srv.TLSConfig != nil {
			errc <- srv.ServeTLS(ln, "", "")
			return
		}
		errc <- srv.Serve(ln)
	}()
	log.InfoContext(ctx, name+" listening", "addr", ln.Addr().String(), "tls", srv.TLSConfig != nil)

	select {
	case err := <-errc:
		return fmt.Errorf("%s: %w", name, err)
	case <-ctx.Done():
	}

	log.InfoContext(ctx, name+" shutting down", "timeout", timeout)
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	shutdownErr := srv.Shutdown(shutdownCtx)
	if shutdownErr != nil {
		// In-flight requests outlived the grace period; cut them off rather than hang.
		shutdownErr = errors.Join(fmt.Errorf("%s shutdown: %w", name, shutdownErr), srv.Close())
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return errors.Join(fmt.Errorf("%s: %w", name, err), shutdownErr)
	}
	return shutdownErr
}
