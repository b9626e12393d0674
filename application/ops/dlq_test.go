package ops_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marketplace/catalog/application/decorator"
	"github.com/marketplace/catalog/application/ops"
)

// fakeDLQ is a DLQ topic in memory.
type fakeDLQ struct {
	topic string
	msgs  []ops.DLQMessage
	scans int
}

func (f *fakeDLQ) DLQTopic() string { return f.topic }

func (f *fakeDLQ) ScanDLQ(ctx context.Context, _ time.Time, fn func(ops.DLQMessage) error) error {
	f.scans++
	for _, m := range f.msgs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(m); err != nil {
			return fmt.Errorf("fake scan: %w", err)
		}
	}
	return nil
}

func (f *fakeDLQ) GetDLQ(_ context.Context, ref ops.DLQRef) (ops.DLQMessage, error) {
	for _, m := range f.msgs {
		if m.Ref == ref {
			return m, nil
		}
	}
	return ops.DLQMessage{}, fmt.Errorf("fake: %s: %w", ref, ops.ErrDLQMessageNotFound)
}

// fakeReplayPublisher records what was replayed; fail makes the n-th publish (1-based) fail.
type fakeReplayPublisher struct {
	mu        sync.Mutex
	published []ops.ReplayMessage
	calls     int
	failAt    int
	failWith  error
}

func (p *fakeReplayPublisher) TargetTopic() string { return "product.events" }

func (p *fakeReplayPublisher) PublishReplay(_ context.Context, m ops.ReplayMessage) (ops.ReplayTarget, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.failAt == p.calls {
		if p.failWith != nil {
			return ops.ReplayTarget{}, p.failWith
		}
		return ops.ReplayTarget{}, errors.New("broker unreachable")
	}
	p.published = append(p.published, m)
	return ops.ReplayTarget{Partition: 1, Offset: int64(100 + len(p.published))}, nil
}

// fakeReplayAudit is the audit log in memory.
type fakeReplayAudit struct {
	entries   []ops.ReplayAuditEntry
	failBegin bool
}

func (a *fakeReplayAudit) BeginReplay(_ context.Context, e ops.ReplayAuditEntry) (int64, error) {
	if a.failBegin {
		return 0, errors.New("database down")
	}
	e.ID = int64(len(a.entries) + 1)
	e.ReplayedAt = time.Now()
	a.entries = append(a.entries, e)
	return e.ID, nil
}

func (a *fakeReplayAudit) FinishReplay(_ context.Context, id int64, result string, target *ops.ReplayTarget, errText string) error {
	e := &a.entries[id-1]
	e.Result, e.Target, e.Error, e.FinishedAt = result, target, errText, time.Now()
	return nil
}

func (a *fakeReplayAudit) RecordResolution(_ context.Context, e ops.ReplayAuditEntry) (int64, error) {
	if a.failBegin {
		return 0, errors.New("database down")
	}
	e.ID = int64(len(a.entries) + 1)
	e.ReplayedAt, e.FinishedAt = time.Now(), time.Now()
	a.entries = append(a.entries, e)
	return e.ID, nil
}

func (a *fakeReplayAudit) HandledDLQRefs(_ context.Context, topic string, refs []ops.DLQRef) (map[ops.DLQRef]ops.ReplayAuditEntry, error) {
	out := map[ops.DLQRef]ops.ReplayAuditEntry{}
	for _, e := range a.entries {
		if e.DLQTopic == topic && e.Result == ops.ReplayResultOK && slices.Contains(refs, e.Ref) {
			out[e.Ref] = e
		}
	}
	return out, nil
}

func (a *fakeReplayAudit) ListAudit(_ context.Context, f ops.AuditFilter) ([]ops.ReplayAuditEntry, error) {
	var out []ops.ReplayAuditEntry
	for i := len(a.entries) - 1; i >= 0 && len(out) < f.Limit; i-- {
		e := a.entries[i]
		if e.DLQTopic == f.DLQTopic && (f.Action == "" || e.Action == f.Action) && (f.AggregateID == "" || e.AggregateID == f.AggregateID) {
			out = append(out, e)
		}
	}
	return out, nil
}

var dlqBase = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	dlqAggA = "0195a0b0-0000-7000-8000-00000000000a"
	dlqAggB = "0195a0b0-0000-7000-8000-00000000000b"
)

