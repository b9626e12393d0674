package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ReadYourWritesMetrics observes the reads that wait for their own writes (wait_for). Its
// methods satisfy query.WaitObserver; read_model is "search" or "products".
type ReadYourWritesMetrics struct {
	checks      *prometheus.CounterVec
	checkErrors *prometheus.CounterVec
	probes      *prometheus.CounterVec
	checkTime   *prometheus.HistogramVec
	waits       *prometheus.HistogramVec
}

// NewReadYourWritesMetrics registers the read-your-writes series on r.
func NewReadYourWritesMetrics(r *Registry) (*ReadYourWritesMetrics, error) {
	m := &ReadYourWritesMetrics{
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "catalog", Subsystem: "read_your_writes", Name: "checks_total",
			Help: "Batched version checks sent to the read model for waiting reads: at most one per check interval and process, however many reads wait. " +
				"Its rate is what waiting reads cost the read model.",
		}, []string{"read_model"}),
		checkErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "catalog", Subsystem: "read_your_writes", Name: "check_errors_total",
			Help: "Version checks that failed (retried at the next interval; the reads' timeouts bound the wait).",
		}, []string{"read_model"}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "catalog", Subsystem: "read_your_writes", Name: "probes_total",
			Help: "Product versions asked for by the version checks.",
		}, []string{"read_model"}),
		checkTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "catalog", Subsystem: "read_your_writes", Name: "check_duration_seconds",
			Help:    "Duration of one batched version check.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"read_model"}),
		waits: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "catalog", Subsystem: "read_your_writes", Name: "wait_seconds",
			Help:    "How long reads with wait_for waited, by outcome: visible (their versions arrived), timeout (answered behind, or 503 when strict), canceled (the client left).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}, []string{"read_model", "outcome"}),
	}
	if err := r.Register(m.checks, m.checkErrors, m.probes, m.checkTime, m.waits); err != nil {
		return nil, err
	}
	for _, rm := range []string{"search", "products"} {
		m.checks.WithLabelValues(rm)
		m.checkErrors.WithLabelValues(rm)
	}
	return m, nil
}

// VersionsChecked records one batched check.
func (m *ReadYourWritesMetrics) VersionsChecked(readModel string, probes int, took time.Duration, err error) {
	m.checks.WithLabelValues(readModel).Inc()
	m.probes.WithLabelValues(readModel).Add(float64(probes))
	m.checkTime.WithLabelValues(readModel).Observe(took.Seconds())
	if err != nil {
		m.checkErrors.WithLabelValues(readModel).Inc()
	}
}

// WaitEnded records a read that stopped waiting.
func (m *ReadYourWritesMetrics) WaitEnded(readModel, outcome string, waited time.Duration) {
	m.waits.WithLabelValues(readModel, outcome).Observe(waited.Seconds())
}
