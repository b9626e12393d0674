package httpport_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	httpport "github.com/marketplace/catalog/ports/http"
)

// syncBuffer collects log output from handler goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newServer builds a server over s. opts adjust the dependencies; the log goes to the
// returned buffer so tests can assert on what on-call would see.
func newServer(t *testing.T, s *store, opts ...func(*httpport.Deps)) (*httpport.Server, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	deps := httpport.Deps{
		Log:     slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "up 1\n") }),
	}
	for _, o := range opts {
		o(&deps)
	}
	srv, err := httpport.NewServer(httpport.Config{}, s.app(), deps)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	return srv, logs
}

// do sends one request through the full handler and returns the recorded response.
func do(h http.Handler, method, path, body string, header http.Header) *httptest.ResponseRecorder {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, r)
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func decodeProblem(t *testing.T, rec *httptest.ResponseRecorder) httpport.Problem {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json; body %s", ct, rec.Body)
	}
	var p httpport.Problem
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatalf("decode problem: %v; body %s", err, rec.Body)
	}
	return p
}

var (
	specOnce   sync.Once
	specDoc    *openapi3.T
	specRouter routers.Router
	specErr    error
)

// loadSpec parses and validates the embedded document once per test binary.
func loadSpec(t *testing.T) (*openapi3.T, routers.Router) {
	t.Helper()
	specOnce.Do(func() {
		loader := openapi3.NewLoader()
		specDoc, specErr = loader.LoadFromData(httpport.OpenAPIDocument())
		if specErr != nil {
			return
		}
		if specErr = specDoc.Validate(loader.Context); specErr != nil {
			return
		}
		specRouter, specErr = legacy.NewRouter(specDoc)
	})
	if specErr != nil {
		t.Fatalf("openapi.yaml: %v", specErr)
	}
	return specDoc, specRouter
}

// checkAgainstSpec validates a recorded response (status, headers, body) against
// openapi.yaml, and the request too when the server accepted it. Requests to paths the spec
// does not have (deliberate 404 probes) are skipped.
func checkAgainstSpec(t *testing.T, method, path, body string, header http.Header, rec *httptest.ResponseRecorder) {
	t.Helper()
	_, router := loadSpec(t)
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if body != "" && req.Header.Get("Content-Type") == "" {
		// The server accepts a JSON body without Content-Type; the spec cannot say "optional".
		req.Header.Set("Content-Type", "application/json")
	}
	route, params, err := router.FindRoute(req)
	if err != nil {
		// Only probes of paths or methods the API does not have may be missing from the spec.
		if rec.Code != http.StatusNotFound && rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("%s %s is not in openapi.yaml: %v", method, path, err)
		}
		return
	}
	ctx := context.Background()
	reqInput := &openapi3filter.RequestValidationInput{
		Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{MultiError: true, SkipSettingDefaults: true},
	}
	if rec.Code < 300 {
		if err := openapi3filter.ValidateRequest(ctx, reqInput); err != nil {
			t.Errorf("accepted request does not match openapi.yaml: %v", err)
		}
	}
	respInput := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: reqInput,
		Status:                 rec.Code,
		Header:                 rec.Header(),
		Body:                   io.NopCloser(bytes.NewReader(rec.Body.Bytes())),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(ctx, respInput); err != nil {
		t.Errorf("response %d does not match openapi.yaml: %v\nbody: %s", rec.Code, err, rec.Body)
	}
}

// checkReadiness asks h for a readiness probe and checks its status code, the role it
// answered for and the names of the checks it ran.
func checkReadiness(t *testing.T, h http.Handler, path string, status int, role string, checks []string) *httptest.ResponseRecorder {
	t.Helper()
	rec := do(h, "GET", path, "", nil)
	var b struct {
		Role   string                     `json:"role"`
		Checks map[string]json.RawMessage `json:"checks"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var names []string
	for n := range b.Checks {
		names = append(names, n)
	}
	slices.Sort(names)
	if rec.Code != status || b.Role != role || !slices.Equal(names, checks) {
		t.Errorf("%s: %d %s, want %d role %s checks %v", path, rec.Code, rec.Body, status, role, checks)
	}
	return rec
}