// dlqMsg builds a DLQ message as the projector writes it: the event's headers, the DLQ
// headers and Watermill's poison headers.
func dlqMsg(p int32, o int64, class, agg, eventID string, failed time.Time) ops.DLQMessage {
	payload := fmt.Sprintf(`{"event_id":%q,"event_type":"product.created","schema_version":1,"aggregate_id":%q,"aggregate_version":1,"data":{}}`, eventID, agg)
	headers := []ops.DLQHeader{
		{Key: "_watermill_message_uuid", Value: eventID},
		{Key: "event_id", Value: eventID},
		{Key: "event_type", Value: "product.created"},
		{Key: "aggregate_id", Value: agg},
		{Key: "aggregate_version", Value: "1"},
		{Key: "traceparent", Value: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
		{Key: ops.DLQHeaderErrorClass, Value: class},
		{Key: ops.DLQHeaderReason, Value: class + ": something is wrong with " + eventID},
		{Key: ops.DLQHeaderHandler, Value: "product_search_projector"},
		{Key: ops.DLQHeaderOriginalTopic, Value: "product.events"},
		{Key: ops.DLQHeaderOriginalPartition, Value: "4"},
		{Key: ops.DLQHeaderOriginalOffset, Value: "77"},
		{Key: ops.DLQHeaderAttempts, Value: "1"},
		{Key: ops.DLQHeaderFailedAt, Value: failed.Format(time.RFC3339Nano)},
		{Key: ops.DLQHeaderReasonPoisoned, Value: "x"},
		{Key: ops.DLQHeaderTopicPoisoned, Value: "product.events"},
		{Key: ops.DLQHeaderHandlerPoisoned, Value: "product_search_projector"},
		{Key: ops.DLQHeaderSubscriberPoisoned, Value: "kafka"},
	}
	return ops.NewDLQMessage(ops.DLQRef{Partition: p, Offset: o}, agg, failed.Add(time.Millisecond), headers, []byte(payload))
}

func sampleDLQ() *fakeDLQ {
	return &fakeDLQ{topic: "dlq.product.events", msgs: []ops.DLQMessage{
		dlqMsg(0, 0, "rejected", dlqAggA, "e-1", dlqBase),
		dlqMsg(1, 0, "undecodable", dlqAggB, "e-2", dlqBase.Add(time.Hour)),
		dlqMsg(0, 1, "rejected", dlqAggB, "e-3", dlqBase.Add(2*time.Hour)),
		dlqMsg(2, 0, "validation", dlqAggA, "e-4", dlqBase.Add(3*time.Hour)),
		dlqMsg(1, 1, "rejected", dlqAggA, "e-5", dlqBase.Add(30*time.Minute)),
	}}
}

func dlqRefsOf(ms []ops.DLQMessage) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Ref.String()
	}
	return out
}

func TestParseDLQRef(t *testing.T) {
	for in, want := range map[string]ops.DLQRef{"3:17": {3, 17}, " 0:0 ": {0, 0}, "11:9000000000": {11, 9_000_000_000}} {
		got, err := ops.ParseDLQRef(in)
		if err != nil || got != want {
			t.Errorf("ParseDLQRef(%q) = %v, %v; want %v", in, got, err, want)
		}
		if strings.TrimSpace(in) != got.String() {
			t.Errorf("%v.String() = %q, want %q", got, got.String(), strings.TrimSpace(in))
		}
	}
	for _, in := range []string{"", "3", "3:", ":4", "a:1", "1:b", "-1:3", "1:-3", "1:2:3", "99999999999:1"} {
		if _, err := ops.ParseDLQRef(in); !errors.Is(err, ops.ErrDLQInvalidRef) {
			t.Errorf("ParseDLQRef(%q): err %v, want ErrDLQInvalidRef", in, err)
		}
	}
}

func TestNewDLQMessageDecodes(t *testing.T) {
	m := dlqMsg(2, 9, "rejected", dlqAggA, "e-1", dlqBase)
	if m.Class != "rejected" || m.Handler != "product_search_projector" || m.OriginalTopic != "product.events" ||
		m.OriginalPartition != 4 || m.OriginalOffset != 77 || m.Attempts != 1 || !m.FailedAt.Equal(dlqBase) ||
		m.AggregateID != dlqAggA || m.EventID != "e-1" || m.EventType != "product.created" || m.AggregateVersion != 1 {
		t.Fatalf("decoded %+v", m)
	}

	// No headers at all: identity from the payload, failure time from the record timestamp.
	payload := []byte(`{"event_id":"e-9","event_type":"product.updated","aggregate_id":"` + dlqAggB + `","aggregate_version":7}`)
	m = ops.NewDLQMessage(ops.DLQRef{}, "", dlqBase, nil, payload)
	if m.AggregateID != dlqAggB || m.EventID != "e-9" || m.AggregateVersion != 7 || !m.FailedAt.Equal(dlqBase) ||
		m.Class != "" || m.OriginalPartition != -1 || m.OriginalOffset != -1 {
		t.Fatalf("decoded from payload %+v", m)
	}

	// Garbage everywhere: nothing decoded but the product named by the record key, nothing panics.
	m = ops.NewDLQMessage(ops.DLQRef{}, dlqAggA, dlqBase, []ops.DLQHeader{{Key: ops.DLQHeaderFailedAt, Value: "yesterday"},
		{Key: ops.DLQHeaderOriginalOffset, Value: "x"}, {Key: ops.DLQHeaderReasonPoisoned, Value: "boom"}}, []byte(`{"not json`))
	if m.AggregateID != dlqAggA || m.EventID != "" || !m.FailedAt.Equal(dlqBase) || m.OriginalOffset != -1 || m.Reason != "boom" {
		t.Fatalf("decoded garbage %+v", m)
	}
}

