package ops_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/readmodel"
)

func checks(st ops.Status) map[string]ops.Severity {
	out := map[string]ops.Severity{}
	for _, p := range st.Problems {
		out[p.Check] = max(out[p.Check], p.Severity)
	}
	return out
}

// healthyWorld is a pipeline with nothing wrong: 1000 live products, 1000 live documents.
func healthyWorld() *world {
	w := newWorld()
	for i := range 1000 {
		id := fmt.Sprintf("%08d-0000-7000-8000-000000000000", i)
		w.product(id, 1, false)
		w.doc(id, 1, false)
	}
	w.outbox = ops.OutboxStats{TableBytes: 8192, Lanes: []ops.OutboxLane{{Lane: 0, RelayStarted: true}}}
	w.lag = ops.GroupLag{State: "Stable", Members: 1, Committed: true, Records: 5000,
		Partitions: []ops.PartitionLag{{Partition: 0, End: 5000, Committed: 5000}}}
	return w
}

func failedRebuild(t *testing.T) *readmodel.Rebuild {
	t.Helper()
	now := time.Now()
	r, err := readmodel.New("r-1", readmodel.SourceDatabase, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Fail("validation failed", now); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestStatusHealthRules(t *testing.T) {
	boom := errors.New("connection refused")
	cases := []struct {
		name    string
		mutate  func(*world)
		th      func(*ops.Thresholds)
		healthy bool
		want    map[string]ops.Severity
	}{
		{name: "healthy", healthy: true, want: map[string]ops.Severity{}},
		{name: "young backlog is fine", healthy: true, want: map[string]ops.Severity{},
			mutate: func(w *world) { w.outbox.Backlog, w.outbox.OldestAge = 500, 59*time.Second }},
		{name: "old backlog", want: map[string]ops.Severity{ops.CheckOutboxAge: ops.SeverityError},
			mutate: func(w *world) { w.outbox.Backlog, w.outbox.OldestAge = 3, 61*time.Second }},
		{name: "lag over the limit", want: map[string]ops.Severity{ops.CheckProjectorLag: ops.SeverityError},
			mutate: func(w *world) { w.lag.Lag = 10_001 }},
		{name: "lag at the limit", healthy: true, want: map[string]ops.Severity{},
			mutate: func(w *world) { w.lag.Lag = 10_000 }},
		{name: "custom lag limit", want: map[string]ops.Severity{ops.CheckProjectorLag: ops.SeverityError},
			mutate: func(w *world) { w.lag.Lag = 1 }, th: func(t *ops.Thresholds) { t.MaxLag = 0 }},
		{name: "nothing committed on a topic with records", want: map[string]ops.Severity{ops.CheckProjectorNoOffsets: ops.SeverityError},
			mutate: func(w *world) { w.lag.Committed, w.lag.Lag = false, 5000 }},
		{name: "nothing committed on an empty topic", healthy: true, want: map[string]ops.Severity{},
			mutate: func(w *world) { w.lag.Committed, w.lag.Records = false, 0 }},
		{name: "no projector running is a warning", healthy: true, want: map[string]ops.Severity{ops.CheckProjectorNoMembers: ops.SeverityWarning},
			mutate: func(w *world) { w.lag.Members, w.lag.State = 0, "Empty" }},
		{name: "alias missing", want: map[string]ops.Severity{ops.CheckAliasMissing: ops.SeverityError},
			mutate: func(w *world) { w.alias = ""; w.indices[0].Aliased = false }},
		{name: "mapping behind the code", want: map[string]ops.Severity{ops.CheckMappingOutdated: ops.SeverityError},
			mutate: func(w *world) { w.code = 2 }},
		{name: "mapping ahead of the code is a warning", healthy: true, want: map[string]ops.Severity{ops.CheckMappingAhead: ops.SeverityWarning},
			mutate: func(w *world) { w.indices[0].MappingVersion = 2 }},
		{name: "alias on an index behind the event log", want: map[string]ops.Severity{ops.CheckAliasBehind: ops.SeverityError},
			mutate: func(w *world) { w.positions = map[string]rebuild.Offsets{w.alias: {0: 5}} }},
		{name: "an old index behind the event log is fine", healthy: true, want: map[string]ops.Severity{},
			mutate: func(w *world) { w.positions = map[string]rebuild.Offsets{"ps_v1_20250101_000000": {0: 5}} }},
		{name: "alias on a foreign index", healthy: true, want: map[string]ops.Severity{ops.CheckAliasForeign: ops.SeverityWarning},
			mutate: func(w *world) { w.alias = "something_else" }},
		{name: "drift within 10 documents", healthy: true, want: map[string]ops.Severity{},
			mutate: func(w *world) {
				for i := range 10 {
					w.doc(fmt.Sprintf("ff%06d-0000-7000-8000-000000000000", i), 1, false)
				}
			}},
		{name: "drift beyond 10 documents", want: map[string]ops.Severity{ops.CheckCountDrift: ops.SeverityError},
			mutate: func(w *world) {
				for i := range 11 {
					delete(w.docs, fmt.Sprintf("%08d-0000-7000-8000-000000000000", i))
				}
			}},
		{name: "drift as a ratio", healthy: true, want: map[string]ops.Severity{},
			mutate: func(w *world) {
				for i := range 19 {
					delete(w.docs, fmt.Sprintf("%08d-0000-7000-8000-000000000000", i))
				}
			}, th: func(t *ops.Thresholds) { t.MaxCountDriftRatio = 0.02 }},
		{name: "exact counts required", want: map[string]ops.Severity{ops.CheckCountDrift: ops.SeverityError},
			mutate: func(w *world) { delete(w.docs, "00000000-0000-7000-8000-000000000000") },
			th:     func(t *ops.Thresholds) { t.MaxCountDriftRatio, t.MaxCountDriftDocs = 0, 0 }},
		{name: "unhandled dead letters", want: map[string]ops.Severity{ops.CheckDLQ: ops.SeverityError},
			mutate: func(w *world) { w.dlq, w.dlqHandled = 3, 2 }},
		{name: "dead letters all replayed or resolved", healthy: true, want: map[string]ops.Severity{},
			mutate: func(w *world) { w.dlq, w.dlqHandled = 3, 3 }},
		{name: "unreadable audit log", want: map[string]ops.Severity{ops.CheckUnavailable: ops.SeverityError},
			mutate: func(w *world) { w.dlq, w.ledgerErr = 3, boom }},
		{name: "long transaction", want: map[string]ops.Severity{ops.CheckLongTransaction: ops.SeverityError},
			mutate: func(w *world) {
				w.txs = []ops.LongTransaction{{PID: 42, Age: 6 * time.Minute, State: "idle in transaction"}}
			}},
		// A transaction holding a transaction id stalls the relay: it is flagged at the relay's
		// latency budget (the outbox age limit), not at the long-transaction limit.
		{name: "transaction holding the relay back", want: map[string]ops.Severity{ops.CheckRelayHeldBack: ops.SeverityError},
			mutate: func(w *world) {
				w.txs = []ops.LongTransaction{{PID: 42, Database: "billing", Age: 61 * time.Second, HoldsBackOutbox: true}}
			}},
		{name: "prepared transaction holding the relay back", want: map[string]ops.Severity{ops.CheckRelayHeldBack: ops.SeverityError},
			mutate: func(w *world) {
				w.txs = []ops.LongTransaction{{PreparedGID: "xa-7", State: "prepared", Age: 2 * time.Minute, HoldsBackOutbox: true}}
			}},
		{name: "young transaction holding the relay back is not flagged", healthy: true, want: map[string]ops.Severity{},
			mutate: func(w *world) { w.txs = []ops.LongTransaction{{PID: 42, Age: 59 * time.Second, HoldsBackOutbox: true}} }},
		{name: "holder older than both limits is flagged once", want: map[string]ops.Severity{ops.CheckRelayHeldBack: ops.SeverityError},
			mutate: func(w *world) { w.txs = []ops.LongTransaction{{PID: 42, Age: 10 * time.Minute, HoldsBackOutbox: true}} }},
		{name: "young read-only transactions are not listed", healthy: true, want: map[string]ops.Severity{},
			mutate: func(w *world) { w.txs = []ops.LongTransaction{{PID: 42, Age: 2 * time.Minute}} }},
		{name: "failed rebuild is a warning", healthy: true, want: map[string]ops.Severity{ops.CheckRebuildFailed: ops.SeverityWarning},
			mutate: func(w *world) { w.rebuilds = []*readmodel.Rebuild{failedRebuild(t)} }},
		{name: "unreadable sources", want: map[string]ops.Severity{ops.CheckUnavailable: ops.SeverityError},
			mutate: func(w *world) {
				w.outboxErr, w.lagErr, w.dlqErr, w.listErr, w.countErr, w.txErr = boom, boom, boom, boom, boom, boom
			}},
		{name: "unreadable rebuilds is a warning", healthy: true, want: map[string]ops.Severity{ops.CheckUnavailable: ops.SeverityWarning},
			mutate: func(w *world) { w.rebuildErr = boom }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := healthyWorld()
			if tc.mutate != nil {
				tc.mutate(w)
			}
			th := ops.DefaultThresholds()
			if tc.th != nil {
				tc.th(&th)
			}
			st, err := w.service(ops.Config{}).Status(context.Background(), th)
			if err != nil {
				t.Fatal(err)
			}
			if st.Healthy != tc.healthy {
				t.Errorf("healthy = %v, want %v; problems %+v", st.Healthy, tc.healthy, st.Problems)
			}
			got := checks(st)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("problems %v, want %v (%+v)", got, tc.want, st.Problems)
			}
			for i := 1; i < len(st.Problems); i++ {
				if st.Problems[i].Severity > st.Problems[i-1].Severity {
					t.Errorf("problems not sorted errors first: %+v", st.Problems)
				}
			}
		})
	}
}

