package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/marketplace/catalog/application/ops"
)

// OutboxSource reads the outbox backlog; the PostgreSQL ops statistics satisfy it.
type OutboxSource interface {
	// OutboxStats returns the backlog of every lane after the relay's positions.
	OutboxStats(ctx context.Context) (ops.OutboxStats, error)
}

// OpsSamplerConfig configures the OpsSampler.
type OpsSamplerConfig struct {
	// Interval is the time between samples; 0 means DefaultOpsSampleInterval.
	Interval time.Duration
	// ProjectorGroup and EventsTopic name the lag to sample.
	ProjectorGroup string
	// EventsTopic is the topic the projector consumes.
	EventsTopic string
	// DLQTopic is the dead-letter topic whose depth is sampled.
	DLQTopic string
}

// DefaultOpsSampleInterval is how often the sampler reads its sources by default: fresh
// enough for alerts with a one-minute window, cheap enough to run on every replica.
const DefaultOpsSampleInterval = 5 * time.Second

// OpsSources are what the OpsSampler reads.
type OpsSources struct {
	// Outbox reads the outbox backlog.
	Outbox OutboxSource
	// Events reads consumer-group lag and topic offsets.
	Events ops.EventStats
	// DeadLetters tells which dead letters were replayed or resolved.
	DeadLetters ops.DLQLedger
	// Progress remembers when each partition last committed; pass the status's, so both
	// know of a stall as early as either has seen it. Nil keeps one of the sampler's own.
	Progress *ops.CommitProgress
	// Replication reads the topics' replication; optional.
	Replication ops.Replication
	// Search reads the search cluster's health; optional (the embedded engine has none).
	Search ops.SearchCluster
}

// OpsSampler exports the operational gauges (outbox backlog, oldest event age, age of the
// oldest transaction holding the relay back, outbox table size, projector lag and commit
// stall per partition, DLQ depth and unhandled dead letters). They come from database and Kafka queries,
// so a background loop (Run, a role of the process) refreshes them every Interval and a
// scrape only reads the last values: scrapes never query the sources, however many
// scrapers there are. A source that fails keeps its last values and counts in
// catalog_ops_sample_errors_total.
type OpsSampler struct {
	cfg OpsSamplerConfig
	src OpsSources
	log *slog.Logger

	backlog      prometheus.Gauge
	oldestAge    prometheus.Gauge
	blockingTx   prometheus.Gauge
	tableBytes   prometheus.Gauge
	lag          *prometheus.GaugeVec
	stalled      *prometheus.GaugeVec
	dlqDepth     prometheus.Gauge
	dlqUnhandled prometheus.Gauge
	errors       *prometheus.CounterVec
	clusters     *clusterGauges // nil without a replication or search source

	mu         sync.Mutex
	partitions map[string]bool // lag label values set by the last good sample
}

