package decorator_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marketplace/catalog/application/decorator"
)

type observation struct {
	name     string
	duration time.Duration
	err      error
}

type fakeMetrics struct {
	mu  sync.Mutex
	obs []observation
}

func (m *fakeMetrics) ObserveUseCase(name string, d time.Duration, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.obs = append(m.obs, observation{name, d, err})
}

type ctxKey struct{}

// Handlers named like the application's: the decorator derives the use-case name from the type.
type (
	createProductHandler struct {
		err   error
		delay time.Duration
	}
	deleteProductHandler   struct{}
	productByIDHandler     struct{}
	rebuildIndexHandler    struct{}
	pointerReceiverHandler struct{}
	plain                  struct{}
)

func (h createProductHandler) Handle(ctx context.Context, cmd string) (int, error) {
	if ctx.Value(ctxKey{}) != "v" {
		return 0, errors.New("context not passed through")
	}
	time.Sleep(h.delay)
	if h.err != nil {
		return -1, h.err
	}
	return len(cmd), nil
}

func (deleteProductHandler) Handle(context.Context, string) (int, error)    { return 0, nil }
func (productByIDHandler) Handle(context.Context, string) (int, error)      { return 0, nil }
func (rebuildIndexHandler) Handle(context.Context, string) (int, error)     { return 0, nil }
func (*pointerReceiverHandler) Handle(context.Context, string) (int, error) { return 0, nil }
func (plain) Handle(context.Context, string) (int, error)                   { return 0, nil }

func observeName(t *testing.T, h decorator.Handler[string, int]) string {
	t.Helper()
	m := &fakeMetrics{}
	d := decorator.Apply(h, slog.New(slog.DiscardHandler), m)
	if _, err := d.Handle(context.WithValue(context.Background(), ctxKey{}, "v"), "x"); err != nil {
		t.Fatal(err)
	}
	if len(m.obs) != 1 {
		t.Fatalf("metrics called %d times, want 1", len(m.obs))
	}
	return m.obs[0].name
}

func TestUseCaseName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		handler decorator.Handler[string, int]
		want    string
	}{
		{"value receiver", createProductHandler{}, "create_product"},
		{"another command", deleteProductHandler{}, "delete_product"},
		{"pointer", &pointerReceiverHandler{}, "pointer_receiver"},
		{"without Handler suffix", plain{}, "plain"},
		{"three words", rebuildIndexHandler{}, "rebuild_index"},
	}
	for _, tt := range tests {
		if got := observeName(t, tt.handler); got != tt.want {
			t.Errorf("%s: name %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestUseCaseNameInitialism covers names with an initialism such as productByIDHandler, the
// query handler of the application: metric and log labels want "product_by_id".
func TestUseCaseNameInitialism(t *testing.T) {
	t.Parallel()
	if got := observeName(t, productByIDHandler{}); got != "product_by_id" {
		t.Fatalf("name %q, want product_by_id", got)
	}
}

func TestMetricsObserveEveryCall(t *testing.T) {
	t.Parallel()
	m := &fakeMetrics{}
	boom := errors.New("boom")
	ctx := context.WithValue(context.Background(), ctxKey{}, "v")

	ok := decorator.Apply[string, int](createProductHandler{delay: 2 * time.Millisecond}, slog.New(slog.DiscardHandler), m)
	if r, err := ok.Handle(ctx, "four"); err != nil || r != 4 {
		t.Fatalf("result %d, %v; want the handler's result", r, err)
	}
	failing := decorator.Apply[string, int](createProductHandler{err: boom}, slog.New(slog.DiscardHandler), m)
	r, err := failing.Handle(ctx, "x")
	if !errors.Is(err, boom) || r != -1 {
		t.Fatalf("result %d, %v; want the handler's result and error unchanged", r, err)
	}
	if len(m.obs) != 2 {
		t.Fatalf("%d observations, want 2", len(m.obs))
	}
	if o := m.obs[0]; o.name != "create_product" || o.err != nil || o.duration < 2*time.Millisecond {
		t.Errorf("success observed as %+v", o)
	}
	if o := m.obs[1]; o.name != "create_product" || !errors.Is(o.err, boom) || o.duration < 0 {
		t.Errorf("failure observed as %+v, want the error", o)
	}
}

func TestNilMetricsClient(t *testing.T) {
	t.Parallel()
	h := decorator.Apply[string, int](createProductHandler{}, slog.New(slog.DiscardHandler), nil)
	ctx := context.WithValue(context.Background(), ctxKey{}, "v")
	if r, err := h.Handle(ctx, "ab"); err != nil || r != 2 {
		t.Fatalf("%d, %v", r, err)
	}
}

// TestNilLogger: a use case built without a logger (a one-shot CLI tool) runs instead of
// panicking on its first call.
func TestNilLogger(t *testing.T) {
	t.Parallel()
	h := decorator.Apply[string, int](createProductHandler{}, nil, nil)
	ctx := context.WithValue(context.Background(), ctxKey{}, "v")
	if r, err := h.Handle(ctx, "abc"); err != nil || r != 3 {
		t.Fatalf("%d, %v", r, err)
	}
}

func TestLogging(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx := context.WithValue(context.Background(), ctxKey{}, "v")

	if _, err := decorator.Apply[string, int](createProductHandler{}, log, nil).Handle(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := decorator.Apply[string, int](createProductHandler{err: errors.New("sku taken")}, log, nil).Handle(ctx, "x"); err == nil {
		t.Fatal("error swallowed")
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d log lines, want one per call:\n%s", len(lines), buf.String())
	}
	for _, want := range []string{"level=DEBUG", `msg="use case done"`, "use_case=create_product", "duration="} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("success line %q lacks %s", lines[0], want)
		}
	}
	for _, want := range []string{"level=DEBUG", `msg="use case failed"`, "use_case=create_product", `err="sku taken"`} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("failure line %q lacks %s", lines[1], want)
		}
	}
}
