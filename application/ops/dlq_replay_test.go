package ops_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/marketplace/catalog/application/decorator"
	"github.com/marketplace/catalog/application/ops"
)

func TestReplayNeedsASelector(t *testing.T) {
	svc, _, pub, audit := newReplayer(t)
	bad := map[string]ops.ReplayRequest{
		"nothing":            {Operator: "alice"},
		"limit is no filter": {Operator: "alice", Limit: 5},
		"refs and filter":    {Operator: "alice", Refs: []ops.DLQRef{{0, 0}}, Filter: ops.DLQFilter{AggregateID: dlqAggA}},
		"all and filter":     {Operator: "alice", All: true, Filter: ops.DLQFilter{Classes: []string{"rejected"}}},
		"all and refs":       {Operator: "alice", All: true, Refs: []ops.DLQRef{{0, 0}}},
		"no operator":        {All: true},
		"negative limit":     {Operator: "alice", All: true, Limit: -1},
		"empty class":        {Operator: "alice", Filter: ops.DLQFilter{Classes: []string{" "}}},
		"empty time range":   {Operator: "alice", Filter: ops.DLQFilter{Since: dlqBase, Until: dlqBase.Add(-time.Hour)}},
	}
	for name, req := range bad {
		for _, dry := range []bool{false, true} {
			req.DryRun = dry
			if _, err := svc.Replay(context.Background(), req, nil); !errors.Is(err, ops.ErrReplayInvalidRequest) {
				t.Errorf("%s (dry run %v): err %v, want ErrReplayInvalidRequest", name, dry, err)
			}
		}
	}
	if pub.calls != 0 || len(audit.entries) != 0 {
		t.Fatalf("invalid requests published %d and audited %d", pub.calls, len(audit.entries))
	}
	if _, err := (func() (ops.ReplaySummary, error) {
		s, _ := ops.NewDLQService(sampleDLQ(), nil, nil, decorator.Deps{})
		return s.Replay(context.Background(), ops.ReplayRequest{All: true, Operator: "alice"}, nil)
	})(); !errors.Is(err, ops.ErrReplayUnavailable) {
		t.Fatalf("replay without publisher: %v", err)
	}
}

func TestReplayDryRunChangesNothing(t *testing.T) {
	svc, _, pub, audit := newReplayer(t)
	var outcomes []ops.ReplayOutcome
	sum, err := svc.Replay(context.Background(), ops.ReplayRequest{Filter: ops.DLQFilter{Classes: []string{"rejected"}}, DryRun: true, Operator: "alice"},
		func(o ops.ReplayOutcome) { outcomes = append(outcomes, o) })
	if err != nil {
		t.Fatal(err)
	}
	if pub.calls != 0 || len(audit.entries) != 0 {
		t.Fatalf("dry run published %d and audited %d", pub.calls, len(audit.entries))
	}
	if !sum.DryRun || sum.Selected != 3 || sum.Replayed != 3 || len(outcomes) != 3 {
		t.Fatalf("summary %+v, %d outcomes", sum, len(outcomes))
	}
	for _, o := range outcomes {
		if o.Action != ops.ReplayActionWouldReplay || o.Message.Class != "rejected" {
			t.Fatalf("outcome %+v", o)
		}
	}
}

