package metrics

import "github.com/prometheus/client_golang/prometheus"

// RetentionMetrics counts the outbox rows the retention job deleted. The table's size is a
// gauge of the operations sampler (ops.go), so it is not duplicated here.
type RetentionMetrics struct {
	deleted prometheus.Counter
}

// NewRetentionMetrics registers the retention series on r.
func NewRetentionMetrics(r *Registry) (*RetentionMetrics, error) {
	m := &RetentionMetrics{deleted: prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "catalog", Subsystem: "outbox", Name: "retention_deleted_rows_total",
		Help: "Relayed outbox rows deleted after the retention period.",
	})}
	if err := r.Register(m.deleted); err != nil {
		return nil, err
	}
	return m, nil
}

// OutboxRowsDeleted records a deleted batch.
func (m *RetentionMetrics) OutboxRowsDeleted(n int64) { m.deleted.Add(float64(n)) }