func TestDLQListFilters(t *testing.T) {
	svc, err := ops.NewDLQService(sampleDLQ(), nil, nil, decorator.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		f       ops.DLQFilter
		limit   int
		want    []string
		matched int
	}{
		{"all, oldest failure first", ops.DLQFilter{}, 0, []string{"0:0", "1:1", "1:0", "0:1", "2:0"}, 5},
		{"class", ops.DLQFilter{Classes: []string{"REJECTED"}}, 0, []string{"0:0", "1:1", "0:1"}, 3},
		{"classes", ops.DLQFilter{Classes: []string{"undecodable", "validation"}}, 0, []string{"1:0", "2:0"}, 2},
		{"aggregate", ops.DLQFilter{AggregateID: strings.ToUpper(dlqAggB)}, 0, []string{"1:0", "0:1"}, 2},
		{"since inclusive", ops.DLQFilter{Since: dlqBase.Add(time.Hour)}, 0, []string{"1:0", "0:1", "2:0"}, 3},
		{"until exclusive", ops.DLQFilter{Until: dlqBase.Add(time.Hour)}, 0, []string{"0:0", "1:1"}, 2},
		{"range and class", ops.DLQFilter{Classes: []string{"rejected"}, Since: dlqBase.Add(time.Minute), Until: dlqBase.Add(3 * time.Hour)}, 0, []string{"1:1", "0:1"}, 2},
		{"limit keeps the newest", ops.DLQFilter{}, 2, []string{"0:1", "2:0"}, 5},
		{"nothing matches", ops.DLQFilter{Classes: []string{"panic"}}, 10, []string{}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := svc.List(context.Background(), tc.f, tc.limit, false)
			if err != nil {
				t.Fatal(err)
			}
			if got := dlqRefsOf(res.Messages); !slices.Equal(got, tc.want) || res.Matched != tc.matched {
				t.Fatalf("got %v (matched %d), want %v (matched %d)", got, res.Matched, tc.want, tc.matched)
			}
		})
	}
	if _, err := svc.List(context.Background(), ops.DLQFilter{Since: dlqBase, Until: dlqBase}, 0, false); !errors.Is(err, ops.ErrDLQInvalidFilter) {
		t.Fatalf("an empty time range: %v", err)
	}
	if _, err := svc.List(context.Background(), ops.DLQFilter{}, -1, false); !errors.Is(err, ops.ErrDLQInvalidFilter) {
		t.Fatalf("a negative limit: %v", err)
	}
}

