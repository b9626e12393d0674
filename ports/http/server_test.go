package httpport_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marketplace/catalog/application"
	httpport "github.com/marketplace/catalog/ports/http"
)

func TestConfig(t *testing.T) {
	srv, err := httpport.NewServer(httpport.Config{}, newStore().app(), httpport.Deps{})
	if err != nil || srv == nil {
		t.Fatalf("zero config: %v", err)
	}
	if err := (httpport.Config{}).Validate(); err == nil {
		t.Error("Validate accepted an empty config without defaults")
	}
	bad := httpport.Config{Addr: "no-port", MaxBodyBytes: -1, ReadTimeout: -time.Second}
	_, err = httpport.NewServer(bad, newStore().app(), httpport.Deps{})
	if err == nil {
		t.Fatal("NewServer accepted an invalid config")
	}
	for _, want := range []string{"no-port", "max body bytes", "read timeout"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestNewServerRejectsIncompleteWiring(t *testing.T) {
	app := newStore().app()
	app.Queries.ProductByID = nil
	if _, err := httpport.NewServer(httpport.Config{}, app, httpport.Deps{}); err == nil || !strings.Contains(err.Error(), "ProductByID") {
		t.Errorf("missing query: %v", err)
	}
	if _, err := httpport.NewServer(httpport.Config{}, application.Application{}, httpport.Deps{}); err == nil {
		t.Error("empty application accepted")
	}
	deps := httpport.Deps{Ready: map[string]func(context.Context) error{"postgres": nil}}
	if _, err := httpport.NewServer(httpport.Config{}, newStore().app(), deps); err == nil {
		t.Error("nil readiness check accepted")
	}
	ok := func(context.Context) error { return nil }
	for name, roles := range map[string]map[string]map[string]func(context.Context) error{
		"api role twice": {"api": {"kafka": ok}},
		"unnamed role":   {"": {"kafka": ok}},
		"nil role check": {"relay": {"kafka": nil}},
	} {
		if _, err := httpport.NewServer(httpport.Config{}, newStore().app(), httpport.Deps{RoleReady: roles}); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

// TestReadyzRoles: the API's readiness (what a load balancer probes) depends only on its own
// checks; a failing Kafka shows on the roles that need it, never on /readyz.
func TestReadyzRoles(t *testing.T) {
	ok := func(context.Context) error { return nil }
	kafkaDown := func(context.Context) error { return errors.New("kafka: metadata: dial tcp 127.0.0.1:9094: refused") }
	srv, logs := newServer(t, newStore(), func(d *httpport.Deps) {
		d.Ready = map[string]func(context.Context) error{"postgres": ok}
		d.RoleReady = map[string]map[string]func(context.Context) error{
			"relay":     {"postgres": ok, "kafka": kafkaDown},
			"projector": {"kafka": kafkaDown, "search": ok},
		}
	})
	for _, tc := range []struct {
		path   string
		status int
		role   string
		checks []string
	}{
		{"/readyz", 200, "api", []string{"postgres"}},
		{"/readyz?role=api", 200, "api", []string{"postgres"}},
		{"/readyz?role=relay", 503, "relay", []string{"kafka", "postgres"}},
		{"/readyz?role=projector", 503, "projector", []string{"kafka", "search"}},
	} {
		rec := checkReadiness(t, srv.Handler(), tc.path, tc.status, tc.role, tc.checks)
		checkAgainstSpec(t, "GET", tc.path, "", nil, rec)
	}
	rec := do(srv.Handler(), "GET", "/readyz?role=indexer", "", nil)
	if p := decodeProblem(t, rec); rec.Code != 400 || p.Type != httpport.ProblemInvalidParameter || !strings.Contains(p.Detail, "api, projector, relay") {
		t.Errorf("unknown role: %d %+v", rec.Code, p)
	}
	if !strings.Contains(logs.String(), `"role":"relay"`) {
		t.Errorf("a failed role check is not logged with its role:\n%s", logs)
	}
}

func TestSmallBodyLimit(t *testing.T) {
	srv, err := httpport.NewServer(httpport.Config{MaxBodyBytes: 32}, newStore().app(), httpport.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if rec := do(srv.Handler(), "POST", "/v1/products", validBody, nil); rec.Code != 413 {
		t.Errorf("status %d, want 413", rec.Code)
	}
}

func TestHealthz(t *testing.T) {
	srv, _ := newServer(t, newStore(), func(d *httpport.Deps) {
		d.Ready = map[string]func(context.Context) error{"postgres": func(context.Context) error { return errors.New("down") }}
	})
	rec := do(srv.Handler(), "GET", "/healthz", "", nil)
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"status":"ok"}` {
		t.Errorf("healthz: %d %s", rec.Code, rec.Body)
	}
	checkAgainstSpec(t, "GET", "/healthz", "", nil, rec)
}

func TestReadyz(t *testing.T) {
	ok := func(context.Context) error { return nil }
	failing := func(context.Context) error { return errors.New("dial tcp 10.0.0.9:9092: refused") }
	hanging := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	ignoresCtx := func(context.Context) error { time.Sleep(time.Second); return nil }

	type check struct{ Status, Error string }
	tests := []struct {
		name   string
		checks map[string]func(context.Context) error
		status int
		want   map[string]check
	}{
		{"no checks", nil, 200, map[string]check{}},
		{"all ok", map[string]func(context.Context) error{"postgres": ok, "kafka": ok}, 200,
			map[string]check{"postgres": {"ok", ""}, "kafka": {"ok", ""}}},
		{"one fails", map[string]func(context.Context) error{"postgres": ok, "kafka": failing}, 503,
			map[string]check{"postgres": {"ok", ""}, "kafka": {"fail", "failed"}}},
		{"timeout", map[string]func(context.Context) error{"elasticsearch": hanging, "slow": ignoresCtx}, 503,
			map[string]check{"elasticsearch": {"fail", "timeout"}, "slow": {"fail", "timeout"}}},
		{"panic", map[string]func(context.Context) error{"broken": func(context.Context) error { panic("nil map") }}, 503,
			map[string]check{"broken": {"fail", "failed"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, logs := newServer(t, newStore(), func(d *httpport.Deps) { d.Ready = tc.checks })
			httpport.SetReadyTimeout(srv, 50*time.Millisecond)
			start := time.Now()
			rec := do(srv.Handler(), "GET", "/readyz", "", nil)
			if time.Since(start) > 500*time.Millisecond {
				t.Errorf("readyz took %s; checks must not outlive their timeout", time.Since(start))
			}
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			var body struct {
				Status string           `json:"status"`
				Checks map[string]check `json:"checks"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			wantStatus := map[int]string{200: "ok", 503: "unavailable"}[tc.status]
			if body.Status != wantStatus || len(body.Checks) != len(tc.want) {
				t.Errorf("body = %s", rec.Body)
			}
			for name, want := range tc.want {
				if body.Checks[name] != want {
					t.Errorf("check %s = %+v, want %+v", name, body.Checks[name], want)
				}
			}
			if strings.Contains(rec.Body.String(), "10.0.0.9") {
				t.Errorf("check error leaked: %s", rec.Body)
			}
			if tc.name == "one fails" && !strings.Contains(logs.String(), "10.0.0.9") {
				t.Errorf("check error not logged:\n%s", logs)
			}
			checkAgainstSpec(t, "GET", "/readyz", "", nil, rec)
		})
	}
}

func TestMetrics(t *testing.T) {
	srv, _ := newServer(t, newStore())
	rec := do(srv.Handler(), "GET", "/metrics", "", nil)
	if rec.Code != 200 || rec.Body.String() != "up 1\n" {
		t.Errorf("metrics: %d %s", rec.Code, rec.Body)
	}
	srv, _ = newServer(t, newStore(), func(d *httpport.Deps) { d.Metrics = nil })
	if rec := do(srv.Handler(), "GET", "/metrics", "", nil); rec.Code != 404 {
		t.Errorf("metrics without handler: %d", rec.Code)
	}
}

func TestRequestID(t *testing.T) {
	srv, logs := newServer(t, seeded())
	h := srv.Handler()

	rec := do(h, "GET", "/v1/products/"+liveID, "", hdr("X-Request-Id", "gw-123:abc"))
	if got := rec.Header().Get("X-Request-Id"); got != "gw-123:abc" {
		t.Errorf("caller id not echoed: %q", got)
	}
	generated := do(h, "GET", "/healthz", "", nil).Header().Get("X-Request-Id")
	if generated == "" {
		t.Error("no id generated")
	}
	if other := do(h, "GET", "/healthz", "", nil).Header().Get("X-Request-Id"); other == generated {
		t.Error("generated ids repeat")
	}
	// An id that could forge log lines is replaced, not echoed.
	evil := do(h, "GET", "/healthz", "", hdr("X-Request-Id", "x\" level=ERROR msg=forged"))
	if got := evil.Header().Get("X-Request-Id"); strings.Contains(got, "forged") || got == "" {
		t.Errorf("unsafe id echoed: %q", got)
	}

	// The access log names the route pattern, not the raw path, and the request id.
	var line map[string]any
	for l := range strings.SplitSeq(logs.String(), "\n") {
		if strings.Contains(l, `"gw-123:abc"`) && strings.Contains(l, `"http request"`) {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
		}
	}
	if line == nil {
		t.Fatalf("no access log line with the request id:\n%s", logs)
	}
	if line["route"] != "/v1/products/{id}" || line["method"] != "GET" || line["status"] != float64(200) || line["duration"] == nil {
		t.Errorf("access log = %v", line)
	}
}

func TestObserveAndMiddleware(t *testing.T) {
	var (
		mu   sync.Mutex
		recs []httpport.RequestRecord
	)
	srv, _ := newServer(t, seeded(), func(d *httpport.Deps) {
		d.ObserveRequest = func(_ context.Context, r httpport.RequestRecord) {
			mu.Lock()
			defer mu.Unlock()
			recs = append(recs, r)
		}
		d.Middleware = func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Outer", "1")
				next.ServeHTTP(w, r)
			})
		}
	})
	h := srv.Handler()
	for _, path := range []string{"/v1/products/" + liveID, "/v1/products/" + missingID, "/nope/1", "/nope/2"} {
		if rec := do(h, "GET", path, "", nil); rec.Header().Get("X-Outer") != "1" {
			t.Errorf("%s: outer middleware not applied", path)
		}
	}
	want := []httpport.RequestRecord{
		{Method: "GET", Route: "/v1/products/{id}", Status: 200},
		{Method: "GET", Route: "/v1/products/{id}", Status: 404},
		{Method: "GET", Route: "unmatched", Status: 404},
		{Method: "GET", Route: "unmatched", Status: 404},
	}
	if len(recs) != len(want) {
		t.Fatalf("observed %d requests, want %d", len(recs), len(want))
	}
	for i, w := range want {
		got := recs[i]
		if got.Method != w.Method || got.Route != w.Route || got.Status != w.Status || got.RequestID == "" || got.BytesWritten == 0 {
			t.Errorf("record %d = %+v, want %+v", i, got, w)
		}
	}
}

