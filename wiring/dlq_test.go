package wiring_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/api/envelope"
	operationsv1 "github.com/marketplace/catalog/api/gen/catalog/operations/v1"
	"github.com/marketplace/catalog/application/decorator"
	"github.com/marketplace/catalog/application/ops"
)

// TestDLQHeadersMatchTheirWriters: the projector writes the dlq_* headers from application/ops,
// their one owner; Watermill's poison queue and the event envelope (api/envelope) write the
// others, which the application layer cannot import, so this checks that the DLQ tooling
// spells those the same.
func TestDLQHeadersMatchTheirWriters(t *testing.T) {
	pairs := map[string][2]string{
		"reason poisoned":   {ops.DLQHeaderReasonPoisoned, middleware.ReasonForPoisonedKey},
		"topic poisoned":    {ops.DLQHeaderTopicPoisoned, middleware.PoisonedTopicKey},
		"handler poisoned":  {ops.DLQHeaderHandlerPoisoned, middleware.PoisonedHandlerKey},
		"subscriber":        {ops.DLQHeaderSubscriberPoisoned, middleware.PoisonedSubscriberKey},
		"event id":          {ops.DLQEventHeaderEventID, envelope.MetaEventID},
		"event type":        {ops.DLQEventHeaderEventType, envelope.MetaEventType},
		"aggregate id":      {ops.DLQEventHeaderAggregateID, envelope.MetaAggregateID},
		"aggregate version": {ops.DLQEventHeaderAggregateVersion, envelope.MetaAggregateVersion},
	}
	for what, p := range pairs {
		if p[0] != p[1] {
			t.Errorf("%s: the DLQ tooling says %q, the writer %q", what, p[0], p[1])
		}
	}
	for _, h := range []string{ops.DLQHeaderErrorClass, ops.DLQHeaderReason, ops.DLQHeaderHandler, ops.DLQHeaderOriginalTopic,
		ops.DLQHeaderOriginalPartition, ops.DLQHeaderOriginalOffset, ops.DLQHeaderAttempts, ops.DLQHeaderFailedAt,
		middleware.ReasonForPoisonedKey, middleware.PoisonedTopicKey, middleware.PoisonedHandlerKey, middleware.PoisonedSubscriberKey} {
		if !ops.IsDLQHeader(h) {
			t.Errorf("a replay would keep the DLQ header %s", h)
		}
	}
	for _, h := range []string{envelope.MetaEventID, envelope.MetaEventType, envelope.MetaSchemaVersion, envelope.MetaAggregateID,
		envelope.MetaAggregateVersion, envelope.MetaOccurredAt, "_watermill_message_uuid", "traceparent", "tracestate"} {
		if ops.IsDLQHeader(h) {
			t.Errorf("a replay would drop the event header %s", h)
		}
	}
}