func TestReplayPublishesTheOriginalEventAndAudits(t *testing.T) {
	svc, dlq, pub, audit := newReplayer(t)
	sum, err := svc.Replay(context.Background(), ops.ReplayRequest{Filter: ops.DLQFilter{AggregateID: dlqAggA}, Operator: "alice"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Selected != 3 || sum.Replayed != 3 || sum.Failed != 0 || sum.RunID == "" {
		t.Fatalf("summary %+v", sum)
	}
	if len(pub.published) != 3 || len(audit.entries) != 3 {
		t.Fatalf("published %d, audited %d", len(pub.published), len(audit.entries))
	}
	byPayload := map[string]ops.DLQMessage{}
	for _, m := range dlq.msgs {
		byPayload[string(m.Payload)] = m
	}
	for i, p := range pub.published {
		orig, ok := byPayload[string(p.Payload)]
		if !ok {
			t.Fatalf("published payload is not an original: %s", p.Payload)
		}
		if p.Key != dlqAggA {
			t.Errorf("key %q, want the aggregate id", p.Key)
		}
		got := map[string]string{}
		for _, h := range p.Headers {
			got[h.Key] = h.Value
		}
		for _, k := range []string{"_watermill_message_uuid", "event_id", "event_type", "aggregate_id", "aggregate_version", "traceparent"} {
			if got[k] == "" || got[k] != orig.Header(k) {
				t.Errorf("header %s = %q, want the original %q", k, got[k], orig.Header(k))
			}
		}
		for k := range got {
			if strings.HasPrefix(k, "dlq_") || strings.HasSuffix(k, "_poisoned") {
				t.Errorf("replayed event carries DLQ header %s", k)
			}
		}
		if want := "dlq.product.events/" + orig.Ref.String(); got[ops.ReplayHeaderReplayedFrom] != want {
			t.Errorf("replayed_from %q, want %q", got[ops.ReplayHeaderReplayedFrom], want)
		}
		e := audit.entries[i]
		if e.Result != ops.ReplayResultOK || e.Operator != "alice" || e.RunID != sum.RunID || e.DLQTopic != "dlq.product.events" ||
			e.TargetTopic != "product.events" || e.AggregateID != dlqAggA || e.EventID != orig.EventID || e.Ref != orig.Ref ||
			e.ErrorClass != orig.Class || e.Target == nil || e.Target.Offset != int64(101+i) {
			t.Errorf("audit entry %+v", e)
		}
	}

	// The same command again replays nothing: every message was published already.
	sum, err = svc.Replay(context.Background(), ops.ReplayRequest{Filter: ops.DLQFilter{AggregateID: dlqAggA}, Operator: "bob"}, nil)
	if err != nil || sum.SkippedReplayed != 3 || sum.Replayed != 0 || len(pub.published) != 3 {
		t.Fatalf("second run: %+v, %v; published %d", sum, err, len(pub.published))
	}
	// --force does.
	sum, err = svc.Replay(context.Background(), ops.ReplayRequest{Refs: []ops.DLQRef{{2, 0}}, Force: true, Operator: "bob"}, nil)
	if err != nil || sum.Replayed != 1 || len(pub.published) != 4 || audit.entries[3].Operator != "bob" {
		t.Fatalf("forced run: %+v, %v; published %d", sum, err, len(pub.published))
	}
}

func TestReplayFailureIsAuditedAndStops(t *testing.T) {
	svc, _, pub, audit := newReplayer(t)
	pub.failAt = 2
	var outcomes []ops.ReplayOutcome
	sum, err := svc.Replay(context.Background(), ops.ReplayRequest{All: true, Operator: "carol"}, func(o ops.ReplayOutcome) { outcomes = append(outcomes, o) })
	if err == nil || !strings.Contains(err.Error(), "broker unreachable") {
		t.Fatalf("err %v, want the publish error", err)
	}
	if sum.Replayed != 1 || sum.Failed != 1 || pub.calls != 2 {
		t.Fatalf("summary %+v after %d publishes; the run must stop at the first failure", sum, pub.calls)
	}
	if len(audit.entries) != 2 || audit.entries[0].Result != ops.ReplayResultOK ||
		audit.entries[1].Result != ops.ReplayResultError || !strings.Contains(audit.entries[1].Error, "broker unreachable") {
		t.Fatalf("audit %+v", audit.entries)
	}
	if last := outcomes[len(outcomes)-1]; last.Action != ops.ReplayActionFailed || last.AuditID != 2 || last.Err == nil {
		t.Fatalf("last outcome %+v", last)
	}
}

func TestReplayWithoutAuditPublishesNothing(t *testing.T) {
	svc, _, pub, audit := newReplayer(t)
	audit.failBegin = true
	if _, err := svc.Replay(context.Background(), ops.ReplayRequest{All: true, Operator: "dave"}, nil); err == nil {
		t.Fatal("replay succeeded without an audit log")
	}
	if pub.calls != 0 {
		t.Fatalf("published %d events that were not audited", pub.calls)
	}
}

func TestReplayByReference(t *testing.T) {
	svc, _, pub, audit := newReplayer(t)
	// A missing reference fails the whole request before anything is published.
	_, err := svc.Replay(context.Background(), ops.ReplayRequest{Refs: []ops.DLQRef{{0, 0}, {7, 7}}, Operator: "erin"}, nil)
	if !errors.Is(err, ops.ErrDLQMessageNotFound) || pub.calls != 0 || len(audit.entries) != 0 {
		t.Fatalf("err %v, published %d, audited %d", err, pub.calls, len(audit.entries))
	}
	sum, err := svc.Replay(context.Background(), ops.ReplayRequest{Refs: []ops.DLQRef{{1, 0}, {1, 0}}, Operator: "erin"}, nil)
	if err != nil || sum.Replayed != 1 || len(pub.published) != 1 || pub.published[0].Key != dlqAggB {
		t.Fatalf("summary %+v, err %v, published %+v", sum, err, pub.published)
	}
}

func TestReplaySkipsCopiesOfTheSameEvent(t *testing.T) {
	dlq := sampleDLQ()
	// The event of 0:0 failed again after an earlier replay: a second copy later in the DLQ.
	again := dlqMsg(3, 5, "rejected", dlqAggA, "e-1", dlqBase.Add(4*time.Hour))
	again.Headers = append(again.Headers, ops.DLQHeader{Key: ops.ReplayHeaderReplayedFrom, Value: "dlq.product.events/0:0"})
	dlq.msgs = append(dlq.msgs, ops.NewDLQMessage(again.Ref, again.Key, again.Timestamp, again.Headers, again.Payload))
	pub, audit := &fakeReplayPublisher{}, &fakeReplayAudit{}
	svc, _ := ops.NewDLQService(dlq, pub, audit, decorator.Deps{})
	var outcomes []ops.ReplayOutcome
	sum, err := svc.Replay(context.Background(), ops.ReplayRequest{Filter: ops.DLQFilter{Classes: []string{"rejected"}}, Operator: "frank"},
		func(o ops.ReplayOutcome) { outcomes = append(outcomes, o) })
	if err != nil || sum.Replayed != 3 || sum.SkippedDuplicate != 1 || len(pub.published) != 3 {
		t.Fatalf("summary %+v, err %v, published %d", sum, err, len(pub.published))
	}
	dup := outcomes[len(outcomes)-1]
	if dup.Action != ops.ReplayActionSkippedDuplicate || dup.DuplicateOf != (ops.DLQRef{Partition: 0, Offset: 0}) || dup.Message.ReplayedFrom == "" {
		t.Fatalf("duplicate outcome %+v", dup)
	}
	for _, h := range pub.published[0].Headers {
		if h.Key == ops.ReplayHeaderReplayedFrom && h.Value != "dlq.product.events/0:0" {
			t.Fatalf("replayed_from %q", h.Value)
		}
	}
}

func TestReplayLimit(t *testing.T) {
	svc, _, pub, _ := newReplayer(t)
	sum, err := svc.Replay(context.Background(), ops.ReplayRequest{All: true, Limit: 2, Operator: "gina"}, nil)
	if err != nil || sum.Replayed != 2 || !sum.LimitReached || len(pub.published) != 2 {
		t.Fatalf("summary %+v, err %v, published %d", sum, err, len(pub.published))
	}
}

func TestReplayKeyFallsBackToTheRecordKey(t *testing.T) {
	garbage := ops.NewDLQMessage(ops.DLQRef{Partition: 0, Offset: 3}, "msg-uuid-1", dlqBase, []ops.DLQHeader{{Key: ops.DLQHeaderErrorClass, Value: "undecodable"}}, []byte(`{"this is":"not an event"`))
	dlq := &fakeDLQ{topic: "dlq", msgs: []ops.DLQMessage{garbage}}
	pub := &fakeReplayPublisher{}
	svc, _ := ops.NewDLQService(dlq, pub, &fakeReplayAudit{}, decorator.Deps{})
	if _, err := svc.Replay(context.Background(), ops.ReplayRequest{Refs: []ops.DLQRef{{0, 3}}, Operator: "hal"}, nil); err != nil {
		t.Fatal(err)
	}
	if len(pub.published) != 1 || pub.published[0].Key != "msg-uuid-1" || string(pub.published[0].Payload) != string(garbage.Payload) {
		t.Fatalf("published %+v", pub.published)
	}
}

func TestReplayInterruptedPublishIsAuditedAsUncertain(t *testing.T) {
	svc, _, pub, audit := newReplayer(t)
	pub.failAt, pub.failWith = 1, fmt.Errorf("produce: %w", context.Canceled)
	if _, err := svc.Replay(context.Background(), ops.ReplayRequest{All: true, Operator: "ivy"}, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
	if len(audit.entries) != 1 || audit.entries[0].Result != ops.ReplayResultError || !strings.Contains(audit.entries[0].Error, "may or may not have been published") {
		t.Fatalf("audit %+v", audit.entries)
	}
}

// TestReplaySkipsResolvedAndCutMessages: a resolved message is skipped unless Force; a
// message with a cut payload is never replayed.
func TestReplaySkipsResolvedAndCutMessages(t *testing.T) {
	svc, dlq, pub, audit := newReplayer(t)
	dlq.msgs = append(dlq.msgs, truncatedMsg(3, 0))
	ctx := context.Background()
	if _, err := svc.Resolve(ctx, ops.ResolveRequest{Refs: []ops.DLQRef{{0, 0}}, Operator: "alice", Reason: "superseded"}, nil); err != nil {
		t.Fatal(err)
	}
	var actions []string
	sum, err := svc.Replay(ctx, ops.ReplayRequest{All: true, Operator: "bob"}, func(o ops.ReplayOutcome) {
		actions = append(actions, o.Message.Ref.String()+" "+string(o.Action))
	})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Replayed != 4 || sum.SkippedResolved != 1 || sum.SkippedTruncated != 1 || sum.Selected != 6 || pub.calls != 4 {
		t.Fatalf("summary %+v, %d publishes, actions %v", sum, pub.calls, actions)
	}
	if !slices.Contains(actions, "0:0 skipped-resolved") || !slices.Contains(actions, "3:0 skipped-truncated") {
		t.Fatalf("actions %v", actions)
	}
	sum, err = svc.Replay(ctx, ops.ReplayRequest{All: true, Operator: "bob", Force: true}, nil)
	if err != nil || sum.Replayed != 5 || sum.SkippedTruncated != 1 {
		t.Fatalf("forced replay: %+v, %v (the resolved one replays, the cut one never)", sum, err)
	}
	for _, e := range audit.entries {
		if e.Ref == (ops.DLQRef{Partition: 3}) && e.Action == ops.AuditActionReplay {
			t.Fatalf("a cut payload was replayed: %+v", e)
		}
	}
}
