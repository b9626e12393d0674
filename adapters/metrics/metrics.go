// Package metrics exposes the catalog's Prometheus metrics: one registry per process, served on
// /metrics, with the Go runtime and process collectors and the catalog's own series.
package metrics

import (
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/domain/product"
)

// Registry is the process's metrics registry.
type Registry struct {
	reg      *prometheus.Registry
	useCases *prometheus.HistogramVec
}

// NewRegistry returns a registry with the runtime collectors and the use-case histogram.
func NewRegistry() (*Registry, error) {
	reg := prometheus.NewRegistry()
	useCases := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "catalog",
		Name:      "use_case_duration_seconds",
		Help:      "Duration of application use cases by outcome (ok, client_error, error).",
		Buckets:   prometheus.ExponentialBuckets(0.0005, 2, 15),
	}, []string{"use_case", "outcome"})
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		useCases,
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return &Registry{reg: reg, useCases: useCases}, nil
}

// Register adds collectors of other adapters (relay, projector, HTTP).
func (r *Registry) Register(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := r.reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Prometheus returns the underlying registry, for libraries that register themselves.
func (r *Registry) Prometheus() *prometheus.Registry { return r.reg }

// Handler serves the registry in the Prometheus exposition format.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{Registry: r.reg})
}

// ObserveUseCase implements decorator.MetricsClient. Client mistakes are counted apart from
// failures so an alert on errors is not set off by a client sending bad input.
func (r *Registry) ObserveUseCase(name string, d time.Duration, err error) {
	r.useCases.WithLabelValues(name, outcome(err)).Observe(d.Seconds())
}

func outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, product.ErrInvalid), errors.Is(err, product.ErrInvalidID), errors.Is(err, product.ErrNotFound),
		errors.Is(err, product.ErrDeleted), errors.Is(err, product.ErrVersionConflict), errors.Is(err, product.ErrDuplicateSKU),
		errors.Is(err, product.ErrIdempotencyKeyReused):
		return "client_error"
	case errors.Is(err, ops.ErrInvalid), errors.Is(err, ops.ErrVerifyRunning), errors.Is(err, ops.ErrDLQInvalidRef),
		errors.Is(err, ops.ErrDLQInvalidFilter), errors.Is(err, ops.ErrDLQMessageNotFound), errors.Is(err, ops.ErrReplayInvalidRequest),
		errors.Is(err, ops.ErrResolveInvalidRequest):
		// An operator's mistake (a bad threshold, a typo in a reference, a second verify).
		return "client_error"
	default:
		return "error"
	}
}

// Build names the running binary in catalog_build_info.
type Build struct {
	// Version is the release version, Commit the VCS revision, GoVersion the toolchain.
	Version, Commit, GoVersion string
}

// RegisterBuildInfo adds catalog_build_info, a gauge that is always 1 and carries the build
// as labels: joined on other series (`* on(instance) group_left(version)`) it tells which
// release each replica runs, and a dashboard shows a rollout as two versions side by side.
func (r *Registry) RegisterBuildInfo(b Build) error {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "catalog", Name: "build_info",
		Help:        "Always 1; the labels say which build of catalog this process runs.",
		ConstLabels: prometheus.Labels{"version": b.Version, "commit": b.Commit, "goversion": b.GoVersion},
	})
	g.Set(1)
	return r.Register(g)
}
