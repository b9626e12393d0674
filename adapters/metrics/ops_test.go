package metrics_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/marketplace/catalog/adapters/metrics"
	"github.com/marketplace/catalog/application/ops"
)

// opsSources is an outbox and a Kafka in memory that count how often they are asked.
type opsSources struct {
	mu       sync.Mutex
	outbox   ops.OutboxStats
	lag      ops.GroupLag
	dlq      int64
	handled  int64
	err      error
	calls    int
	lastDLQ  string
	lastLagT string
}

func (s *opsSources) OutboxStats(context.Context) (ops.OutboxStats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	return s.outbox, s.err
}

func (s *opsSources) GroupLag(_ context.Context, _, topic string) (ops.GroupLag, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	s.lastLagT = topic
	return s.lag, s.err
}

func (s *opsSources) TopicOffsets(_ context.Context, topic string) (ops.TopicOffsets, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	s.lastDLQ = topic
	return ops.TopicOffsets{{Partition: 0, Start: 10, End: 10 + s.dlq}}, s.err
}

func (s *opsSources) HandledDLQMessages(context.Context, string, ops.TopicOffsets) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.handled, nil
}

func (s *opsSources) callCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func gaugeValue(t *testing.T, r *metrics.Registry, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	m, ok := find(t, r, name, labels)
	if !ok {
		return 0, false
	}
	return m.GetGauge().GetValue(), true
}