// TestStatusNamesHowFarTheLiveIndexIsBehind: the problem names the index, its position and
// the events it misses up to the end of the log; the section carries the position.
func TestStatusNamesHowFarTheLiveIndexIsBehind(t *testing.T) {
	w := healthyWorld()
	w.positions = map[string]rebuild.Offsets{w.alias: {0: 5, 1: 40}}
	w.lag.Partitions = []ops.PartitionLag{{Partition: 0, Start: 0, End: 12, Committed: 12}, {Partition: 1, Start: 0, End: 43, Committed: 43}}
	st, err := w.service(ops.Config{}).Status(context.Background(), ops.DefaultThresholds())
	if err != nil {
		t.Fatal(err)
	}
	if !st.ReadModel.Behind || st.ReadModel.CompleteBefore[1] != 40 {
		t.Fatalf("read model section %+v, want behind at 0:5 1:40", st.ReadModel)
	}
	var msg string
	for _, p := range st.Problems {
		if p.Check == ops.CheckAliasBehind {
			msg = p.Message
		}
	}
	for _, want := range []string{w.alias, "0:5 1:40", "(10 events)", "catalog rebuild"} {
		if !strings.Contains(msg, want) {
			t.Errorf("problem %q does not say %q", msg, want)
		}
	}
}

