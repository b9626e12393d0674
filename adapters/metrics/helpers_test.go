package metrics_test

import (
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/marketplace/catalog/adapters/metrics"
)

func newRegistry(t *testing.T) *metrics.Registry {
	t.Helper()
	r, err := metrics.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// histogramCount returns the sample count of the histogram series name{labels}, and whether
// the series exists.
func histogramCount(t *testing.T, r *metrics.Registry, name string, labels map[string]string) (uint64, bool) {
	t.Helper()
	m, ok := find(t, r, name, labels)
	if !ok {
		return 0, false
	}
	return m.GetHistogram().GetSampleCount(), true
}

// counterValue returns the value of the counter series name{labels}.
func counterValue(t *testing.T, r *metrics.Registry, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	m, ok := find(t, r, name, labels)
	if !ok {
		return 0, false
	}
	return m.GetCounter().GetValue(), true
}

func find(t *testing.T, r *metrics.Registry, name string, labels map[string]string) (*dto.Metric, bool) {
	t.Helper()
	mfs, err := r.Prometheus().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			return m, true
		}
	}
	return nil, false
}
