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
	dlqFailed  prometheus.Counter
	retries    prometheus.Counter
	freshness  *freshnessCollector
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
			Help: "Messages written to the dead-letter topic, by error class.",
		}, []string{"class"}),
		dlqFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "catalog", Subsystem: "projector", Name: "dlq_publish_failures_total",
			Help: "Failed attempts to write a message to the dead-letter topic; each is retried with backoff while its partition waits.",
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "catalog", Subsystem: "projector", Name: "transient_retries_total",
			Help: "Retries of transient failures (search cluster unreachable, 429, timeouts). A steady rise means an outage.",
		}),
		freshness: &freshnessCollector{desc: prometheus.NewDesc("catalog_projector_read_model_freshness_seconds",
			"For each partition this process consumes: how long the oldest event not yet applied to the read model has waited since it reached Kafka; "+
				"0 when every fetched event is applied. Grows only while events wait (a search outage, a message stuck on its way to the DLQ).",
			[]string{"partition"}, nil)},
	}
	if err := r.Register(m.projected, m.latency, m.deadLetter, m.dlqFailed, m.retries, m.freshness); err != nil {
		return nil, err
	}
	return m, nil
}

// StartDeadLetterClasses exports the dead-letter counter of each class at zero, so an alert
// on its rate sees the first dead letter of a class instead of a series appearing from nowhere.
func (m *ProjectorMetrics) StartDeadLetterClasses(classes ...string) {
	for _, c := range classes {
		m.deadLetter.WithLabelValues(c)
	}
}

// WatchWaiting makes the freshness gauge read waiting at every scrape: for each partition the
// process consumes, since when its oldest event not yet applied has been in Kafka (the zero
// time when none waits). Without it the gauge has no series.
func (m *ProjectorMetrics) WatchWaiting(waiting func() map[int32]time.Time) {
	m.freshness.mu.Lock()
	defer m.freshness.mu.Unlock()
	m.freshness.waiting = waiting
}

// Projected records an applied event.
func (m *ProjectorMetrics) Projected(partition int32, occurredAt time.Time) {
	m.projected.WithLabelValues(strconv.Itoa(int(partition))).Inc()
	m.latency.Observe(time.Since(occurredAt).Seconds())
}

// DeadLettered records a message written to the DLQ.
func (m *ProjectorMetrics) DeadLettered(class string) { m.deadLetter.WithLabelValues(class).Inc() }

// DeadLetterFailed records a failed attempt to write a message to the DLQ.
func (m *ProjectorMetrics) DeadLetterFailed() { m.dlqFailed.Inc() }

// Retried records one retry of a transient failure.
func (m *ProjectorMetrics) Retried() { m.retries.Inc() }

// freshnessCollector computes the freshness gauge at scrape time from the subscriber's view
// of what waits, so it is exact at every scrape and costs nothing between them.
type freshnessCollector struct {
	desc *prometheus.Desc

	mu      sync.Mutex
	waiting func() map[int32]time.Time
}

func (c *freshnessCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *freshnessCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	waiting := c.waiting
	c.mu.Unlock()
	if waiting == nil {
		return
	}
	now := time.Now()
	for p, since := range waiting() {
		age := 0.0
		if !since.IsZero() {
			age = max(now.Sub(since).Seconds(), 0)
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, age, strconv.Itoa(int(p)))
	}
}
