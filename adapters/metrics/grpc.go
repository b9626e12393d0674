package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// GRPCMetrics observes the gRPC admin port.
type GRPCMetrics struct {
	calls *prometheus.HistogramVec
}

// NewGRPCMetrics registers the gRPC series on r.
func NewGRPCMetrics(r *Registry) (*GRPCMetrics, error) {
	m := &GRPCMetrics{calls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "catalog", Subsystem: "grpc", Name: "request_duration_seconds",
		Help:    "gRPC admin calls by method and status code (streams last as long as they watch).",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
	}, []string{"method", "code"})}
	if err := r.Register(m.calls); err != nil {
		return nil, err
	}
	return m, nil
}

// Observe records one finished call.
func (m *GRPCMetrics) Observe(method, code string, d time.Duration) {
	m.calls.WithLabelValues(method, code).Observe(d.Seconds())
}