func TestStatusSections(t *testing.T) {
	w := healthyWorld()
	w.doc("ff000000-0000-7000-8000-000000000000", 2, true)
	w.rebuilds = []*readmodel.Rebuild{failedRebuild(t)}
	st, err := w.service(ops.Config{}).Status(context.Background(), ops.DefaultThresholds())
	if err != nil {
		t.Fatal(err)
	}
	rm := st.ReadModel
	if !rm.AliasExists || !rm.IndexKnown || rm.Index != w.alias || rm.LiveDocuments != 1000 || rm.Tombstones != 1 ||
		rm.IndexMappingVersion != 1 || rm.CodeMappingVersion != 1 || rm.Alias != "ps" || rm.Indices != 1 {
		t.Errorf("read model %+v", rm)
	}
	if !st.Counts.Compared || st.Counts.Drift != 0 || st.Counts.Allowed != 10 {
		t.Errorf("counts %+v", st.Counts)
	}
	if st.Products.Live != 1000 || st.Products.Total != 1000 {
		t.Errorf("products %+v", st.Products)
	}
	if st.Projector.Group != "catalog-projector" || st.Projector.Topic != "product.events" || st.DLQ.Topic != "dlq.product.events" {
		t.Errorf("names: %+v %+v", st.Projector, st.DLQ)
	}
	if st.Rebuild.Last == nil || st.Rebuild.Last.ID != "r-1" || st.Rebuild.Last.Phase != readmodel.PhaseFailed {
		t.Errorf("last rebuild %+v", st.Rebuild)
	}
	if st.CheckedAt.IsZero() || st.Thresholds != ops.DefaultThresholds() {
		t.Errorf("checked at %v thresholds %+v", st.CheckedAt, st.Thresholds)
	}
}

// A transaction this role cannot see still shows in the outbox's held-back events: the
// outbox problem says that an invisible transaction, not a missing relay, is the cause.
func TestStatusSaysWhenAnInvisibleTransactionHoldsTheOutbox(t *testing.T) {
	w := healthyWorld()
	w.outbox.Backlog, w.outbox.OldestAge = 7, 2*time.Minute
	w.outbox.HeldBack, w.outbox.HeldBackAge, w.outbox.OldestRunningTransactionID = 5, 2*time.Minute, "81234"
	st, err := w.service(ops.Config{}).Status(context.Background(), ops.DefaultThresholds())
	if err != nil {
		t.Fatal(err)
	}
	var msg string
	for _, p := range st.Problems {
		if p.Check == ops.CheckOutboxAge {
			msg = p.Message
		}
	}
	for _, want := range []string{"5 of them wait behind open transaction id 81234", "cannot see", "pg_read_all_stats"} {
		if !strings.Contains(msg, want) {
			t.Errorf("outbox problem lacks %q: %s", want, msg)
		}
	}
	if strings.Contains(msg, "is a relay running") {
		t.Errorf("outbox problem blames the relay: %s", msg)
	}
}

