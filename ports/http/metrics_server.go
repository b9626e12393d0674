package httpport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// MetricsServer serves /metrics on a listener of its own (METRICS_ADDR): scraping then needs
// no route to the API, the API's port carries no operational data, and the roles without an
// API (`catalog relay`, `catalog project`) get a metrics endpoint too.
//
// It answers GET /healthz (liveness) and, once ServeReadiness named the process's role and
// its checks, GET /readyz too: the only probe endpoints of `catalog relay` and `catalog
// project`, whose Kubernetes probes and `catalog healthcheck` ask them here.
type MetricsServer struct {
	addr    string
	handler http.Handler
	log     *slog.Logger
	timeout time.Duration

	role   string
	checks map[string]func(context.Context) error
}

// Addr is the address the server listens on.
func (m *MetricsServer) Addr() string { return m.addr }

// ServeReadiness makes GET /readyz report role with checks (named dependency checks, run
// concurrently, 503 when one fails). Call it before Run.
func (m *MetricsServer) ServeReadiness(role string, checks map[string]func(context.Context) error) {
	m.role, m.checks = role, checks
}

// NewMetricsServer returns the server of h (a Prometheus handler) on addr.
func NewMetricsServer(addr string, h http.Handler, shutdownTimeout time.Duration, log *slog.Logger) (*MetricsServer, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("metrics server: addr %q: %w", addr, err)
	}
	if h == nil {
		return nil, errors.New("metrics server: nil handler")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if shutdownTimeout <= 0 {
		shutdownTimeout = DefaultShutdownTimeout
	}
	return &MetricsServer{addr: addr, handler: h, log: log, timeout: shutdownTimeout}, nil
}

// Run listens on the address and serves GET /metrics until ctx is cancelled.
func (m *MetricsServer) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", m.addr)
	if err != nil {
		return fmt.Errorf("metrics listen %s: %w", m.addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.handler)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		_ = writeJSON(w, http.StatusOK, healthJSON{Status: statusOK})
	})
	if m.checks != nil {
		mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
			status, body := readiness(r.Context(), m.log, defaultReadyTimeout, m.role, m.checks)
			w.Header().Set("Cache-Control", "no-store")
			_ = writeJSON(w, status, body)
		})
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: DefaultReadHeaderTimeout, ReadTimeout: DefaultReadTimeout,
		WriteTimeout: DefaultWriteTimeout, IdleTimeout: DefaultIdleTimeout}
	return serve(ctx, srv, ln, m.log, "metrics server", m.timeout)
}