func newSampler(t *testing.T, r *metrics.Registry, src *opsSources, interval time.Duration) *metrics.OpsSampler {
	t.Helper()
	s, err := metrics.NewOpsSampler(r, metrics.OpsSources{Outbox: src, Events: src, DeadLetters: src}, metrics.OpsSamplerConfig{Interval: interval, ProjectorGroup: "g",
		EventsTopic: "product.events", DLQTopic: "dlq.product.events"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestOpsSamplerExportsTheGauges(t *testing.T) {
	r := newRegistry(t)
	src := &opsSources{
		outbox:  ops.OutboxStats{Backlog: 42, OldestAge: 90 * time.Second, TableBytes: 65536, BlockingTransactionAge: 75 * time.Second},
		lag:     ops.GroupLag{Partitions: []ops.PartitionLag{{Partition: 0, Lag: 5}, {Partition: 1, Lag: 0}, {Partition: 2, Lag: 7}}},
		dlq:     3,
		handled: 1,
	}
	s := newSampler(t, r, src, time.Minute)
	s.Sample(context.Background())
	for name, want := range map[string]float64{
		"catalog_outbox_backlog_events":                   42,
		"catalog_outbox_oldest_event_age_seconds":         90,
		"catalog_outbox_blocking_transaction_age_seconds": 75,
		"catalog_outbox_table_bytes":                      65536,
		"catalog_dlq_depth":                               3,
		"catalog_dlq_unhandled":                           2,
	} {
		if got, ok := gaugeValue(t, r, name, nil); !ok || got != want {
			t.Errorf("%s = %v (exists %v), want %v", name, got, ok, want)
		}
	}
	for p, want := range map[string]float64{"0": 5, "1": 0, "2": 7} {
		if got, ok := gaugeValue(t, r, "catalog_projector_lag", map[string]string{"partition": p}); !ok || got != want {
			t.Errorf("lag{partition=%s} = %v (exists %v), want %v", p, got, ok, want)
		}
	}
	if src.lastDLQ != "dlq.product.events" || src.lastLagT != "product.events" {
		t.Errorf("asked about %q and %q", src.lastDLQ, src.lastLagT)
	}

	// Scrapes read the last values; they never query the sources.
	before := src.callCount()
	for range 5 {
		if _, err := r.Prometheus().Gather(); err != nil {
			t.Fatal(err)
		}
	}
	if src.callCount() != before {
		t.Errorf("scrapes queried the sources %d times", src.callCount()-before)
	}

	// A partition that is gone loses its series; a failing source keeps the last values and
	// counts the failure.
	src.mu.Lock()
	src.lag = ops.GroupLag{Partitions: []ops.PartitionLag{{Partition: 0, Lag: 1}}}
	src.mu.Unlock()
	s.Sample(context.Background())
	if _, ok := gaugeValue(t, r, "catalog_projector_lag", map[string]string{"partition": "2"}); ok {
		t.Error("the series of a partition that is gone is still exported")
	}
	src.mu.Lock()
	src.err = errors.New("database down")
	src.mu.Unlock()
	s.Sample(context.Background())
	if got, _ := gaugeValue(t, r, "catalog_outbox_backlog_events", nil); got != 42 {
		t.Errorf("backlog after a failed sample = %v, want the last value 42", got)
	}
	for _, source := range []string{"outbox", "projector_lag", "dlq"} {
		if n, ok := counterValue(t, r, "catalog_ops_sample_errors_total", map[string]string{"source": source}); !ok || n != 1 {
			t.Errorf("errors{source=%s} = %v (exists %v), want 1", source, n, ok)
		}
	}
}

// TestOpsSamplerExportsStalls: a partition whose committed offset stands still while events
// wait reports how long, from the sampler's first look; one that moves reports 0.
func TestOpsSamplerExportsStalls(t *testing.T) {
	r := newRegistry(t)
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	progress := ops.NewCommitProgress(func() time.Time { return now })
	src := &opsSources{}
	s, err := metrics.NewOpsSampler(r, metrics.OpsSources{Outbox: src, Events: src, DeadLetters: src, Progress: progress},
		metrics.OpsSamplerConfig{ProjectorGroup: "g", EventsTopic: "e", DLQTopic: "d"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range int64(4) {
		src.mu.Lock()
		src.lag = ops.GroupLag{Group: "g", Topic: "e", Partitions: []ops.PartitionLag{
			{Partition: 0, Committed: 10, End: 20 + i, Lag: 10 + i}, {Partition: 1, Committed: 10 + i, End: 50, Lag: 40 - i}}}
		src.mu.Unlock()
		s.Sample(context.Background())
		now = now.Add(5 * time.Second)
	}
	if got, _ := gaugeValue(t, r, "catalog_projector_partition_stalled_seconds", map[string]string{"partition": "0"}); got != 15 {
		t.Errorf("stalled{partition=0} = %v, want 15", got)
	}
	if got, ok := gaugeValue(t, r, "catalog_projector_partition_stalled_seconds", map[string]string{"partition": "1"}); !ok || got != 0 {
		t.Errorf("stalled{partition=1} = %v (exists %v), want 0", got, ok)
	}
}

func TestOpsSamplerRunsUntilCancelled(t *testing.T) {
	r := newRegistry(t)
	src := &opsSources{}
	s := newSampler(t, r, src, 20*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for src.callCount() < 3*3 { // three samples of three sources
		if time.Now().After(deadline) {
			t.Fatalf("only %d source calls after 5 s", src.callCount())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancellation")
	}
}

func TestNewOpsSamplerChecksItsInputs(t *testing.T) {
	r := newRegistry(t)
	src := &opsSources{}
	if _, err := metrics.NewOpsSampler(r, metrics.OpsSources{Outbox: src, Events: src, DeadLetters: src}, metrics.OpsSamplerConfig{}, nil); err == nil {
		t.Error("empty names accepted")
	}
	named := metrics.OpsSamplerConfig{ProjectorGroup: "g", EventsTopic: "e", DLQTopic: "d"}
	if _, err := metrics.NewOpsSampler(r, metrics.OpsSources{Events: src, DeadLetters: src}, named, nil); err == nil {
		t.Error("nil outbox accepted")
	}
	if _, err := metrics.NewOpsSampler(r, metrics.OpsSources{Outbox: src, Events: src}, named, nil); err == nil {
		t.Error("nil audit log accepted")
	}
}