// dlqTooling is what `catalog dlq` builds: the DLQ reader and the replay publisher on the
// pipeline's Kafka, the audit log in its database.
func dlqTooling(t *testing.T, rp *readPath) *ops.DLQService {
	t.Helper()
	kcfg := kafka.Config{Brokers: rp.kafka.Brokers}
	reader, err := kafka.NewDLQReader(kcfg, rp.cfg.DLQTopic, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reader.Close)
	pub, err := kafka.NewReplayPublisher(kcfg, rp.cfg.ProductEventsTopic)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	audit, err := postgres.NewDLQAudit(rp.db)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := ops.NewDLQService(reader, pub, audit, decorator.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// dlqWait lists the aggregate's DLQ messages until there are want of them.
func dlqWait(t *testing.T, svc *ops.DLQService, aggregate string, want int, timeout time.Duration) []ops.DLQMessage {
	t.Helper()
	var res ops.DLQListResult
	eventuallyT(t, timeout, fmt.Sprintf("%d DLQ messages of %s", want, aggregate), func() bool {
		var err error
		res, err = svc.List(context.Background(), ops.DLQFilter{AggregateID: aggregate}, 0, false)
		if err != nil {
			t.Logf("dlq list: %v", err)
			return false
		}
		return res.Matched >= want
	})
	if res.Matched != want {
		t.Fatalf("%d DLQ messages of %s, want %d", res.Matched, aggregate, want)
	}
	return res.Messages
}

type dlqAuditRow struct {
	operator, dlqTopic, ref, aggregate, eventID, class, target, result string
}

func dlqAuditRows(t *testing.T, rp *readPath) []dlqAuditRow {
	t.Helper()
	rows, err := rp.db.Pool.Query(context.Background(), `SELECT operator, dlq_topic, dlq_partition || ':' || dlq_offset, aggregate_id,
  event_id, error_class, target_topic, result FROM dlq_replays ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []dlqAuditRow
	for rows.Next() {
		var r dlqAuditRow
		if err := rows.Scan(&r.operator, &r.dlqTopic, &r.ref, &r.aggregate, &r.eventID, &r.class, &r.target, &r.result); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func dlqEventsEnd(t *testing.T, rp *readPath) int64 {
	t.Helper()
	adm, closeFn := admin(t, rp.kafka)
	defer closeFn()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, rp.cfg.ProductEventsTopic)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, o := range ends.Offsets()[rp.cfg.ProductEventsTopic] {
		n += o.At
	}
	return n
}

func dlqAliasIndex(t *testing.T, rp *readPath) string {
	t.Helper()
	res, err := http.Get(rp.esURL + "/_alias/" + rp.cfg.SearchAlias)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil || len(body) != 1 {
		t.Fatalf("alias %s: %v %v", rp.cfg.SearchAlias, body, err)
	}
	for name := range body {
		return name
	}
	return ""
}

// TestDLQReplayAfterTheCauseIsFixed: a mapping bug dead-letters an event; a dry run
// changes nothing; a replay before the fix sends the event back to the DLQ; once the alias
// points at a proper index again, replaying the product's messages projects it, and every
// replay is in the audit log.
func TestDLQReplayAfterTheCauseIsFixed(t *testing.T) {
	rp := startReadPath(t)
	good := dlqAliasIndex(t, rp)
	narrowPriceMapping(t, rp) // the bug: price.amount mapped as a 32-bit integer
	bad := dlqAliasIndex(t, rp)
	ctx := context.Background()

	id := product201(t, rp.component, "DLQ-REPLAY-1", "Very expensive", "dlqreplay", 5_000_000_000)
	svc := dlqTooling(t, rp)
	first := dlqWait(t, svc, id, 1, 30*time.Second)[0]
	if first.Class != "rejected" || first.EventType != "product.created" || first.OriginalTopic != rp.cfg.ProductEventsTopic {
		t.Fatalf("dead-lettered message %+v", first)
	}

	// A dry run publishes nothing and records nothing.
	before := dlqEventsEnd(t, rp)
	sum, err := svc.Replay(ctx, ops.ReplayRequest{Filter: ops.DLQFilter{AggregateID: id}, DryRun: true, Operator: "oncall"}, nil)
	if err != nil || sum.Replayed != 1 || !sum.DryRun {
		t.Fatalf("dry run: %+v, %v", sum, err)
	}
	if got := dlqEventsEnd(t, rp); got != before {
		t.Fatalf("the dry run published %d events", got-before)
	}
	if rows := dlqAuditRows(t, rp); len(rows) != 0 {
		t.Fatalf("the dry run wrote the audit log: %+v", rows)
	}

	// Replayed before the fix, the event fails again and goes back to the DLQ as a new message
	// that says which replay it was; the list shows both copies.
	sum, err = svc.Replay(ctx, ops.ReplayRequest{Refs: []ops.DLQRef{first.Ref}, Operator: "oncall"}, nil)
	if err != nil || sum.Replayed != 1 {
		t.Fatalf("replay before the fix: %+v, %v", sum, err)
	}
	copies := dlqWait(t, svc, id, 2, 30*time.Second)
	again := copies[1]
	if again.Ref == first.Ref || again.EventID != first.EventID || again.Class != "rejected" ||
		again.ReplayedFrom != rp.cfg.DLQTopic+"/"+first.Ref.String() || string(again.Payload) != string(first.Payload) {
		t.Fatalf("the failed replay's DLQ copy %+v", again)
	}
	if _, p := rp.search(t, "category=dlqreplay"); p.Total != 0 {
		t.Fatalf("the unfixed event was projected: %+v", p)
	}

	// Fix the cause: the alias points at a proper index again.
	body := fmt.Sprintf(`{"actions":[{"remove":{"index":%q,"alias":%q}},{"add":{"index":%q,"alias":%q,"is_write_index":true}}]}`,
		bad, rp.cfg.SearchAlias, good, rp.cfg.SearchAlias)
	res, err := http.Post(rp.esURL+"/_aliases", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("fixing the alias: %d", res.StatusCode)
	}

	// Replaying the product's messages skips the copy replayed already and replays the new
	// one; the event is projected.
	sum, err = svc.Replay(ctx, ops.ReplayRequest{Filter: ops.DLQFilter{AggregateID: id}, Operator: "oncall"}, nil)
	if err != nil || sum.Replayed != 1 || sum.SkippedReplayed != 1 {
		t.Fatalf("replay after the fix: %+v, %v", sum, err)
	}
	p := rp.waitSearch(t, "category=dlqreplay", 30*time.Second, "the replayed product", func(p searchPage) bool { return p.Total == 1 })
	if p.Items[0].ID != id || p.Items[0].Price.Amount != 5_000_000_000 || p.Items[0].Version != 1 {
		t.Fatalf("projected %+v", p.Items[0])
	}

	rows := dlqAuditRows(t, rp)
	if len(rows) != 2 {
		t.Fatalf("audit log %+v, want the two replays", rows)
	}
	for i, ref := range []string{first.Ref.String(), again.Ref.String()} {
		r := rows[i]
		if r.operator != "oncall" || r.dlqTopic != rp.cfg.DLQTopic || r.ref != ref || r.aggregate != id || r.eventID != first.EventID ||
			r.class != "rejected" || r.target != rp.cfg.ProductEventsTopic || r.result != ops.ReplayResultOK {
			t.Errorf("audit entry %d: %+v", i, r)
		}
	}
	// Nothing was replayed on its own, and the fixed event did not come back.
	time.Sleep(2 * time.Second)
	listed, err := svc.List(ctx, ops.DLQFilter{AggregateID: id}, 0, false)
	if err != nil || listed.Matched != 2 {
		t.Fatalf("DLQ of the product after the fix: %d messages, %v", listed.Matched, err)
	}
	// Both copies keep the product id as their key.
	for _, m := range listed.Messages {
		if m.Key != id {
			t.Errorf("DLQ message %s has key %q, want the product id %s", m.Ref, m.Key, id)
		}
	}
	// Both copies are handled now: the status is healthy again although the DLQ retains
	// them, and the gauge of unhandled dead letters reads 0.
	st := awaitStatus(t, opsClient(t, rp.cfg.GRPCAddr), &operationsv1.GetStatusRequest{}, 30*time.Second, "healthy after the replay",
		func(st *operationsv1.GetStatusResponse) bool { return st.GetHealthy() })
	if d := st.GetDlq(); d.GetDepth() != 2 || d.GetUnhandled() != 0 || d.GetHandled() != 2 {
		t.Fatalf("dlq after the replay: %v", d)
	}
	eventuallyT(t, 30*time.Second, "catalog_dlq_unhandled 0 and catalog_dlq_depth 2", func() bool {
		m := metricValues(t, rp.base, regexp.MustCompile(`^catalog_dlq_`))
		return m["catalog_dlq_unhandled"] == 0 && m["catalog_dlq_depth"] == 2
	})
}

// TestDLQResolveMakesTheStatusHealthy: an undecodable record makes the status unhealthy
// (one unhandled dead letter) until an operator resolves it; the resolution is in the audit
// log with its reason, and a replay skips the resolved message.
func TestDLQResolveMakesTheStatusHealthy(t *testing.T) {
	rp := startReadPath(t)
	rp.publish(t, rp.cfg.ProductEventsTopic, []byte(`{"not":"an event"`))
	client := opsClient(t, rp.cfg.GRPCAddr)
	st := awaitStatus(t, client, &operationsv1.GetStatusRequest{}, 30*time.Second, "one unhandled dead letter",
		func(st *operationsv1.GetStatusResponse) bool { return st.GetDlq().GetUnhandled() == 1 })
	if st.GetHealthy() || !slices.Contains(errorChecks(st), ops.CheckDLQ) {
		t.Fatalf("status with an unhandled dead letter: healthy %v, errors %v", st.GetHealthy(), errorChecks(st))
	}
	eventuallyT(t, 30*time.Second, "catalog_dlq_unhandled 1", func() bool {
		return metricValues(t, rp.base, regexp.MustCompile(`^catalog_dlq_unhandled`))["catalog_dlq_unhandled"] == 1
	})

	svc := dlqTooling(t, rp)
	ctx := context.Background()
	sum, err := svc.Resolve(ctx, ops.ResolveRequest{All: true, Operator: "oncall", Reason: "garbage from a load test", DryRun: true}, nil)
	if err != nil || sum.Resolved != 1 {
		t.Fatalf("dry run: %+v, %v", sum, err)
	}
	if st := awaitStatus(t, client, &operationsv1.GetStatusRequest{}, time.Second, "still unhandled after the dry run",
		func(st *operationsv1.GetStatusResponse) bool { return true }); st.GetDlq().GetUnhandled() != 1 {
		t.Fatalf("the dry run resolved: %v", st.GetDlq())
	}
	if sum, err = svc.Resolve(ctx, ops.ResolveRequest{All: true, Operator: "oncall", Reason: "garbage from a load test"}, nil); err != nil || sum.Resolved != 1 {
		t.Fatalf("resolve: %+v, %v", sum, err)
	}
	st = awaitStatus(t, client, &operationsv1.GetStatusRequest{}, 30*time.Second, "healthy after the resolution",
		func(st *operationsv1.GetStatusResponse) bool { return st.GetHealthy() })
	if d := st.GetDlq(); d.GetDepth() != 1 || d.GetUnhandled() != 0 {
		t.Fatalf("dlq after the resolution: %v", d)
	}
	rows := dlqAuditRows(t, rp)
	if len(rows) != 1 || rows[0].operator != "oncall" || rows[0].result != ops.ReplayResultOK || rows[0].target != "" {
		t.Fatalf("audit log %+v", rows)
	}
	rsum, err := svc.Replay(ctx, ops.ReplayRequest{All: true, Operator: "oncall"}, nil)
	if err != nil || rsum.Replayed != 0 || rsum.SkippedResolved != 1 {
		t.Fatalf("replay of a resolved message: %+v, %v", rsum, err)
	}
}
