package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/api/envelope"
	"github.com/marketplace/catalog/application/decorator"
	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/internal/testkafka"
)

// dlqCase is one dead-lettered event as the projector writes it.
type dlqCase struct {
	event    product.Event
	class    string
	failedAt time.Time
}

// deadLetter writes the events to the DLQ topic exactly as the projector's poison queue does:
// through the service's Watermill publisher (Sarama, the aggregate id as key), with the
// event's metadata, the projector's dlq_* headers and Watermill's *_poisoned ones.
func deadLetter(t *testing.T, c testkafka.Cluster, topic string, cases []dlqCase) {
	t.Helper()
	pub, err := kafka.NewPublisher(kafka.Config{Brokers: c.Brokers}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for i, dc := range cases {
		msg, err := envelope.Marshal(dc.event)
		if err != nil {
			t.Fatal(err)
		}
		msg.Metadata.Set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
		msg.Metadata.Set(ops.DLQHeaderErrorClass, dc.class)
		msg.Metadata.Set(ops.DLQHeaderReason, fmt.Sprintf("%s: case %d", dc.class, i))
		msg.Metadata.Set(ops.DLQHeaderHandler, "product_search_projector")
		msg.Metadata.Set(ops.DLQHeaderOriginalTopic, "product.events")
		msg.Metadata.Set(ops.DLQHeaderOriginalPartition, "3")
		msg.Metadata.Set(ops.DLQHeaderOriginalOffset, strconv.Itoa(100+i))
		msg.Metadata.Set(ops.DLQHeaderAttempts, "1")
		msg.Metadata.Set(ops.DLQHeaderFailedAt, dc.failedAt.UTC().Format(time.RFC3339Nano))
		msg.Metadata.Set(ops.DLQHeaderReasonPoisoned, "boom")
		msg.Metadata.Set(ops.DLQHeaderTopicPoisoned, "product.events")
		msg.Metadata.Set(ops.DLQHeaderHandlerPoisoned, "product_search_projector")
		msg.Metadata.Set(ops.DLQHeaderSubscriberPoisoned, "kafka")
		if err := pub.Publish(topic, msg); err != nil {
			t.Fatal(err)
		}
	}
}

func newDLQReader(t *testing.T, c testkafka.Cluster, topic string) *kafka.DLQReader {
	t.Helper()
	r, err := kafka.NewDLQReader(c.Config(), topic, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// memAudit is an in-memory audit log, so these tests exercise the Kafka side only.
type memAudit struct{ entries []ops.ReplayAuditEntry }

func (a *memAudit) BeginReplay(_ context.Context, e ops.ReplayAuditEntry) (int64, error) {
	a.entries = append(a.entries, e)
	return int64(len(a.entries)), nil
}

func (a *memAudit) FinishReplay(_ context.Context, id int64, result string, target *ops.ReplayTarget, errText string) error {
	a.entries[id-1].Result, a.entries[id-1].Target, a.entries[id-1].Error = result, target, errText
	return nil
}

func (a *memAudit) RecordResolution(_ context.Context, e ops.ReplayAuditEntry) (int64, error) {
	a.entries = append(a.entries, e)
	return int64(len(a.entries)), nil
}

func (a *memAudit) HandledDLQRefs(context.Context, string, []ops.DLQRef) (map[ops.DLQRef]ops.ReplayAuditEntry, error) {
	return nil, nil
}

func (a *memAudit) ListAudit(context.Context, ops.AuditFilter) ([]ops.ReplayAuditEntry, error) {
	return a.entries, nil
}

func TestDLQListShowAndFilter(t *testing.T) {
	eachCluster(t, func(t *testing.T, c testkafka.Cluster) {
		topic := testkafka.CreateTopic(t, c, "dlq_list", 4)
		evs := makeEvents(t, 4) // 8 events of 4 products
		now := time.Now().UTC().Truncate(time.Millisecond)
		var cases []dlqCase
		for i, e := range evs {
			class := "rejected"
			if i%3 == 0 {
				class = "validation"
			}
			cases = append(cases, dlqCase{event: e, class: class, failedAt: now.Add(time.Duration(i-len(evs)) * time.Hour)})
		}
		deadLetter(t, c, topic, cases)
		// A record nobody can decode, without any header: still listed and shown.
		cl := newProducer(t, c)
		garbage := &kgo.Record{Topic: topic, Key: []byte("garbage"), Value: []byte(`{"this is":"not an event"`)}
		if err := cl.ProduceSync(context.Background(), garbage).FirstErr(); err != nil {
			t.Fatal(err)
		}

		svc, err := ops.NewDLQService(newDLQReader(t, c, topic), nil, nil, decorator.Deps{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		all, err := svc.List(ctx, ops.DLQFilter{}, 0, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(all.Messages) != len(evs)+1 || all.Matched != len(evs)+1 {
			t.Fatalf("listed %d (matched %d), want %d", len(all.Messages), all.Matched, len(evs)+1)
		}
		byEvent := map[string]ops.DLQMessage{}
		for _, m := range all.Messages {
			byEvent[m.EventID] = m
		}
		for i, dc := range cases {
			m, ok := byEvent[dc.event.ID.String()]
			if !ok {
				t.Fatalf("event %d not listed", i)
			}
			if m.Class != dc.class || !m.FailedAt.Equal(dc.failedAt) || m.AggregateID != dc.event.AggregateID.String() ||
				m.Key != dc.event.AggregateID.String() || m.OriginalTopic != "product.events" || m.OriginalPartition != 3 ||
				m.OriginalOffset != int64(100+i) || m.Attempts != 1 || m.Handler != "product_search_projector" ||
				m.Reason != fmt.Sprintf("%s: case %d", dc.class, i) || m.AggregateVersion != dc.event.AggregateVersion ||
				m.Header("_watermill_message_uuid") != dc.event.ID.String() || m.Header("traceparent") == "" {
				t.Errorf("event %d decoded as %+v", i, m)
			}
			shown, err := svc.Show(ctx, m.Ref)
			if err != nil {
				t.Fatalf("show %s: %v", m.Ref, err)
			}
			if string(shown.Payload) != string(m.Payload) || len(shown.Headers) != len(m.Headers) {
				t.Errorf("show %s differs from list", m.Ref)
			}
		}
		g := byEvent[""] // no event id; its record key names the product
		if g.Key != "garbage" || g.Class != "" || g.AggregateID != "garbage" || string(g.Payload) != string(garbage.Value) {
			t.Errorf("garbage record decoded as %+v", g)
		}
		// Oldest failure first; the garbage record (failed "now", its record timestamp) last.
		if !slices.IsSortedFunc(all.Messages, func(a, b ops.DLQMessage) int { return a.FailedAt.Compare(b.FailedAt) }) {
			t.Error("list is not ordered by failure time")
		}

		rejected, err := svc.List(ctx, ops.DLQFilter{Classes: []string{"rejected"}}, 0, false)
		if err != nil || rejected.Matched != 5 {
			t.Fatalf("class filter: %d, %v", rejected.Matched, err)
		}
		agg := evs[2].AggregateID.String()
		one, err := svc.List(ctx, ops.DLQFilter{AggregateID: agg}, 0, false)
		if err != nil || one.Matched != 2 || one.Messages[0].AggregateID != agg {
			t.Fatalf("aggregate filter: %+v, %v", one, err)
		}
		recent, err := svc.List(ctx, ops.DLQFilter{Since: now.Add(-3 * time.Hour), Until: now.Add(-time.Hour)}, 0, false)
		if err != nil || recent.Matched != 2 {
			t.Fatalf("time filter: %d, %v", recent.Matched, err)
		}
		// A since in the future starts every partition at its end (by record timestamp).
		future, err := svc.List(ctx, ops.DLQFilter{Since: now.Add(time.Hour)}, 0, false)
		if err != nil || future.Matched != 0 {
			t.Fatalf("future since: %d, %v", future.Matched, err)
		}
		last, err := svc.List(ctx, ops.DLQFilter{}, 3, false)
		if err != nil || len(last.Messages) != 3 || last.Matched != len(evs)+1 || last.Messages[2].EventID != "" {
			t.Fatalf("limit: %d of %d, %v", len(last.Messages), last.Matched, err)
		}

		for _, ref := range []ops.DLQRef{{Partition: 0, Offset: 1 << 40}, {Partition: 99, Offset: 0}} {
			if _, err := svc.Show(ctx, ref); !errors.Is(err, ops.ErrDLQMessageNotFound) {
				t.Errorf("show %s: %v, want ErrDLQMessageNotFound", ref, err)
			}
		}
	})
}

func TestDLQReadIsBounded(t *testing.T) {
	eachCluster(t, func(t *testing.T, c testkafka.Cluster) {
		topic := testkafka.CreateTopic(t, c, "dlq_bounded", 3)
		r := newDLQReader(t, c, topic)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		// An empty DLQ is read at once.
		start := time.Now()
		n := 0
		if err := r.ScanDLQ(ctx, time.Time{}, func(ops.DLQMessage) error { n++; return nil }); err != nil || n != 0 {
			t.Fatalf("empty topic: %d messages, %v", n, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("reading an empty DLQ took %s", d)
		}
		// Records written during a scan are not waited for: the scan ends at the end offsets
		// captured when it started, while a producer keeps writing.
		cl := newProducer(t, c)
		produce := func(i int) {
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", i), Value: []byte("x")}).FirstErr(); err != nil {
				t.Error(err)
			}
		}
		for i := range 30 {
			produce(i)
		}
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 30; ; i++ {
				select {
				case <-stop:
					return
				default:
					produce(i)
				}
			}
		}()
		n = 0
		err := r.ScanDLQ(ctx, time.Time{}, func(ops.DLQMessage) error {
			n++
			time.Sleep(5 * time.Millisecond)
			return nil
		})
		close(stop)
		<-done
		if err != nil || n < 30 {
			t.Fatalf("scan under writes: %d messages, %v", n, err)
		}
		// An error of the callback stops the scan and comes back.
		boom := errors.New("boom")
		if err := r.ScanDLQ(ctx, time.Time{}, func(ops.DLQMessage) error { return boom }); !errors.Is(err, boom) {
			t.Fatalf("callback error: %v", err)
		}
		// A topic that does not exist is an error, not an empty DLQ.
		missing := newDLQReader(t, c, "no.such.dlq."+strconv.FormatInt(time.Now().UnixNano(), 10))
		err = missing.ScanDLQ(ctx, time.Time{}, func(ops.DLQMessage) error { return nil })
		if err == nil || !strings.Contains(err.Error(), "does not exist") {
			t.Fatalf("missing topic: %v", err)
		}
	})
}

func TestDLQReplayPublishesTheOriginalEvent(t *testing.T) {
	eachCluster(t, func(t *testing.T, c testkafka.Cluster) {
		dlqTopic := testkafka.CreateTopic(t, c, "dlq_replay_src", 3)
		eventsTopic := testkafka.CreateTopic(t, c, "dlq_replay_dst", 6)
		all := makeEvents(t, 3)
		evs := []product.Event{all[0], all[2], all[4]} // three products
		now := time.Now().UTC()
		deadLetter(t, c, dlqTopic, []dlqCase{{evs[0], "rejected", now}, {evs[1], "rejected", now}, {evs[2], "validation", now}})

		pub, err := kafka.NewReplayPublisher(kafka.Config{Brokers: c.Brokers}, eventsTopic)
		if err != nil {
			t.Fatal(err)
		}
		defer pub.Close()
		audit := &memAudit{}
		svc, err := ops.NewDLQService(newDLQReader(t, c, dlqTopic), pub, audit, decorator.Deps{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		sum, err := svc.Replay(ctx, ops.ReplayRequest{Filter: ops.DLQFilter{Classes: []string{"rejected"}}, Operator: "test"}, nil)
		if err != nil || sum.Replayed != 2 {
			t.Fatalf("replay: %+v, %v", sum, err)
		}

		// Where the service's own (Sarama) publisher puts each aggregate: a replay must land
		// on the same partition as the product's live events.
		probeTopic := testkafka.CreateTopic(t, c, "dlq_replay_probe", 6)
		live, err := kafka.NewPublisher(kafka.Config{Brokers: c.Brokers}, quietLog())
		if err != nil {
			t.Fatal(err)
		}
		defer live.Close()
		for _, e := range evs[:2] {
			m := message.NewMessage(e.ID.String(), []byte("probe"))
			m.Metadata.Set(envelope.MetaAggregateID, e.AggregateID.String())
			if err := live.Publish(probeTopic, m); err != nil {
				t.Fatal(err)
			}
		}
		probe := testkafka.ReadUntil(t, c, probeTopic, 20*time.Second, func(rs []testkafka.Record) bool { return len(rs) >= 2 })
		livePartition := map[string]int32{}
		for _, r := range probe {
			livePartition[r.Key] = r.Partition
		}

		got := testkafka.ReadUntil(t, c, eventsTopic, 20*time.Second, func(rs []testkafka.Record) bool { return len(rs) >= 2 })
		if len(got) != 2 {
			t.Fatalf("events topic holds %d records, want 2", len(got))
		}
		for _, r := range got {
			var want product.Event
			for _, e := range evs[:2] {
				if e.ID.String() == r.Headers["event_id"] {
					want = e
				}
			}
			if want.ID == "" || r.Key != want.AggregateID.String() {
				t.Fatalf("record key %q, event %q: not a replayed event keyed by its aggregate", r.Key, r.Headers["event_id"])
			}
			orig, _ := envelope.Marshal(want)
			if string(r.Value) != string(orig.Payload) {
				t.Errorf("payload changed by the replay:\n got %s\nwant %s", r.Value, orig.Payload)
			}
			if r.Partition != livePartition[r.Key] {
				t.Errorf("aggregate %s replayed to partition %d, live events go to %d", r.Key, r.Partition, livePartition[r.Key])
			}
			for k := range r.Headers {
				if strings.HasPrefix(k, "dlq_") || strings.HasSuffix(k, "_poisoned") {
					t.Errorf("replayed record carries DLQ header %s", k)
				}
			}
			for k, v := range orig.Metadata {
				if r.Headers[k] != v {
					t.Errorf("header %s = %q, want the original %q", k, r.Headers[k], v)
				}
			}
			if r.Headers["_watermill_message_uuid"] != want.ID.String() || r.Headers["traceparent"] == "" {
				t.Errorf("headers %v lack the message uuid or trace context", r.Headers)
			}
			if !strings.HasPrefix(r.Headers[ops.ReplayHeaderReplayedFrom], dlqTopic+"/") {
				t.Errorf("replayed_from %q", r.Headers[ops.ReplayHeaderReplayedFrom])
			}
			// The projector's decoder accepts it as the original event.
			ev, err := envelope.Unmarshal(r.Value)
			if err != nil || ev.ID != want.ID {
				t.Errorf("replayed record does not decode as the event: %v", err)
			}
		}
		for _, e := range audit.entries {
			if e.Result != ops.ReplayResultOK || e.Target == nil || e.TargetTopic != eventsTopic || e.DLQTopic != dlqTopic {
				t.Errorf("audit entry %+v", e)
			}
		}
	})
}

func TestDLQReplayPublishFailureIsAudited(t *testing.T) {
	c := testkafka.Embedded(t)
	dlqTopic := testkafka.CreateTopic(t, c, "dlq_replay_fail", 1)
	deadLetter(t, c, dlqTopic, []dlqCase{{makeEvents(t, 1)[0], "rejected", time.Now()}})
	// The events topic does not exist and cannot be created: every publish fails.
	pub, err := kafka.NewReplayPublisher(kafka.Config{Brokers: c.Brokers}, "no.such.events."+strconv.FormatInt(time.Now().UnixNano(), 10))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	audit := &memAudit{}
	svc, _ := ops.NewDLQService(newDLQReader(t, c, dlqTopic), pub, audit, decorator.Deps{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	sum, err := svc.Replay(ctx, ops.ReplayRequest{All: true, Operator: "test"}, nil)
	if err == nil || sum.Failed != 1 {
		t.Fatalf("replay to a missing topic: %+v, %v", sum, err)
	}
	if len(audit.entries) != 1 || audit.entries[0].Result != ops.ReplayResultError || audit.entries[0].Error == "" {
		t.Fatalf("audit %+v", audit.entries)
	}
}
