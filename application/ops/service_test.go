package ops_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/marketplace/catalog/application/decorator"
	"github.com/marketplace/catalog/application/ops"
)

func TestNewServiceChecksItsInputs(t *testing.T) {
	w := newWorld()
	if _, err := ops.NewService(ops.Config{}, ops.Deps{Database: w, Products: w, Events: w, ReadModel: w, Rebuilds: w, DeadLetters: w}); err == nil {
		t.Error("empty names accepted")
	}
	if _, err := ops.NewService(ops.Config{Alias: "a", EventsTopic: "e", DLQTopic: "d", ProjectorGroup: "g"}, ops.Deps{Database: w}); err == nil {
		t.Error("missing dependencies accepted")
	}
}

// observeFunc is a metrics client that hands every observation to a function.
type observeFunc func(name string, d time.Duration, err error)

func (f observeFunc) ObserveUseCase(name string, d time.Duration, err error) { f(name, d, err) }

// TestOperationsUseCasesAreObserved: every operations use case reaches the metrics (and the
// log) through application/decorator under its own name, as the product commands do, so the
// admin port's and the console's calls show up in catalog_use_case_duration_seconds.
func TestOperationsUseCasesAreObserved(t *testing.T) {
	ctx := context.Background()
	var calls []string // the handlers report on the calling goroutine
	m := observeFunc(func(name string, _ time.Duration, err error) {
		if err != nil {
			name += ":error"
		}
		calls = append(calls, name)
	})
	w := healthyWorld()
	svc, err := ops.NewService(ops.Config{Alias: "ps", EventsTopic: "product.events", DLQTopic: "dlq.product.events", ProjectorGroup: "catalog-projector"},
		ops.Deps{Database: w, Products: w, Events: w, ReadModel: w, Rebuilds: w, DeadLetters: w, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Status(ctx, ops.DefaultThresholds()); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Verify(ctx, ops.VerifyRequest{}, nil); err != nil {
		t.Fatal(err)
	}
	dlq, err := ops.NewDLQService(sampleDLQ(), &fakeReplayPublisher{}, &fakeReplayAudit{}, decorator.Deps{Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dlq.List(ctx, ops.DLQFilter{}, 0, false); err != nil {
		t.Fatal(err)
	}
	if _, err := dlq.Show(ctx, ops.DLQRef{Partition: 9, Offset: 9}); !errors.Is(err, ops.ErrDLQMessageNotFound) {
		t.Fatalf("show of a missing message: %v", err)
	}
	if _, err := dlq.Replay(ctx, ops.ReplayRequest{All: true, DryRun: true, Operator: "alice"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := dlq.Resolve(ctx, ops.ResolveRequest{All: true, DryRun: true, Operator: "alice", Reason: "test"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := dlq.Audit(ctx, ops.AuditFilter{}); err != nil {
		t.Fatal(err)
	}
	want := []string{"get_status", "verify_read_model", "list_dlq", "show_dlq:error", "replay_dlq", "resolve_dlq", "list_dlq_audit"}
	if !slices.Equal(calls, want) {
		t.Fatalf("observed %q, want %q", calls, want)
	}
}

// TestUseCaseConstructorsRefuseMissingPorts: each use case checks its own required ports.
func TestUseCaseConstructorsRefuseMissingPorts(t *testing.T) {
	cfg := ops.Config{Alias: "a", EventsTopic: "e", DLQTopic: "d", ProjectorGroup: "g"}
	w := newWorld()
	if _, err := ops.NewGetStatusHandler(cfg, ops.Deps{Database: w, Events: w, ReadModel: w, Rebuilds: w}); err == nil {
		t.Error("status without the dead-letter ledger accepted")
	}
	if _, err := ops.NewGetStatusHandler(cfg, ops.Deps{Database: w, Events: w, ReadModel: w, Rebuilds: w, DeadLetters: w}); err != nil {
		t.Errorf("status with its ports refused: %v", err)
	}
	if _, err := ops.NewVerifyReadModelHandler(cfg, ops.Deps{Database: w, ReadModel: w}); err == nil {
		t.Error("verify without products accepted")
	}
	if _, err := ops.NewVerifyReadModelHandler(ops.Config{}, ops.Deps{Database: w, Products: w, ReadModel: w}); err == nil {
		t.Error("verify with an empty configuration accepted")
	}
	for name, build := range map[string]func() error{
		"list":    func() error { _, err := ops.NewListDLQHandler(nil, nil, decorator.Deps{}); return err },
		"show":    func() error { _, err := ops.NewShowDLQHandler(nil, decorator.Deps{}); return err },
		"replay":  func() error { _, err := ops.NewReplayDLQHandler(nil, nil, nil, decorator.Deps{}); return err },
		"resolve": func() error { _, err := ops.NewResolveDLQHandler(nil, nil, decorator.Deps{}); return err },
		"service": func() error { _, err := ops.NewDLQService(nil, nil, nil, decorator.Deps{}); return err },
	} {
		if build() == nil {
			t.Errorf("%s without a reader accepted", name)
		}
	}
}
