package metrics

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ProjectorMetrics observes the projector. Its methods satisfy the projector port's Observer.
type ProjectorMetrics struct {
	projected  *prometheus.CounterVec
	latency    prometheus.Histogram
	deadLetter *prometheus.CounterVec
	retries    prometheus.Counter

	mu       sync.Mutex
	lastSeen time.Time
}

// NewProjectorMetrics registers the projector's series on r.
func NewProjectorMetrics(r *Registry) (*ProjectorMetrics, error) {
	m := &ProjectorMetrics{
		projected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "catalog", Subsystem: "projector", Name: "events_total",
			Help: "Product events applied to the search read model (stale ones included), by partition.",
		}, []string{"partition"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "catalog", Subsystem: "projector", Name: "commit_to_applied_seconds",
			Help:    "Time from an event's occurred_at (its commit) to its write in the read model.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 16),
		}),
		deadLetter: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "catalog", Subsystem: "projector", Name: "dead_lettered_total",
			Help: "Messages sent to the dead-letter topic, by error class.",
		}, []string{"class"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "catalog", Subsystem: "projector", Name: "transient_retries_total",
			Help: "Retries of transient failures (search cluster unreachable, 429, timeouts). A steady rise means an outage.",
		}),
	}
	freshness := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "catalog", Subsystem: "projector", Name: "read_model_freshness_seconds",
		Help: "Now minus the occurred_at of the newest event applied to the read model; grows when the projector stalls or lags.",
	}, m.freshness)
	if err := r.Register(m.projected, m.latency, m.deadLetter, m.retries, freshness); err != nil {
		return nil, err
	}
	return m, nil
}

// Projected records an applied event.
func (m *ProjectorMetrics) Projected(partition int32, occurredAt time.Time) {
	m.projected.WithLabelValues(strconv.Itoa(int(partition))).Inc()
	m.latency.Observe(time.Since(occurredAt).Seconds())
	m.mu.Lock()
	if occurredAt.After(m.lastSeen) {
		m.lastSeen = occurredAt
	}
	m.mu.Unlock()
}

// DeadLettered records a message sent to the DLQ.
func (m *ProjectorMetrics) DeadLettered(class string) { m.deadLetter.WithLabelValues(class).Inc() }

// Retried records one retry of a transient failure.
func (m *ProjectorMetrics) Retried() { m.retries.Inc() }

func (m *ProjectorMetrics) freshness() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lastSeen.IsZero() {
		return 0
	}
	return time.Since(m.lastSeen).Seconds()
}
