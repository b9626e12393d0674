package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/application/decorator"
	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/internal/testenv"
)

func newDLQAudit(t *testing.T) (*postgres.DLQAudit, *postgres.DB) {
	t.Helper()
	db, _ := migratedDB(t)
	a, err := postgres.NewDLQAudit(db)
	if err != nil {
		t.Fatal(err)
	}
	return a, db
}

// TestDLQAuditCheckSchema: a database without the migrated audit table is refused with a hint
// to migrate; a migrated one passes.
func TestDLQAuditCheckSchema(t *testing.T) {
	ctx := context.Background()
	bare, err := postgres.Open(ctx, postgres.Config{URL: testenv.NewDatabase(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	a, err := postgres.NewDLQAudit(bare)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.CheckSchema(ctx); !errors.Is(err, postgres.ErrNoDLQAuditTable) {
		t.Fatalf("unmigrated database: %v, want ErrNoDLQAuditTable", err)
	}
	migrated, _ := newDLQAudit(t)
	if err := migrated.CheckSchema(ctx); err != nil {
		t.Fatalf("migrated database: %v", err)
	}
}

func TestDLQAuditRecordsReplays(t *testing.T) {
	a, db := newDLQAudit(t)
	ctx := context.Background()
	entry := func(p int32, o int64) ops.ReplayAuditEntry {
		return ops.ReplayAuditEntry{RunID: "run-1", Operator: "alice", DLQTopic: "dlq.product.events", Ref: ops.DLQRef{Partition: p, Offset: o},
			ErrorClass: "rejected", AggregateID: "0195a0b0-0000-7000-8000-00000000000a", EventID: "0195a0b0-0000-7000-8000-0000000000e1", TargetTopic: "product.events"}
	}
	okID, err := a.BeginReplay(ctx, entry(3, 17))
	if err != nil {
		t.Fatal(err)
	}
	// A pending entry is in the table before anything was published.
	var result string
	var finished *time.Time
	if err := db.Pool.QueryRow(ctx, `SELECT result, finished_at FROM dlq_replays WHERE id = $1`, okID).Scan(&result, &finished); err != nil {
		t.Fatal(err)
	}
	if result != "pending" || finished != nil {
		t.Fatalf("new entry: result %q, finished %v", result, finished)
	}
	if err := a.FinishReplay(ctx, okID, ops.ReplayResultOK, &ops.ReplayTarget{Partition: 5, Offset: 901}, ""); err != nil {
		t.Fatal(err)
	}
	// The audit log is not rewritten.
	if err := a.FinishReplay(ctx, okID, ops.ReplayResultError, nil, "again"); err == nil {
		t.Fatal("an entry was finished twice")
	}
	if err := a.FinishReplay(ctx, 999999, ops.ReplayResultOK, nil, ""); err == nil {
		t.Fatal("finished an entry that does not exist")
	}
	if err := a.FinishReplay(ctx, okID, ops.ReplayResultPending, nil, ""); err == nil {
		t.Fatal("finished with result pending")
	}

	errID, _ := a.BeginReplay(ctx, entry(3, 18))
	if err := a.FinishReplay(ctx, errID, ops.ReplayResultError, nil, "broker unreachable"); err != nil {
		t.Fatal(err)
	}
	pendingID, _ := a.BeginReplay(ctx, entry(3, 19))
	other := entry(3, 17)
	other.DLQTopic = "dlq.other"
	otherID, _ := a.BeginReplay(ctx, other)
	_ = a.FinishReplay(ctx, otherID, ops.ReplayResultOK, &ops.ReplayTarget{}, "")

	got, err := a.HandledDLQRefs(ctx, "dlq.product.events", []ops.DLQRef{{Partition: 3, Offset: 17}, {Partition: 3, Offset: 18}, {Partition: 3, Offset: 19}, {Partition: 4, Offset: 17}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("replayed refs %v, want only 3:17 (3:18 failed, 3:19 pending, 4:17 never)", got)
	}
	e := got[ops.DLQRef{Partition: 3, Offset: 17}]
	if e.ID != okID || e.Action != ops.AuditActionReplay || e.Result != ops.ReplayResultOK || e.Operator != "alice" || e.RunID != "run-1" || e.ErrorClass != "rejected" ||
		e.Target == nil || *e.Target != (ops.ReplayTarget{Partition: 5, Offset: 901}) || e.FinishedAt.IsZero() ||
		time.Since(e.ReplayedAt) > time.Minute || e.TargetTopic != "product.events" || e.AggregateID == "" || e.EventID == "" {
		t.Fatalf("entry %+v", e)
	}

	list, err := a.ListAudit(ctx, ops.AuditFilter{RunID: "run-1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 4 || list[0].ID != otherID || list[3].ID != okID {
		t.Fatalf("list %+v", list)
	}
	if list[1].ID != pendingID || list[1].Result != ops.ReplayResultPending || list[1].Target != nil || !list[1].FinishedAt.IsZero() {
		t.Fatalf("pending entry %+v", list[1])
	}
	if list[2].Result != ops.ReplayResultError || list[2].Error != "broker unreachable" {
		t.Fatalf("error entry %+v", list[2])
	}
	if _, err := a.BeginReplay(ctx, ops.ReplayAuditEntry{DLQTopic: "x", TargetTopic: "y"}); err == nil {
		t.Fatal("an entry without operator was recorded")
	}
}

// TestDLQAuditRecordsResolutions: a resolution is an ok entry with the reason and no target;
// it counts as handled beside ok replays, and only messages still retained are counted.
func TestDLQAuditRecordsResolutions(t *testing.T) {
	a, db := newDLQAudit(t)
	ctx := context.Background()
	const topic = "dlq.product.events"
	resolve := func(p int32, o int64, note string) (int64, error) {
		return a.RecordResolution(ctx, ops.ReplayAuditEntry{Action: ops.AuditActionResolve, RunID: "run-r", Operator: "dora", DLQTopic: topic,
			Ref: ops.DLQRef{Partition: p, Offset: o}, ErrorClass: "undecodable", Note: note})
	}
	resolvedID, err := resolve(0, 4, "garbage from a load test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := resolve(0, 5, ""); err == nil {
		t.Fatal("a resolution without a reason was recorded")
	}
	replay := func(p int32, o int64, result string) {
		id, err := a.BeginReplay(ctx, ops.ReplayAuditEntry{RunID: "run-p", Operator: "dora", DLQTopic: topic, Ref: ops.DLQRef{Partition: p, Offset: o}, TargetTopic: "product.events"})
		if err != nil {
			t.Fatal(err)
		}
		if result != ops.ReplayResultPending {
			if err := a.FinishReplay(ctx, id, result, &ops.ReplayTarget{}, ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	replay(0, 6, ops.ReplayResultOK)
	replay(0, 6, ops.ReplayResultOK) // replayed twice: still one handled message
	replay(0, 7, ops.ReplayResultError)
	replay(0, 8, ops.ReplayResultPending)
	replay(1, 2, ops.ReplayResultOK)
	replay(0, 1, ops.ReplayResultOK) // below the log start: retention removed it
	if _, err := a.RecordResolution(ctx, ops.ReplayAuditEntry{RunID: "x", Operator: "x", DLQTopic: "dlq.other", Ref: ops.DLQRef{Offset: 4}, Note: "x"}); err != nil {
		t.Fatal(err)
	}

	retained := ops.TopicOffsets{{Partition: 0, Start: 3, End: 10}, {Partition: 1, Start: 0, End: 2}, {Partition: 2, Start: 0, End: 5}}
	n, err := a.HandledDLQMessages(ctx, topic, retained)
	if err != nil || n != 2 {
		t.Fatalf("handled: %d, %v; want 2 (0:4 resolved, 0:6 replayed; 1:2 is past the end, 0:1 before the start)", n, err)
	}
	if n, err := a.HandledDLQMessages(ctx, topic, ops.TopicOffsets{{Partition: 0}}); err != nil || n != 0 {
		t.Fatalf("handled in an empty topic: %d, %v", n, err)
	}

	got, err := a.HandledDLQRefs(ctx, topic, []ops.DLQRef{{Partition: 0, Offset: 4}, {Partition: 0, Offset: 7}})
	if err != nil || len(got) != 1 {
		t.Fatalf("handled refs %+v, %v", got, err)
	}
	e := got[ops.DLQRef{Partition: 0, Offset: 4}]
	if e.ID != resolvedID || e.Action != ops.AuditActionResolve || e.Note != "garbage from a load test" || e.Result != ops.ReplayResultOK ||
		e.TargetTopic != "" || e.Target != nil || e.FinishedAt.IsZero() || e.Operator != "dora" {
		t.Fatalf("resolution %+v", e)
	}

	list, err := a.ListAudit(ctx, ops.AuditFilter{DLQTopic: topic, Action: ops.AuditActionResolve})
	if err != nil || len(list) != 1 || list[0].ID != resolvedID {
		t.Fatalf("resolutions of %s: %+v, %v", topic, list, err)
	}
	list, err = a.ListAudit(ctx, ops.AuditFilter{DLQTopic: topic, Ref: &ops.DLQRef{Partition: 0, Offset: 6}})
	if err != nil || len(list) != 2 || list[0].Action != ops.AuditActionReplay {
		t.Fatalf("entries of 0:6: %+v, %v", list, err)
	}
	list, err = a.ListAudit(ctx, ops.AuditFilter{Limit: 3})
	if err != nil || len(list) != 3 {
		t.Fatalf("newest 3: %+v, %v", list, err)
	}
	var rows int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM dlq_replays`).Scan(&rows); err != nil || rows != 8 {
		t.Fatalf("%d rows, %v", rows, err)
	}
}

// auditDLQ is a one-message DLQ for the use case over the real audit log.
type auditDLQ struct{ m ops.DLQMessage }

func (d auditDLQ) DLQTopic() string { return "dlq.product.events" }

func (d auditDLQ) ScanDLQ(_ context.Context, _ time.Time, fn func(ops.DLQMessage) error) error {
	return fn(d.m)
}

func (d auditDLQ) GetDLQ(_ context.Context, ref ops.DLQRef) (ops.DLQMessage, error) {
	if ref != d.m.Ref {
		return ops.DLQMessage{}, ops.ErrDLQMessageNotFound
	}
	return d.m, nil
}

type auditPublisher struct{ err error }

func (p auditPublisher) TargetTopic() string { return "product.events" }

func (p auditPublisher) PublishReplay(context.Context, ops.ReplayMessage) (ops.ReplayTarget, error) {
	return ops.ReplayTarget{Partition: 2, Offset: 40}, p.err
}

// TestDLQReplayAuditOnSuccessAndFailure: the use case over the real audit log leaves an entry
// for a successful publish, for a failed one, and none for a dry run.
func TestDLQReplayAuditOnSuccessAndFailure(t *testing.T) {
	a, db := newDLQAudit(t)
	ctx := context.Background()
	msg := ops.NewDLQMessage(ops.DLQRef{Partition: 1, Offset: 7}, "agg", time.Now(), []ops.DLQHeader{
		{Key: ops.DLQHeaderErrorClass, Value: "rejected"}, {Key: "aggregate_id", Value: "agg"}, {Key: "event_id", Value: "ev"}}, []byte(`{}`))
	count := func() (n int) {
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM dlq_replays`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	failing, _ := ops.NewDLQService(auditDLQ{msg}, auditPublisher{err: errors.New("broker unreachable")}, a, decorator.Deps{})
	if _, err := failing.Replay(ctx, ops.ReplayRequest{Refs: []ops.DLQRef{msg.Ref}, Operator: "bob", DryRun: true}, nil); err != nil || count() != 0 {
		t.Fatalf("dry run: %v, %d entries", err, count())
	}
	if _, err := failing.Replay(ctx, ops.ReplayRequest{Refs: []ops.DLQRef{msg.Ref}, Operator: "bob"}, nil); err == nil {
		t.Fatal("a failed publish was reported as success")
	}
	working, _ := ops.NewDLQService(auditDLQ{msg}, auditPublisher{}, a, decorator.Deps{})
	sum, err := working.Replay(ctx, ops.ReplayRequest{Filter: ops.DLQFilter{AggregateID: "agg"}, Operator: "carol"}, nil)
	if err != nil || sum.Replayed != 1 {
		t.Fatalf("replay: %+v, %v", sum, err)
	}
	// Replayed once: the same command again skips it.
	sum, err = working.Replay(ctx, ops.ReplayRequest{Filter: ops.DLQFilter{AggregateID: "agg"}, Operator: "carol"}, nil)
	if err != nil || sum.SkippedReplayed != 1 || sum.Replayed != 0 {
		t.Fatalf("second replay: %+v, %v", sum, err)
	}

	rows, err := db.Pool.Query(ctx, `SELECT operator, dlq_partition, dlq_offset, aggregate_id, event_id, error_class, result, error,
  coalesce(target_partition, -1), coalesce(target_offset, -1) FROM dlq_replays ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var op, agg, ev, class, result, errText string
		var p, tp int32
		var o, to int64
		if err := rows.Scan(&op, &p, &o, &agg, &ev, &class, &result, &errText, &tp, &to); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s %d:%d %s %s %s %s %q %d:%d", op, p, o, agg, ev, class, result, errText, tp, to))
	}
	want := []string{
		`bob 1:7 agg ev rejected error "broker unreachable" -1:-1`,
		`carol 1:7 agg ev rejected ok "" 2:40`,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("audit log:\n%v\nwant\n%v", got, want)
	}
}
