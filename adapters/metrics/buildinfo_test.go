package metrics_test

import (
	"testing"

	"github.com/marketplace/catalog/adapters/metrics"
)

func TestBuildInfoCarriesTheBuildAsLabels(t *testing.T) {
	r := newRegistry(t)
	if err := r.RegisterBuildInfo(metrics.Build{Version: "v1.2.3", Commit: "abc1234", GoVersion: "go1.26"}); err != nil {
		t.Fatal(err)
	}
	m, ok := find(t, r, "catalog_build_info", map[string]string{"version": "v1.2.3", "commit": "abc1234", "goversion": "go1.26"})
	if !ok || m.GetGauge().GetValue() != 1 {
		t.Fatalf("catalog_build_info{version=v1.2.3,commit=abc1234,goversion=go1.26} = %v (found %v), want 1", m.GetGauge().GetValue(), ok)
	}
}
