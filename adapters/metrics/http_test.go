package metrics_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/marketplace/catalog/adapters/metrics"
)

func TestObserveHTTPLabelsByMethodRouteAndCode(t *testing.T) {
	r := newRegistry(t)
	m, err := metrics.NewHTTPMetrics(r)
	if err != nil {
		t.Fatal(err)
	}
	m.ObserveHTTP("GET", "/v1/products/{id}", 200, 3*time.Millisecond)
	m.ObserveHTTP("GET", "/v1/products/{id}", 200, 5*time.Millisecond)
	m.ObserveHTTP("GET", "/v1/products/{id}", 404, time.Millisecond)
	m.ObserveHTTP("POST", "/v1/products", 201, 20*time.Millisecond)
	m.ObserveHTTP("BREW", "unmatched", 405, time.Millisecond)

	for _, c := range []struct {
		method, route, code string
		want                uint64
	}{
		{"GET", "/v1/products/{id}", "200", 2},
		{"GET", "/v1/products/{id}", "404", 1},
		{"POST", "/v1/products", "201", 1},
		{"OTHER", "unmatched", "405", 1},
	} {
		got, ok := histogramCount(t, r, "catalog_http_request_duration_seconds", map[string]string{"method": c.method, "route": c.route, "code": c.code})
		if !ok || got != c.want {
			t.Errorf("%s %s %s: count %d (found %v), want %d", c.method, c.route, c.code, got, ok, c.want)
		}
	}
	if n, err := testutil.GatherAndCount(r.Prometheus(), "catalog_http_request_duration_seconds"); err != nil || n != 4 {
		t.Fatalf("%d series (%v), want 4: an unknown method must not make a series of its own", n, err)
	}
	if _, err := metrics.NewHTTPMetrics(r); err == nil {
		t.Fatal("registering the HTTP metrics twice on one registry succeeded")
	}
}
