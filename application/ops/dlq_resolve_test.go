package ops_test

import (
	"context"
	"errors"
	"testing"

	"github.com/marketplace/catalog/application/decorator"
	"github.com/marketplace/catalog/application/ops"
)

func TestResolve(t *testing.T) {
	svc, _, pub, audit := newReplayer(t)
	ctx := context.Background()
	bad := map[string]ops.ResolveRequest{
		"no reason":     {Operator: "alice", All: true},
		"blank reason":  {Operator: "alice", All: true, Reason: "  "},
		"no selector":   {Operator: "alice", Reason: "r"},
		"two selectors": {Operator: "alice", Reason: "r", All: true, Filter: ops.DLQFilter{AggregateID: dlqAggA}},
		"no operator":   {All: true, Reason: "r"},
	}
	for name, req := range bad {
		if _, err := svc.Resolve(ctx, req, nil); !errors.Is(err, ops.ErrResolveInvalidRequest) {
			t.Errorf("%s: err %v, want ErrResolveInvalidRequest", name, err)
		}
	}
	// A dry run records nothing.
	sum, err := svc.Resolve(ctx, ops.ResolveRequest{Filter: ops.DLQFilter{AggregateID: dlqAggA}, Operator: "alice", Reason: "test data", DryRun: true}, nil)
	if err != nil || sum.Resolved != 3 || !sum.DryRun || len(audit.entries) != 0 {
		t.Fatalf("dry run: %+v, %v, %d entries", sum, err, len(audit.entries))
	}
	// One replayed message stays as it is; the others are resolved, each with an entry.
	if _, err := svc.Replay(ctx, ops.ReplayRequest{Refs: []ops.DLQRef{{0, 0}}, Operator: "bob"}, nil); err != nil {
		t.Fatal(err)
	}
	var outcomes []ops.ResolveOutcome
	sum, err = svc.Resolve(ctx, ops.ResolveRequest{Filter: ops.DLQFilter{AggregateID: dlqAggA}, Operator: "alice", Reason: " test data "},
		func(o ops.ResolveOutcome) { outcomes = append(outcomes, o) })
	if err != nil || sum.Selected != 3 || sum.Resolved != 2 || sum.SkippedHandled != 1 || len(outcomes) != 3 {
		t.Fatalf("resolve: %+v, %v, outcomes %+v", sum, err, outcomes)
	}
	for _, o := range outcomes {
		if o.Message.Ref == (ops.DLQRef{}) {
			if o.Action != ops.ResolveActionSkippedReplayed || o.Previous == nil || o.Previous.Operator != "bob" {
				t.Errorf("the replayed message: %+v", o)
			}
			continue
		}
		e := audit.entries[o.AuditID-1]
		if o.Action != ops.ResolveActionResolved || e.Action != ops.AuditActionResolve || e.Note != "test data" || e.Operator != "alice" ||
			e.Result != ops.ReplayResultOK || e.Ref != o.Message.Ref || e.RunID != sum.RunID || e.AggregateID != dlqAggA || e.TargetTopic != "" {
			t.Errorf("outcome %+v, entry %+v", o, e)
		}
	}
	if pub.calls != 1 {
		t.Fatalf("resolve published: %d publishes", pub.calls)
	}
	// Resolving again skips them all; a limit stops early.
	sum, err = svc.Resolve(ctx, ops.ResolveRequest{All: true, Operator: "alice", Reason: "the rest", Limit: 1}, nil)
	if err != nil || sum.Resolved != 1 || !sum.LimitReached {
		t.Fatalf("limited resolve: %+v, %v", sum, err)
	}
	if _, err := (func() (ops.ResolveSummary, error) {
		s, _ := ops.NewDLQService(sampleDLQ(), nil, nil, decorator.Deps{})
		return s.Resolve(ctx, ops.ResolveRequest{All: true, Operator: "alice", Reason: "r"}, nil)
	})(); !errors.Is(err, ops.ErrAuditUnavailable) {
		t.Fatalf("resolve without an audit log: %v", err)
	}
}
