package httpport_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/marketplace/catalog/application"
	httpport "github.com/marketplace/catalog/ports/http"
)

// TestProbesOnlyServer: a replica without the API role (a relay, a projector) still answers
// its orchestrator's probes and the metrics scrape; the product routes say that this replica
// does not serve them; /readyz answers for all of the process's roles at once, and each role
// on its own.
func TestProbesOnlyServer(t *testing.T) {
	ok := func(context.Context) error { return nil }
	kafkaDown := func(context.Context) error { return errors.New("kafka down") }
	srv, err := httpport.NewServer(httpport.Config{}, application.Application{}, httpport.Deps{
		ProbesOnly: true,
		RoleReady: map[string]map[string]func(context.Context) error{
			"relay":     {"postgres": ok, "kafka": kafkaDown},
			"projector": {"kafka": kafkaDown, "search": ok},
		},
		Metrics: srvMetrics(),
	})
	if err != nil {
		t.Fatalf("a probes-only server needs no use case: %v", err)
	}
	h := srv.Handler()
	if rec := do(h, "GET", "/healthz", "", nil); rec.Code != 200 {
		t.Errorf("healthz: %d", rec.Code)
	}
	if rec := do(h, "GET", "/metrics", "", nil); rec.Code != 200 || !strings.Contains(rec.Body.String(), "up 1") {
		t.Errorf("metrics: %d %s", rec.Code, rec.Body)
	}
	for _, path := range []string{"/v1/products", "/v1/products/search?q=x", "/v1/products/0b9d3c1e-5a5e-4a4e-9d8e-2f1b7c3d4e5f"} {
		rec := do(h, "GET", path, "", nil)
		if p := decodeProblem(t, rec); rec.Code != 404 || !strings.Contains(p.Detail, "api role") {
			t.Errorf("GET %s: %d %+v, want 404 saying the replica does not run the api role", path, rec.Code, p)
		}
	}
	for _, tc := range []struct {
		path, role string
		status     int
		checks     []string
	}{
		{"/readyz", "projector+relay", 503, []string{"kafka", "postgres", "search"}},
		{"/readyz?role=relay", "relay", 503, []string{"kafka", "postgres"}},
		{"/readyz?role=projector", "projector", 503, []string{"kafka", "search"}},
	} {
		checkReadiness(t, h, tc.path, tc.status, tc.role, tc.checks)
	}
	if rec := do(h, "GET", "/readyz?role=api", "", nil); rec.Code != 400 {
		t.Errorf("readiness of the api role on a replica without it: %d, want 400", rec.Code)
	}
}

func srvMetrics() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "up 1\n") })
}