func TestDLQListLimitOverManyMessages(t *testing.T) {
	dlq := &fakeDLQ{topic: "dlq"}
	for i := range 1000 {
		// Failure times out of offset order, as across partitions.
		dlq.msgs = append(dlq.msgs, dlqMsg(int32(i%3), int64(i), "rejected", dlqAggA, fmt.Sprint(i), dlqBase.Add(time.Duration((i*7919)%1000)*time.Second)))
	}
	svc, _ := ops.NewDLQService(dlq, nil, nil, decorator.Deps{})
	res, err := svc.List(context.Background(), ops.DLQFilter{}, 10, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Matched != 1000 || len(res.Messages) != 10 {
		t.Fatalf("matched %d, kept %d", res.Matched, len(res.Messages))
	}
	for i, m := range res.Messages {
		if want := dlqBase.Add(time.Duration(990+i) * time.Second); !m.FailedAt.Equal(want) {
			t.Fatalf("message %d failed at %s, want %s", i, m.FailedAt, want)
		}
	}
}

func TestDLQShow(t *testing.T) {
	svc, _ := ops.NewDLQService(sampleDLQ(), nil, nil, decorator.Deps{})
	m, err := svc.Show(context.Background(), ops.DLQRef{Partition: 1, Offset: 0})
	if err != nil || m.EventID != "e-2" {
		t.Fatalf("show: %+v, %v", m, err)
	}
	if _, err := svc.Show(context.Background(), ops.DLQRef{Partition: 9, Offset: 9}); !errors.Is(err, ops.ErrDLQMessageNotFound) {
		t.Fatalf("show of a missing message: %v", err)
	}
}

func newReplayer(t *testing.T) (*ops.DLQService, *fakeDLQ, *fakeReplayPublisher, *fakeReplayAudit) {
	t.Helper()
	dlq, pub, audit := sampleDLQ(), &fakeReplayPublisher{}, &fakeReplayAudit{}
	svc, err := ops.NewDLQService(dlq, pub, audit, decorator.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	return svc, dlq, pub, audit
}

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

func TestIsDLQHeader(t *testing.T) {
	for _, k := range []string{"dlq_error_class", "dlq_anything", "reason_poisoned", "topic_poisoned", "handler_poisoned", "subscriber_poisoned", "replayed_from"} {
		if !ops.IsDLQHeader(k) {
			t.Errorf("%s is a DLQ header", k)
		}
	}
	for _, k := range []string{"_watermill_message_uuid", "event_id", "aggregate_id", "traceparent", "tracestate"} {
		if ops.IsDLQHeader(k) {
			t.Errorf("%s is not a DLQ header", k)
		}
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

// truncatedMsg is a dead letter whose payload the DLQ publisher cut.
func truncatedMsg(p int32, o int64) ops.DLQMessage {
	return ops.NewDLQMessage(ops.DLQRef{Partition: p, Offset: o}, dlqAggB, dlqBase, []ops.DLQHeader{
		{Key: ops.DLQHeaderErrorClass, Value: "undecodable"},
		{Key: ops.DLQHeaderPayloadTruncated, Value: "true"},
		{Key: ops.DLQHeaderPayloadBytes, Value: "2000000"},
		{Key: ops.DLQHeaderPayloadCutBytes, Value: "1999990"},
		{Key: ops.DLQHeaderTruncationReason, Value: "too large"},
	}, []byte("xxxxxxxxxx"))
}

func TestNewDLQMessageDecodesACutPayload(t *testing.T) {
	m := truncatedMsg(3, 1)
	if !m.Truncated || m.PayloadBytes != 2_000_000 || m.TruncationReason != "too large" || m.AggregateID != dlqAggB {
		t.Fatalf("decoded %+v", m)
	}
	if m := dlqMsg(0, 0, "rejected", dlqAggA, "e-1", dlqBase); m.Truncated || m.PayloadBytes != len(m.Payload) {
		t.Fatalf("whole payload decoded as %+v", m)
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

func TestReadAudit(t *testing.T) {
	svc, _, _, audit := newReplayer(t)
	ctx := context.Background()
	if _, err := svc.Resolve(ctx, ops.ResolveRequest{All: true, Operator: "alice", Reason: "r"}, nil); err != nil {
		t.Fatal(err)
	}
	entries, err := ops.ReadAudit(ctx, audit, ops.AuditFilter{DLQTopic: "dlq.product.events", Action: ops.AuditActionResolve})
	if err != nil || len(entries) != 5 || entries[0].ID != 5 {
		t.Fatalf("entries %+v, %v", entries, err)
	}
	for name, f := range map[string]ops.AuditFilter{
		"no topic":       {},
		"unknown action": {DLQTopic: "d", Action: "delete"},
		"negative limit": {DLQTopic: "d", Limit: -1},
	} {
		if _, err := ops.ReadAudit(ctx, audit, f); !errors.Is(err, ops.ErrDLQInvalidFilter) {
			t.Errorf("%s: %v, want ErrDLQInvalidFilter", name, err)
		}
	}
	if _, err := ops.ReadAudit(ctx, nil, ops.AuditFilter{DLQTopic: "d"}); !errors.Is(err, ops.ErrAuditUnavailable) {
		t.Errorf("no audit log: %v", err)
	}
}

func TestListUnhandled(t *testing.T) {
	svc, _, _, _ := newReplayer(t)
	ctx := context.Background()
	if _, err := svc.Resolve(ctx, ops.ResolveRequest{Refs: []ops.DLQRef{{0, 0}}, Operator: "a", Reason: "r"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Replay(ctx, ops.ReplayRequest{Refs: []ops.DLQRef{{1, 1}}, Operator: "a"}, nil); err != nil {
		t.Fatal(err)
	}
	res, err := svc.List(ctx, ops.DLQFilter{}, 2, true)
	if err != nil || res.Matched != 3 || !slices.Equal(dlqRefsOf(res.Messages), []string{"0:1", "2:0"}) {
		t.Fatalf("unhandled: %d matched, %v, %v", res.Matched, dlqRefsOf(res.Messages), err)
	}
	bare, _ := ops.NewDLQService(sampleDLQ(), nil, nil, decorator.Deps{})
	if _, err := bare.List(ctx, ops.DLQFilter{}, 0, true); !errors.Is(err, ops.ErrAuditUnavailable) {
		t.Fatalf("unhandled without an audit log: %v", err)
	}
}