// A prepared transaction has no session: it is named by its gid, with how to end it.
func TestStatusNamesAPreparedTransaction(t *testing.T) {
	w := healthyWorld()
	w.txs = []ops.LongTransaction{{PreparedGID: "xa-7", User: "billing", Database: "orders", State: "prepared",
		BackendType: "prepared transaction", Age: 2 * time.Minute, HoldsBackOutbox: true}}
	st, err := w.service(ops.Config{}).Status(context.Background(), ops.DefaultThresholds())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Problems) != 1 || st.Problems[0].Check != ops.CheckRelayHeldBack {
		t.Fatalf("problems %+v", st.Problems)
	}
	for _, want := range []string{`prepared transaction "xa-7" (billing@orders`, "ROLLBACK PREPARED 'xa-7'"} {
		if !strings.Contains(st.Problems[0].Message, want) {
			t.Errorf("message lacks %q: %s", want, st.Problems[0].Message)
		}
	}
}

// A transaction that has written holds the outbox back; the outbox problem names it even
// when it is younger than the long-transaction limit.
func TestStatusNamesTheTransactionHoldingBackTheOutbox(t *testing.T) {
	w := healthyWorld()
	w.outbox.Backlog, w.outbox.OldestAge = 7, 2*time.Minute
	w.txs = []ops.LongTransaction{
		{PID: 4242, Database: "billing", User: "etl", Application: "nightly", Age: 3 * time.Minute, State: "idle in transaction",
			HoldsBackOutbox: true, Started: time.Date(2026, 3, 1, 11, 57, 0, 0, time.UTC), QueryStarted: time.Date(2026, 3, 1, 11, 58, 0, 0, time.UTC)},
		{PID: 99, Age: 90 * time.Second, State: "active"}, // read-only and young: not listed
	}
	st, err := w.service(ops.Config{}).Status(context.Background(), ops.DefaultThresholds())
	if err != nil {
		t.Fatal(err)
	}
	if w.txAsked != ops.DefaultMaxOutboxAge {
		t.Errorf("asked for transactions older than %s, want the outbox limit %s", w.txAsked, ops.DefaultMaxOutboxAge)
	}
	if len(st.Transactions.Long) != 1 || st.Transactions.Long[0].PID != 4242 {
		t.Fatalf("long transactions %+v", st.Transactions.Long)
	}
	got := checks(st)
	if got[ops.CheckOutboxAge] != ops.SeverityError || got[ops.CheckRelayHeldBack] != ops.SeverityError || got[ops.CheckLongTransaction] != 0 {
		t.Fatalf("problems %+v", st.Problems)
	}
	for _, p := range st.Problems {
		if p.Check == ops.CheckOutboxAge && !strings.Contains(p.Message, "pid 4242") {
			t.Errorf("outbox problem does not name the transaction: %s", p.Message)
		}
		if p.Check == ops.CheckRelayHeldBack {
			for _, want := range []string{"pid 4242", "etl@billing", `application "nightly"`, "idle in transaction",
				"started 2026-03-01T11:57:00Z", "last statement 2026-03-01T11:58:00Z", "3m0s", "limit 1m0s", "pg_terminate_backend(4242)"} {
				if !strings.Contains(p.Message, want) {
					t.Errorf("relay_held_back message lacks %q: %s", want, p.Message)
				}
			}
		}
	}
}

func TestStatusRefusesInvalidThresholds(t *testing.T) {
	w := healthyWorld()
	for _, th := range []ops.Thresholds{{MaxOutboxAge: -1}, {MaxLag: -1}, {MaxCountDriftRatio: -0.1}, {MaxCountDriftDocs: -1}, {MaxTxAge: -time.Second}} {
		if _, err := w.service(ops.Config{}).Status(context.Background(), th); !errors.Is(err, ops.ErrInvalid) {
			t.Errorf("%+v: err = %v, want ErrInvalid", th, err)
		}
	}
}

