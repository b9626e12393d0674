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
type MetricsServer struct {
	addr    string
	handler http.Handler
	log     *slog.Logger
	timeout time.Duration
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
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: DefaultReadHeaderTimeout, ReadTimeout: DefaultReadTimeout,
		WriteTimeout: DefaultWriteTimeout, IdleTimeout: DefaultIdleTimeout}
	return serve(ctx, srv, ln, m.log, "metrics server", m.timeout)
}
