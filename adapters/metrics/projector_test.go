package metrics_test

import (
	"testing"
	"time"

	"github.com/marketplace/catalog/adapters/metrics"
)

// TestProjectorFreshnessIsTheAgeOfWhatWaits: the freshness gauge is, per partition, the age
// of the oldest event not yet applied: 0 for a caught-up partition however long it has been
// idle, the wait of the oldest event for one that has events waiting.
func TestProjectorFreshnessIsTheAgeOfWhatWaits(t *testing.T) {
	r := newRegistry(t)
	m, err := metrics.NewProjectorMetrics(r)
	if err != nil {
		t.Fatal(err)
	}
	// An event applied long ago does not make an idle read model stale.
	m.Projected(0, time.Now().Add(-time.Hour))
	if _, ok := gaugeValue(t, r, "catalog_projector_read_model_freshness_seconds", map[string]string{"partition": "0"}); ok {
		t.Fatal("freshness exported before the process consumes anything")
	}
	m.WatchWaiting(func() map[int32]time.Time {
		return map[int32]time.Time{0: {}, 3: time.Now().Add(-42 * time.Second)}
	})
	if got, ok := gaugeValue(t, r, "catalog_projector_read_model_freshness_seconds", map[string]string{"partition": "0"}); !ok || got != 0 {
		t.Errorf("idle partition: freshness %v (exists %v), want 0", got, ok)
	}
	if got, _ := gaugeValue(t, r, "catalog_projector_read_model_freshness_seconds", map[string]string{"partition": "3"}); got < 41 || got > 50 {
		t.Errorf("partition with an event waiting for 42 s: freshness %v", got)
	}
}

// TestProjectorDeadLetterCountersStartAtZero: every class's counter and the publish-failure
// counter exist at 0 before the first dead letter.
func TestProjectorDeadLetterCountersStartAtZero(t *testing.T) {
	r := newRegistry(t)
	m, err := metrics.NewProjectorMetrics(r)
	if err != nil {
		t.Fatal(err)
	}
	m.StartDeadLetterClasses("undecodable", "rejected")
	for _, class := range []string{"undecodable", "rejected"} {
		if v, ok := counterValue(t, r, "catalog_projector_dead_lettered_total", map[string]string{"class": class}); !ok || v != 0 {
			t.Errorf("dead_lettered_total{class=%s} = %v (exists %v), want 0", class, v, ok)
		}
	}
	if v, ok := counterValue(t, r, "catalog_projector_dlq_publish_failures_total", nil); !ok || v != 0 {
		t.Errorf("dlq_publish_failures_total = %v (exists %v), want 0", v, ok)
	}
	m.DeadLettered("rejected")
	m.DeadLetterFailed()
	if v, _ := counterValue(t, r, "catalog_projector_dead_lettered_total", map[string]string{"class": "rejected"}); v != 1 {
		t.Errorf("dead_lettered_total{class=rejected} = %v, want 1", v)
	}
	if v, _ := counterValue(t, r, "catalog_projector_dlq_publish_failures_total", nil); v != 1 {
		t.Errorf("dlq_publish_failures_total = %v, want 1", v)
	}
}