func TestStatusBoundsEachSource(t *testing.T) {
	w := healthyWorld()
	slow := &slowEvents{world: w}
	s, err := ops.NewService(ops.Config{Alias: "ps", EventsTopic: "e", DLQTopic: "d", ProjectorGroup: "g", SourceTimeout: 50 * time.Millisecond},
		ops.Deps{Database: w, Products: w, Events: slow, ReadModel: w, Rebuilds: w, DeadLetters: w})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	st, err := s.Status(context.Background(), ops.DefaultThresholds())
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("status took %s with a hung source", d)
	}
	if !errors.Is(st.Projector.Err, context.DeadlineExceeded) || st.Healthy {
		t.Fatalf("projector %+v healthy %v", st.Projector, st.Healthy)
	}
}

type slowEvents struct{ *world }

func (s *slowEvents) GroupLag(ctx context.Context, _, _ string) (ops.GroupLag, error) {
	<-ctx.Done()
	return ops.GroupLag{}, ctx.Err()
}

func TestStatusCountsDeadLetters(t *testing.T) {
	w := healthyWorld()
	w.dlq, w.dlqHandled = 7, 5
	st, err := w.service(ops.Config{}).Status(context.Background(), ops.DefaultThresholds())
	if err != nil {
		t.Fatal(err)
	}
	if st.DLQ.Depth != 7 || st.DLQ.Handled != 5 || st.DLQ.Unhandled != 2 {
		t.Fatalf("dlq %+v, want depth 7, handled 5, unhandled 2", st.DLQ)
	}
	if msg := st.Problems[0].Message; !strings.Contains(msg, "2 of the 7") || !strings.Contains(msg, "catalog dlq resolve") {
		t.Errorf("problem %q", msg)
	}
}

// TestStatusNamesAStalledPartition: a partition whose committed offset stands still while
// records wait is named once it has stood still for longer than MaxStall; a partition that
// keeps committing, or has nothing waiting, is not.
func TestStatusNamesAStalledPartition(t *testing.T) {
	w := healthyWorld()
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	progress := ops.NewCommitProgress(clock)
	s, err := ops.NewService(ops.Config{Alias: "ps", EventsTopic: "e", DLQTopic: "d", ProjectorGroup: "g", Now: clock},
		ops.Deps{Database: w, Products: w, Events: w, ReadModel: w, Rebuilds: w, DeadLetters: w, Progress: progress})
	if err != nil {
		t.Fatal(err)
	}
	set := func(stuck, moving int64) {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.lag.Partitions = []ops.PartitionLag{
			{Partition: 0, End: 5000, Committed: 5000},                        // caught up
			{Partition: 3, End: 120 + stuck, Committed: 100, Lag: 20 + stuck}, // stuck at 100
			{Partition: 4, End: 900, Committed: 800 + moving, Lag: 100 - moving},
		}
		w.lag.Lag = 120 + stuck
	}
	th := ops.DefaultThresholds()
	for i := int64(0); i <= 7; i++ { // one look every 5 s for 35 s
		set(i, i)
		st, err := s.Status(context.Background(), th)
		if err != nil {
			t.Fatal(err)
		}
		stalled := checks(st)[ops.CheckProjectorStalled]
		if got := st.Projector.Partitions[1].StalledFor; got != time.Duration(i)*5*time.Second {
			t.Fatalf("look %d: partition 3 stalled for %s", i, got)
		}
		if st.Projector.Partitions[2].StalledFor != 0 || st.Projector.Partitions[0].StalledFor != 0 {
			t.Fatalf("look %d: moving or caught-up partitions reported stalled: %+v", i, st.Projector.Partitions)
		}
		if want := i*5 > 30; (stalled == ops.SeverityError) != want {
			t.Fatalf("look %d (%ds): stalled problem %v, want %v; problems %+v", i, i*5, stalled, want, st.Problems)
		}
		if stalled != 0 {
			msg := st.Problems[0].Message
			if !strings.Contains(msg, "partition 3 for 35s") || !strings.Contains(msg, "committed 100") || strings.Contains(msg, "partition 4") {
				t.Fatalf("problem %q does not name partition 3 alone", msg)
			}
		}
		now = now.Add(5 * time.Second)
	}
	// Once the partition commits again it is not stalled any more.
	w.lag.Partitions[1].Committed = 101
	st, _ := s.Status(context.Background(), th)
	if _, ok := checks(st)[ops.CheckProjectorStalled]; ok || st.Projector.Partitions[1].StalledFor != 0 {
		t.Fatalf("partition that committed again still stalled: %+v", st.Problems)
	}
}