// TestRunGracefulShutdown cancels the server while a request is in flight: the request must
// complete and Serve must return nil.
func TestRunGracefulShutdown(t *testing.T) {
	s := newStore()
	s.gate, s.entered = make(chan struct{}), make(chan struct{})
	srv, _ := newServer(t, s)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()

	url := "http://" + ln.Addr().String()
	type result struct {
		status int
		err    error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Post(url+"/v1/products", "application/json", strings.NewReader(validBody))
		if err != nil {
			got <- result{err: err}
			return
		}
		_ = resp.Body.Close()
		got <- result{status: resp.StatusCode}
	}()

	<-s.entered // the request is inside the handler
	cancel()
	// Shutdown closes the listener at once, while the request is still running.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 100*time.Millisecond)
		if err != nil {
			break
		}
		_ = c.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still accepts connections during shutdown")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(s.gate)

	if r := <-got; r.err != nil || r.status != http.StatusCreated {
		t.Errorf("in-flight request: status %d err %v", r.status, r.err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after shutdown")
	}
}

func TestRunListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv, err := httpport.NewServer(httpport.Config{Addr: ln.Addr().String()}, newStore().app(), httpport.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Run(context.Background()); err == nil {
		t.Error("Run on a busy port returned nil")
	}
}

// TestRunShutdownTimeout: a request that outlives the grace period is cut off and Serve
// reports it, instead of hanging the process's exit.
func TestRunShutdownTimeout(t *testing.T) {
	s := newStore()
	s.gate, s.entered = make(chan struct{}), make(chan struct{})
	defer close(s.gate)
	srv, err := httpport.NewServer(httpport.Config{ShutdownTimeout: 50 * time.Millisecond}, s.app(), httpport.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	go func() {
		resp, err := http.Post("http://"+ln.Addr().String()+"/v1/products", "application/json", strings.NewReader(validBody))
		if err == nil {
			_ = resp.Body.Close()
		}
	}()
	<-s.entered
	cancel()
	select {
	case err := <-served:
		if err == nil || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Serve = %v, want a shutdown deadline error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve hung past the shutdown timeout")
	}
}
