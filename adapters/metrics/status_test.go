package metrics_test

import (
	"context"
	"testing"
	"time"

	"github.com/marketplace/catalog/adapters/metrics"
	"github.com/marketplace/catalog/application/ops"
)

type fakeStatus struct{ problems []ops.Problem }

func (f *fakeStatus) Status(context.Context, ops.Thresholds) (ops.Status, error) {
	return ops.Status{Problems: f.problems}, nil
}

func gauge(t *testing.T, r *metrics.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	m, ok := find(t, r, name, labels)
	if !ok {
		t.Fatalf("%s%v is not exported", name, labels)
	}
	return m.GetGauge().GetValue()
}

// Every check has a series before it is first found, and a check that clears goes back to 0.
func TestStatusProblemsAreExportedPerCheck(t *testing.T) {
	r := newRegistry(t)
	src := &fakeStatus{}
	s, err := metrics.NewStatusSampler(r, src, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{ops.CheckAliasMissing, ops.CheckAliasBehind, ops.CheckMappingOutdated, ops.CheckCountDrift} {
		if v := gauge(t, r, "catalog_status_problem", map[string]string{"check": c}); v != 0 {
			t.Fatalf("catalog_status_problem{check=%q} = %v before any sample, want 0", c, v)
		}
	}
	src.problems = []ops.Problem{{Check: ops.CheckAliasBehind}}
	s.Sample(context.Background())
	if v := gauge(t, r, "catalog_status_problem", map[string]string{"check": ops.CheckAliasBehind}); v != 1 {
		t.Fatalf("alias_index_behind = %v while status reports it, want 1", v)
	}
	src.problems = nil
	s.Sample(context.Background())
	if v := gauge(t, r, "catalog_status_problem", map[string]string{"check": ops.CheckAliasBehind}); v != 0 {
		t.Fatalf("alias_index_behind = %v after it cleared, want 0", v)
	}
}

func TestVerifyReportIsExported(t *testing.T) {
	r := newRegistry(t)
	s, err := metrics.NewStatusSampler(r, &fakeStatus{}, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v := gauge(t, r, "catalog_verify_differences", map[string]string{"category": "stale"}); v != 0 {
		t.Fatalf("stale differences before any verify = %v", v)
	}
	at := time.Unix(1_700_000_000, 0)
	s.ObserveVerify(ops.VerifyReport{StartedAt: at, Duration: 2 * time.Second,
		Categories: []ops.CategoryReport{{Category: ops.CategoryStale, Count: 3}, {Category: ops.CategoryMissing}}})
	if v := gauge(t, r, "catalog_verify_differences", map[string]string{"category": "stale"}); v != 3 {
		t.Fatalf("stale differences = %v, want 3", v)
	}
	if v := gauge(t, r, "catalog_verify_last_completed_timestamp_seconds", nil); v != 1_700_000_002 {
		t.Fatalf("last completed = %v, want 1700000002", v)
	}
}

// The relay's error counter exists before the first error, so increase() sees that error.
func TestRelayResultCountersStartAtZero(t *testing.T) {
	r := newRegistry(t)
	if _, err := metrics.NewRelayMetrics(r); err != nil {
		t.Fatal(err)
	}
	for _, res := range []string{"ok", "error"} {
		if v, ok := counterValue(t, r, "catalog_outbox_relay_events_total", map[string]string{"result": res}); !ok || v != 0 {
			t.Fatalf("catalog_outbox_relay_events_total{result=%q} = %v (exported %v), want 0", res, v, ok)
		}
	}
}
