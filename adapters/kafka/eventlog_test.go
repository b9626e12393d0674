package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/api/envelope"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/internal/testkafka"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// eachCluster runs fn against the embedded broker and the real Kafka.
func eachCluster(t *testing.T, fn func(t *testing.T, c testkafka.Cluster)) {
	for _, cluster := range testkafka.Clusters(t) {
		t.Run("", func(t *testing.T) {
			c := cluster(t)
			t.Run(c.Name, func(t *testing.T) { fn(t, c) })
		})
	}
}

func newEventLog(t *testing.T, c testkafka.Cluster, topic string) *kafka.EventLog {
	t.Helper()
	l, err := kafka.NewEventLog(c.Config(), topic, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

func newProducer(t *testing.T, c testkafka.Cluster, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append(append([]kgo.Opt{kgo.SeedBrokers(c.Brokers...), kgo.ProducerLinger(5 * time.Millisecond)}, c.Security.Opts()...), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// makeEvents returns two events (created, stock_changed) for each of n new products.
func makeEvents(t testing.TB, n int) []product.Event {
	t.Helper()
	now := time.Now()
	out := make([]product.Event, 0, 2*n)
	for i := range n {
		d, err := product.NewDetails(fmt.Sprintf("SKU-%d", i), "Thing", "desc", "cat", "brand", 1000+int64(i), "EUR", 5, map[string]string{"k": "v"})
		if err != nil {
			t.Fatal(err)
		}
		p, err := product.New(product.NewID(now), d, now)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.ChangeStock(int64(10+i%50), now.Add(time.Millisecond)); err != nil { // never the initial 5: a no-op records no event
			t.Fatal(err)
		}
		out = append(out, p.PopEvents()...)
	}
	return out
}

// where is a produced record's position.
type where struct {
	partition int32
	offset    int64
}

// produceEvents writes the events as the relay does (envelope value, aggregate id key,
// metadata as headers) and returns where each event id landed.
func produceEvents(t testing.TB, cl *kgo.Client, topic string, events []product.Event) map[product.ID]where {
	t.Helper()
	recs := make([]*kgo.Record, 0, len(events))
	ids := make(map[*kgo.Record]product.ID, len(events))
	for _, e := range events {
		msg, err := envelope.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		r := &kgo.Record{Topic: topic, Key: []byte(e.AggregateID), Value: msg.Payload}
		for k, v := range msg.Metadata {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
		}
		recs = append(recs, r)
		ids[r] = e.ID
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res := cl.ProduceSync(ctx, recs...)
	if err := res.FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	out := make(map[product.ID]where, len(events))
	for _, r := range res { // results come in completion order, not in the order given
		out[ids[r.Record]] = where{r.Record.Partition, r.Record.Offset}
	}
	return out
}

// produceGarbage writes n records no product-event decoder accepts: not JSON, an envelope of an
// unknown schema version, an empty value, and an envelope with an invalid id.
func produceGarbage(t testing.TB, cl *kgo.Client, topic string, n int) {
	t.Helper()
	values := [][]byte{
		[]byte("not json"),
		[]byte(`{"event_id":"x","event_type":"product.created","schema_version":99}`),
		nil,
		[]byte(`{"event_id":"nope","event_type":"product.created","schema_version":1,"aggregate_id":"nope","aggregate_version":1}`),
	}
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "garbage-%d", i), Value: values[i%len(values)]}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce garbage: %v", err)
	}
}

// collector is a Read callback that records what it got and checks per-aggregate order.
type collector struct {
	t        testing.TB
	mu       sync.Mutex
	seen     map[product.ID]int
	last     map[product.ID]int64
	calls    int
	maxBatch int
}

func newCollector(t testing.TB) *collector {
	return &collector{t: t, seen: map[product.ID]int{}, last: map[product.ID]int64{}}
}

func (c *collector) fn(batch []product.Event, _ rebuild.Offsets) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	c.maxBatch = max(c.maxBatch, len(batch))
	for _, e := range batch {
		c.seen[e.ID]++
		if prev := c.last[e.AggregateID]; e.AggregateVersion <= prev {
			c.t.Errorf("aggregate %s: version %d after %d", e.AggregateID, e.AggregateVersion, prev)
		}
		c.last[e.AggregateID] = e.AggregateVersion
	}
	return nil
}

// expectExactly checks that the collector saw exactly the ids in want, each once.
func (c *collector) expectExactly(want map[product.ID]bool) {
	c.t.Helper()
	for id, n := range c.seen {
		if !want[id] {
			c.t.Errorf("unexpected event %s", id)
		} else if n != 1 {
			c.t.Errorf("event %s delivered %d times", id, n)
		}
	}
	missing := 0
	for id := range want {
		if c.seen[id] == 0 {
			missing++
		}
	}
	if missing > 0 {
		c.t.Errorf("%d of %d events missing", missing, len(want))
	}
	if c.maxBatch > 1000 {
		c.t.Errorf("batch of %d events, want at most 1000", c.maxBatch)
	}
}

func idsOf(events []product.Event) map[product.ID]bool {
	out := make(map[product.ID]bool, len(events))
	for _, e := range events {
		out[e.ID] = true
	}
	return out
}

func sum(o rebuild.Offsets) (n int64) {
	for _, v := range o {
		n += v
	}
	return n
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// rangeLog is the topic TestEventLogReadsRanges reads: two halves of events, each followed
// by records that are not events (7 after the first, 5 after the second), with the offsets
// between the halves (mid) and at the end (ends).
type rangeLog struct {
	l             *kafka.EventLog
	ctx           context.Context
	first, second []product.Event
	pos           map[product.ID]where // where each event landed
	mid, ends     rebuild.Offsets
	all           map[product.ID]bool
}

// eventLogRangeCases are the reads of TestEventLogReadsRanges, each run by name against the
// same topic.
var eventLogRangeCases = []struct {
	name string
	run  func(t *testing.T, g rangeLog)
}{
	{"all", readRangeAll},
	{"second half", readRangeSecondHalf},
	{"first half", readRangeFirstHalf},
	{"resumed from a batch's position", readRangeResumed},
	{"from equals to", readRangeEmpty},
	{"one partition", readRangeOnePartition},
	{"to beyond the log end", readRangeBeyondTheEnd},
	{"concurrent reads", readRangeConcurrently},
	{"handler error", readRangeHandlerError},
	{"partition the topic lacks", readRangeMissingPartition},
}

func TestEventLogReadsRanges(t *testing.T) {
	eachCluster(t, func(t *testing.T, c testkafka.Cluster) {
		g := newRangeLog(t, c)
		for _, tc := range eventLogRangeCases {
			t.Run(tc.name, func(t *testing.T) { tc.run(t, g) })
		}
	})
}

// newRangeLog writes the topic of TestEventLogReadsRanges and checks its offsets.
func newRangeLog(t *testing.T, c testkafka.Cluster) rangeLog {
	t.Helper()
	topic := testkafka.CreateTopic(t, c, "eventlog", 6)
	prod := newProducer(t, c)
	l := newEventLog(t, c, topic)
	ctx := ctxT(t, 2*time.Minute)

	first, second := makeEvents(t, 300), makeEvents(t, 300)
	pos := produceEvents(t, prod, topic, first)
	produceGarbage(t, prod, topic, 7)
	mid, err := l.EndOffsets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for p, w := range produceEvents(t, prod, topic, second) {
		pos[p] = w
	}
	produceGarbage(t, prod, topic, 5)
	ends, err := l.EndOffsets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ends) != 6 {
		t.Fatalf("end offsets of %d partitions, want 6: %v", len(ends), ends)
	}
	if got, want := sum(ends), int64(len(first)+len(second)+12); got != want {
		t.Fatalf("end offsets sum to %d, want %d", got, want)
	}
	if got, want := sum(mid), int64(len(first)+7); got != want {
		t.Fatalf("mid offsets sum to %d, want %d", got, want)
	}
	all := idsOf(append(append([]product.Event(nil), first...), second...))
	return rangeLog{l: l, ctx: ctx, first: first, second: second, pos: pos, mid: mid, ends: ends, all: all}
}

func readRangeAll(t *testing.T, g rangeLog) {
	col := newCollector(t)
	read, skipped, err := g.l.Read(g.ctx, nil, g.ends, col.fn)
	if err != nil {
		t.Fatal(err)
	}
	if read != int64(len(g.all)) || skipped != 12 {
		t.Errorf("read %d skipped %d, want %d and 12", read, skipped, len(g.all))
	}
	col.expectExactly(g.all)
}

func readRangeSecondHalf(t *testing.T, g rangeLog) {
	col := newCollector(t)
	read, skipped, err := g.l.Read(g.ctx, g.mid, g.ends, col.fn)
	if err != nil {
		t.Fatal(err)
	}
	if read != int64(len(g.second)) || skipped != 5 {
		t.Errorf("read %d skipped %d, want %d and 5", read, skipped, len(g.second))
	}
	col.expectExactly(idsOf(g.second))
}

func readRangeFirstHalf(t *testing.T, g rangeLog) {
	col := newCollector(t)
	read, skipped, err := g.l.Read(g.ctx, nil, g.mid, col.fn)
	if err != nil {
		t.Fatal(err)
	}
	if read != int64(len(g.first)) || skipped != 7 {
		t.Errorf("read %d skipped %d, want %d and 7", read, skipped, len(g.first))
	}
	col.expectExactly(idsOf(g.first))
}

// readRangeResumed: a read stopped after its first batch and started again from that batch's
// position reads every event exactly once in all (a read done in one batch ends at the end
// offsets).
func readRangeResumed(t *testing.T, g rangeLog) {
	col := newCollector(t)
	stop := errors.New("stop")
	var at rebuild.Offsets
	_, _, err := g.l.Read(g.ctx, nil, g.ends, func(b []product.Event, next rebuild.Offsets) error {
		if at != nil {
			return stop
		}
		at = next
		return col.fn(b, next)
	})
	if (err != nil && !errors.Is(err, stop)) || len(at) != len(g.ends) {
		t.Fatalf("first read: %v, position %v (want a position of every partition)", err, at)
	}
	if err == nil && sum(at) != sum(g.ends) {
		t.Fatalf("a read done in one batch ends at %v, want %v", at, g.ends)
	}
	if _, _, err := g.l.Read(g.ctx, at, g.ends, col.fn); err != nil {
		t.Fatal(err)
	}
	col.expectExactly(g.all)
}

func readRangeEmpty(t *testing.T, g rangeLog) {
	start := time.Now()
	read, skipped, err := g.l.Read(g.ctx, g.ends, g.ends, func([]product.Event, rebuild.Offsets) error {
		t.Error("fn called for an empty range")
		return nil
	})
	if err != nil || read != 0 || skipped != 0 {
		t.Errorf("Read(ends, ends) = %d, %d, %v", read, skipped, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("empty range took %v", d)
	}
	if read, _, err := g.l.Read(g.ctx, nil, rebuild.Offsets{}, col0(t)); err != nil || read != 0 {
		t.Errorf("Read(nil, {}) = %d, %v", read, err)
	}
}

// readRangeOnePartition: only the partitions in to are read, and a partition's from beyond
// its to is empty.
func readRangeOnePartition(t *testing.T, g rangeLog) {
	var p int32 = 2
	want := map[product.ID]bool{}
	for id, w := range g.pos {
		if w.partition == p {
			want[id] = true
		}
	}
	col := newCollector(t)
	from := rebuild.Offsets{0: g.ends[0] + 10}
	read, _, err := g.l.Read(g.ctx, from, rebuild.Offsets{p: g.ends[p], 0: g.ends[0]}, col.fn)
	if err != nil {
		t.Fatal(err)
	}
	if read != int64(len(want)) {
		t.Errorf("read %d, want %d", read, len(want))
	}
	col.expectExactly(want)
}

func readRangeBeyondTheEnd(t *testing.T, g rangeLog) {
	beyond := rebuild.Offsets{}
	for p, o := range g.ends {
		beyond[p] = o + 100
	}
	col := newCollector(t)
	start := time.Now()
	read, _, err := g.l.Read(ctxT(t, 30*time.Second), g.mid, beyond, col.fn)
	if err != nil {
		t.Fatal(err)
	}
	if read != int64(len(g.second)) {
		t.Errorf("read %d, want %d", read, len(g.second))
	}
	col.expectExactly(idsOf(g.second))
	t.Logf("returned after %v", time.Since(start))
	// Nothing left at all between from and the log end.
	if read, _, err := g.l.Read(g.ctx, g.ends, beyond, col0(t)); err != nil || read != 0 {
		t.Errorf("Read(ends, beyond) = %d, %v", read, err)
	}
}

func readRangeConcurrently(t *testing.T, g rangeLog) {
	var wg sync.WaitGroup
	cols := []*collector{newCollector(t), newCollector(t), newCollector(t)}
	for _, col := range cols {
		wg.Go(func() {
			if _, _, err := g.l.Read(g.ctx, nil, g.ends, col.fn); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for _, col := range cols {
		col.expectExactly(g.all)
	}
}

func readRangeHandlerError(t *testing.T, g rangeLog) {
	boom := errors.New("boom")
	calls := 0
	read, _, err := g.l.Read(g.ctx, nil, g.ends, func([]product.Event, rebuild.Offsets) error { calls++; return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if calls != 1 || read != 0 {
		t.Errorf("fn called %d times, read %d; want 1 and 0", calls, read)
	}
}

func readRangeMissingPartition(t *testing.T, g rangeLog) {
	_, _, err := g.l.Read(g.ctx, nil, rebuild.Offsets{0: g.ends[0], 6: 10}, col0(t))
	if err == nil {
		t.Fatal("no error for partition 6 of a 6-partition topic")
	}
	t.Log(err)
}

// col0 is a callback for reads that must not deliver anything.
func col0(t *testing.T) func([]product.Event, rebuild.Offsets) error {
	return func(b []product.Event, _ rebuild.Offsets) error {
		t.Errorf("fn called with %d events", len(b))
		return nil
	}
}

func TestEventLogEmptyAndMissingTopic(t *testing.T) {
	eachCluster(t, func(t *testing.T, c testkafka.Cluster) {
		ctx := ctxT(t, time.Minute)
		topic := testkafka.CreateTopic(t, c, "eventlog.empty", 6)
		l := newEventLog(t, c, topic)
		ends, err := l.EndOffsets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ends) != 6 || sum(ends) != 0 {
			t.Fatalf("end offsets of an empty topic: %v", ends)
		}
		start := time.Now()
		read, skipped, err := l.Read(ctx, nil, ends, col0(t))
		if err != nil || read != 0 || skipped != 0 {
			t.Fatalf("Read of an empty topic = %d, %d, %v", read, skipped, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("empty topic took %v", d)
		}

		missing := newEventLog(t, c, topic+".missing")
		if _, err := missing.EndOffsets(ctx); err == nil {
			t.Error("EndOffsets of a missing topic: no error")
		} else {
			t.Log(err)
		}
		if _, _, err := missing.Read(ctx, nil, rebuild.Offsets{0: 1}, col0(t)); err == nil {
			t.Error("Read of a missing topic: no error")
		}
		// Asking must not have created it.
		if _, err := missing.EndOffsets(ctx); err == nil {
			t.Error("the missing topic exists after being asked about")
		}
	})
}

// TestEventLogTransactions: transaction markers and aborted records leave gaps in the offsets;
// a read up to an end offset that falls on a marker must still finish, and events of an
// aborted transaction are never delivered.
func TestEventLogTransactions(t *testing.T) {
	eachCluster(t, func(t *testing.T, c testkafka.Cluster) {
		ctx := ctxT(t, 2*time.Minute)
		topic := testkafka.CreateTopic(t, c, "eventlog.txn", 6)
		l := newEventLog(t, c, topic)
		plain := makeEvents(t, 20)
		produceEvents(t, newProducer(t, c), topic, plain)

		txp := newProducer(t, c, kgo.TransactionalID(fmt.Sprintf("eventlog-test-%s-%d", topic, time.Now().UnixNano())))
		transact := func(events []product.Event, commit kgo.TransactionEndTry) {
			if err := txp.BeginTransaction(); err != nil {
				t.Fatal(err)
			}
			produceEvents(t, txp, topic, events)
			if err := txp.EndTransaction(ctx, commit); err != nil {
				t.Fatal(err)
			}
		}
		committed, aborted := makeEvents(t, 30), makeEvents(t, 30)
		transact(committed, kgo.TryCommit)
		transact(aborted, kgo.TryAbort)

		ends, err := l.EndOffsets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Each partition the transactions touched ends with a marker, not an event.
		if got := sum(ends); got <= int64(len(plain)+len(committed)+len(aborted)) {
			t.Errorf("end offsets sum to %d: no room for transaction markers", got)
		}
		col := newCollector(t)
		start := time.Now()
		read, skipped, err := l.Read(ctxT(t, 30*time.Second), nil, ends, col.fn)
		if err != nil {
			t.Fatal(err)
		}
		want := idsOf(append(append([]product.Event(nil), plain...), committed...))
		if read != int64(len(want)) || skipped != 0 {
			t.Errorf("read %d skipped %d, want %d and 0 (markers are not skipped records)", read, skipped, len(want))
		}
		col.expectExactly(want)
		t.Logf("read up to the markers in %v", time.Since(start))
	})
}

// TestEventLogCancel: a transaction left open below the end offsets holds back the last
// stable offset, so the read cannot finish until it ends; cancelling ctx must return at once.
func TestEventLogCancel(t *testing.T) {
	eachCluster(t, func(t *testing.T, c testkafka.Cluster) {
		topic := testkafka.CreateTopic(t, c, "eventlog.cancel", 6)
		l := newEventLog(t, c, topic)
		before := makeEvents(t, 10)
		produceEvents(t, newProducer(t, c), topic, before)

		txp := newProducer(t, c, kgo.TransactionalID(fmt.Sprintf("eventlog-test-%s-%d", topic, time.Now().UnixNano())))
		if err := txp.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		produceEvents(t, txp, topic, makeEvents(t, 10))
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = txp.EndTransaction(ctx, kgo.TryAbort)
		})

		ends, err := l.EndOffsets(ctxT(t, 30*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		// Cancel once what precedes the open transaction was delivered and the read has been
		// waiting on the transaction for a while.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // a safety net: a timeout fails below
		defer cancel()
		var cancelled atomic.Int64 // unix nanos of the cancel
		got := 0
		read, _, err := l.Read(ctx, nil, ends, func(b []product.Event, _ rebuild.Offsets) error {
			if got += len(b); got == len(before) {
				time.AfterFunc(500*time.Millisecond, func() { cancelled.Store(time.Now().UnixNano()); cancel() })
			}
			return nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if cancelled.Load() == 0 {
			t.Fatal("Read returned before the cancel")
		}
		took := time.Since(time.Unix(0, cancelled.Load()))
		if took > 2*time.Second {
			t.Errorf("Read returned %v after the cancel", took)
		}
		if read != int64(len(before)) {
			t.Errorf("read %d before the cancel, want %d", read, len(before))
		}
		t.Logf("read returned %v after the cancel: %v", took, err)
	})
}

// TestEventLogNotRetained: records deleted from the log (retention, DeleteRecords) are a gap a
// rebuild must not paper over when it asked for them; without from, the read starts at the
// first retained record.
func TestEventLogNotRetained(t *testing.T) {
	eachCluster(t, func(t *testing.T, c testkafka.Cluster) {
		ctx := ctxT(t, time.Minute)
		topic := testkafka.CreateTopic(t, c, "eventlog.retention", 6)
		l := newEventLog(t, c, topic)
		prod := newProducer(t, c)
		events := makeEvents(t, 100)
		pos := produceEvents(t, prod, topic, events)
		ends, err := l.EndOffsets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var p int32 = 1
		if ends[p] < 4 {
			t.Fatalf("partition %d holds %d records, want at least 4", p, ends[p])
		}
		var os kadm.Offsets
		os.AddOffset(topic, p, 3, -1)
		res, err := kadm.NewClient(prod).DeleteRecords(ctx, os)
		if err != nil {
			t.Fatal(err)
		}
		res.Each(func(r kadm.DeleteRecordsResponse) {
			if r.Err != nil {
				t.Fatalf("delete records: %v", r.Err)
			}
		})

		_, _, err = l.Read(ctx, rebuild.Offsets{p: 0}, ends, func([]product.Event, rebuild.Offsets) error { return nil })
		if !errors.Is(err, kafka.ErrNotRetained) || !errors.Is(err, rebuild.ErrNotRetained) {
			t.Fatalf("err = %v, want ErrNotRetained (the port's sentinel, which the use case tells apart)", err)
		}
		t.Log(err)

		want := map[product.ID]bool{}
		for id, w := range pos {
			if w.partition != p || w.offset >= 3 {
				want[id] = true
			}
		}
		col := newCollector(t)
		read, _, err := l.Read(ctx, nil, ends, col.fn)
		if err != nil {
			t.Fatal(err)
		}
		if read != int64(len(events)-3) {
			t.Errorf("read %d, want %d", read, len(events)-3)
		}
		col.expectExactly(want)
	})
}

// TestEventLogCommitted: a group's committed offsets cover every partition of the topic, 0
// where the group committed nothing; a group that never committed reads as all zeros.
func TestEventLogCommitted(t *testing.T) {
	eachCluster(t, func(t *testing.T, c testkafka.Cluster) {
		ctx := ctxT(t, time.Minute)
		topic := testkafka.CreateTopic(t, c, "eventlog.committed", 3)
		l := newEventLog(t, c, topic)
		prod := newProducer(t, c)
		produceEvents(t, prod, topic, makeEvents(t, 30))
		group := topic + "-group"
		var os kadm.Offsets
		os.AddOffset(topic, 0, 4, -1)
		os.AddOffset(topic, 2, 7, -1)
		res, err := kadm.NewClient(prod).CommitOffsets(ctx, group, os)
		if err != nil {
			t.Fatal(err)
		}
		if err := res.Error(); err != nil {
			t.Fatal(err)
		}
		got, err := l.Committed(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 || got[0] != 4 || got[1] != 0 || got[2] != 7 {
			t.Errorf("committed %v, want 0:4 1:0 2:7", got)
		}
		got, err = l.Committed(ctx, topic+"-never-committed")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 || got[0] != 0 || got[1] != 0 || got[2] != 0 {
			t.Errorf("committed of an unknown group %v, want zeros on the 3 partitions", got)
		}
		if _, err := l.Committed(ctx, ""); err == nil {
			t.Error("Committed of an empty group name succeeded")
		}
	})
}

// TestEventLogReadRate measures a replay of 50,000 events, as a Kafka-sourced rebuild does it.
func TestEventLogReadRate(t *testing.T) {
	if testing.Short() {
		t.Skip("produces 50,000 events")
	}
	const products = 25_000 // two events each
	events := makeEvents(t, products)
	eachCluster(t, func(t *testing.T, c testkafka.Cluster) {
		ctx := ctxT(t, 3*time.Minute)
		topic := testkafka.CreateTopic(t, c, "eventlog.rate", 6)
		produceEvents(t, newProducer(t, c, kgo.ProducerBatchMaxBytes(1<<20)), topic, events)
		l := newEventLog(t, c, topic)
		ends, err := l.EndOffsets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var n, batches int
		start := time.Now()
		read, skipped, err := l.Read(ctx, nil, ends, func(b []product.Event, _ rebuild.Offsets) error {
			n += len(b)
			batches++
			return nil
		})
		took := time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		if read != int64(len(events)) || n != len(events) || skipped != 0 {
			t.Fatalf("read %d (fn got %d), skipped %d; want %d", read, n, skipped, len(events))
		}
		t.Logf("%s: read %d events in %v (%d batches): %.0f events/s",
			c.Name, read, took.Round(time.Millisecond), batches, float64(read)/took.Seconds())
	})
}