// NewOpsSampler registers the gauges on r.
func NewOpsSampler(r *Registry, src OpsSources, cfg OpsSamplerConfig, log *slog.Logger) (*OpsSampler, error) {
	if r == nil || src.Outbox == nil || src.Events == nil || src.DeadLetters == nil {
		return nil, errors.New("ops sampler: nil dependency")
	}
	if src.Progress == nil {
		src.Progress = ops.NewCommitProgress(nil)
	}
	if cfg.ProjectorGroup == "" || cfg.EventsTopic == "" || cfg.DLQTopic == "" {
		return nil, errors.New("ops sampler: projector group, events topic and DLQ topic are required")
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultOpsSampleInterval
	}
	if cfg.Interval < 0 {
		return nil, fmt.Errorf("ops sampler: interval %s is negative", cfg.Interval)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &OpsSampler{cfg: cfg, src: src, log: log, partitions: map[string]bool{},
		backlog: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "catalog", Subsystem: "outbox", Name: "backlog_events",
			Help: "Committed outbox events the relay has not forwarded yet, all lanes.",
		}),
		oldestAge: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "catalog", Subsystem: "outbox", Name: "oldest_event_age_seconds",
			Help: "Age of the oldest outbox event not yet forwarded; 0 when the backlog is empty. Grows when the relay stops or a long transaction holds it back.",
		}),
		blockingTx: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "catalog", Subsystem: "outbox", Name: "blocking_transaction_age_seconds",
			Help: "Age of the oldest open transaction holding a transaction id anywhere in the PostgreSQL cluster (every database, prepared transactions included): " +
				"the relay cannot pass it, so events committed after it began wait. About 0 normally; alert when it nears the outbox age limit (60 s).",
		}),
		tableBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "catalog", Subsystem: "outbox", Name: "table_bytes",
			Help: "Size of the outbox table on disk, indexes and TOAST included.",
		}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "catalog", Subsystem: "projector", Name: "lag",
			Help: "Records of the events topic the projector's consumer group has still to read, by partition.",
		}, []string{"partition"}),
		stalled: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "catalog", Subsystem: "projector", Name: "partition_stalled_seconds",
			Help: "How long the projector group's committed offset of a partition has stood still while events wait behind it, as far as this process has watched; 0 while it moves or nothing waits.",
		}, []string{"partition"}),
		dlqDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "catalog", Name: "dlq_depth",
			Help: "Messages retained in the dead-letter topic, handled or not (until the topic's retention removes them); catalog_dlq_unhandled is the health signal.",
		}),
		dlqUnhandled: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "catalog", Name: "dlq_unhandled",
			Help: "Retained dead letters nobody has replayed or resolved yet ('catalog dlq replay', 'catalog dlq resolve'); any needs an operator, nothing is replayed automatically.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "catalog", Subsystem: "ops", Name: "sample_errors_total",
			Help: "Failed samples of the operational gauges by source (outbox, projector_lag, dlq, kafka_replication, search_health); the gauges keep their last values.",
		}, []string{"source"}),
	}
	if err := r.Register(s.backlog, s.oldestAge, s.blockingTx, s.tableBytes, s.lag, s.stalled, s.dlqDepth, s.dlqUnhandled, s.errors); err != nil {
		return nil, fmt.Errorf("ops sampler: %w", err)
	}
	for _, source := range []string{"outbox", "projector_lag", "dlq"} {
		s.errors.WithLabelValues(source)
	}
	if src.Replication != nil || src.Search != nil {
		g, err := newClusterGauges(r)
		if err != nil {
			return nil, fmt.Errorf("ops sampler: %w", err)
		}
		s.clusters = g
		for source, on := range map[string]bool{"kafka_replication": src.Replication != nil, "search_health": src.Search != nil} {
			if on {
				s.errors.WithLabelValues(source)
			}
		}
	}
	return s, nil
}

// Run samples at once and then every Interval until ctx is cancelled; it returns nil then.
func (s *OpsSampler) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		s.Sample(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Sample reads every source once (each bounded by the interval) and updates the gauges.
func (s *OpsSampler) Sample(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Interval)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		st, err := s.src.Outbox.OutboxStats(ctx)
		if s.failed(ctx, "outbox", err) {
			return
		}
		s.backlog.Set(float64(st.Backlog))
		s.oldestAge.Set(st.OldestAge.Seconds())
		s.blockingTx.Set(st.BlockingTransactionAge.Seconds())
		s.tableBytes.Set(float64(st.TableBytes))
	})
	wg.Go(func() {
		gl, err := s.src.Events.GroupLag(ctx, s.cfg.ProjectorGroup, s.cfg.EventsTopic)
		if s.failed(ctx, "projector_lag", err) {
			return
		}
		s.setLag(s.src.Progress.Observe(gl))
	})
	wg.Go(func() {
		c, err := ops.CountDeadLetters(ctx, s.src.Events, s.src.DeadLetters, s.cfg.DLQTopic)
		if s.failed(ctx, "dlq", err) {
			return
		}
		s.dlqDepth.Set(float64(c.Depth))
		s.dlqUnhandled.Set(float64(c.Unhandled))
	})
	s.sampleClusters(ctx, &wg)
	wg.Wait()
}

// setLag sets every partition's lag and stall and drops the series of partitions that are
// gone (a recreated topic), so a dashboard never sums lag of partitions that no longer exist.
func (s *OpsSampler) setLag(gl ops.GroupLag) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := make(map[string]bool, len(gl.Partitions))
	for _, p := range gl.Partitions {
		label := strconv.Itoa(int(p.Partition))
		s.lag.WithLabelValues(label).Set(float64(p.Lag))
		s.stalled.WithLabelValues(label).Set(p.StalledFor.Seconds())
		seen[label] = true
	}
	for label := range s.partitions {
		if !seen[label] {
			s.lag.DeleteLabelValues(label)
			s.stalled.DeleteLabelValues(label)
		}
	}
	s.partitions = seen
}

func (s *OpsSampler) failed(ctx context.Context, source string, err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return true // shutting down: not a failure of the source
	}
	s.errors.WithLabelValues(source).Inc()
	s.log.Warn("ops sampler: could not sample", "source", source, "err", err)
	return true
}
