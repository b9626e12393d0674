package kafka_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/internal/testkafka"
)

// produceNumbered writes perPartition records to each of partitions partitions; record i of
// partition p has UUID header "p-i", a "k" metadata header and payload "payload-p-i".
func produceNumbered(t testing.TB, c testkafka.Cluster, topic string, partitions int32, perPartition int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers...), kgo.ProducerLinger(5*time.Millisecond),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.MaxBufferedRecords(100_000))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, 0, int(partitions)*perPartition)
	for i := range perPartition {
		for p := range partitions {
			recs = append(recs, &kgo.Record{
				Topic: topic, Partition: p,
				Value: fmt.Appendf(nil, "payload-%d-%d", p, i),
				Headers: []kgo.RecordHeader{
					{Key: "_watermill_message_uuid", Value: fmt.Appendf(nil, "%d-%d", p, i)},
					{Key: "k", Value: []byte("v")},
				},
			})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

func newConcurrentSub(t *testing.T, c testkafka.Cluster, topic string, sc kafka.ConcurrentSubscriberConfig) (*kafka.ConcurrentSubscriber, <-chan *message.Message) {
	t.Helper()
	sc.FromOldest = true
	if sc.CommitInterval == 0 {
		sc.CommitInterval = 50 * time.Millisecond
	}
	s, err := kafka.NewConcurrentSubscriber(c.Config(), sc, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ch, err := s.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	return s, ch
}

// receive returns the next message or fails the test after timeout.
func receive(t *testing.T, ch <-chan *message.Message, timeout time.Duration) *message.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatal("message channel closed")
		}
		return m
	case <-time.After(timeout):
		t.Fatal("no message in time")
		return nil
	}
}

// committed returns the group's committed offsets and the topic's end offsets, by partition.
func committed(t *testing.T, c testkafka.Cluster, group, topic string) (got, end map[int32]int64) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := ctxT(t, 10*time.Second)
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	got, end = map[int32]int64{}, map[int32]int64{}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic {
			got[o.Partition] = o.At
		}
	})
	ends.Each(func(o kadm.ListedOffset) { end[o.Partition] = o.Offset })
	return got, end
}

func TestConcurrentSubscriberAcksOutOfOrder(t *testing.T) {
	eachCluster(t, func(t *testing.T, c testkafka.Cluster) {
		topic := testkafka.CreateTopic(t, c, "csub_random", 6)
		group := topic + ".g"
		produceNumbered(t, c, topic, 6, 2000/6+1)
		total := 6 * (2000/6 + 1)
		s, ch := newConcurrentSub(t, c, topic, kafka.ConcurrentSubscriberConfig{ConsumerGroup: group})

		seen := map[string]bool{}
		var batch []*message.Message
		flush := func() {
			rand.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
			var wg sync.WaitGroup
			for w := range 8 {
				wg.Go(func() {
					for i := w; i < len(batch); i += 8 {
						batch[i].Ack()
					}
				})
			}
			wg.Wait()
			batch = batch[:0]
		}
		deadline := time.After(30 * time.Second)
		for len(seen) < total {
			select {
			case m := <-ch:
				if _, ok := kafka.PartitionFromContext(m.Context()); !ok {
					t.Fatal("no partition in context")
				}
				if _, ok := kafka.OffsetFromContext(m.Context()); !ok {
					t.Fatal("no offset in context")
				}
				if m.Metadata.Get("k") != "v" || m.Metadata.Get("_watermill_message_uuid") != "" {
					t.Fatalf("metadata %v", m.Metadata)
				}
				seen[m.UUID] = true
				batch = append(batch, m)
				if len(batch) == 100 {
					flush()
				}
			case <-time.After(200 * time.Millisecond):
				flush()
			case <-deadline:
				t.Fatalf("received %d of %d", len(seen), total)
			}
		}
		flush()
		if err := s.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		got, end := committed(t, c, group, topic)
		for p, e := range end {
			if got[p] != e {
				t.Errorf("partition %d: committed %d, end %d", p, got[p], e)
			}
		}
	})
}

func TestConcurrentSubscriberAtLeastOnce(t *testing.T) {
	eachCluster(t, func(t *testing.T, c testkafka.Cluster) {
		topic := testkafka.CreateTopic(t, c, "csub_alo", 2)
		group := topic + ".g"
		produceNumbered(t, c, topic, 2, 100)
		s, ch := newConcurrentSub(t, c, topic, kafka.ConcurrentSubscriberConfig{ConsumerGroup: group})
		for range 200 {
			m := receive(t, ch, 20*time.Second)
			if m.UUID == "0-50" {
				if o, _ := kafka.OffsetFromContext(m.Context()); o != 50 {
					t.Fatalf("0-50 has offset %d", o)
				}
				continue // never acked
			}
			m.Ack()
		}
		if err := s.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		got, _ := committed(t, c, group, topic)
		if got[0] != 50 || got[1] != 100 {
			t.Fatalf("committed %v, want p0 50 and p1 100", got)
		}

		_, ch2 := newConcurrentSub(t, c, topic, kafka.ConcurrentSubscriberConfig{ConsumerGroup: group})
		m := receive(t, ch2, 20*time.Second)
		if m.UUID != "0-50" || string(m.Payload) != "payload-0-50" {
			t.Fatalf("first redelivered message %s %q, want 0-50", m.UUID, m.Payload)
		}
		m.Ack()
		for i := 51; i < 100; i++ { // the acked tail of p0 comes again (at-least-once); p1 does not
			if m := receive(t, ch2, 10*time.Second); m.UUID != fmt.Sprintf("0-%d", i) {
				t.Fatalf("redelivered %s, want 0-%d", m.UUID, i)
			} else {
				m.Ack()
			}
		}
		select {
		case m := <-ch2:
			t.Fatalf("unexpected message %s", m.UUID)
		case <-time.After(300 * time.Millisecond):
		}
	})
}

func TestConcurrentSubscriberNackRedelivers(t *testing.T) {
	eachCluster(t, func(t *testing.T, c testkafka.Cluster) {
		topic := testkafka.CreateTopic(t, c, "csub_nack", 1)
		group := topic + ".g"
		produceNumbered(t, c, topic, 1, 5)
		s, ch := newConcurrentSub(t, c, topic, kafka.ConcurrentSubscriberConfig{ConsumerGroup: group, NackResendSleep: 50 * time.Millisecond})
		nacked := 0
		acked := map[string]bool{}
		for len(acked) < 5 {
			m := receive(t, ch, 20*time.Second)
			if m.UUID == "0-2" && nacked < 2 {
				nacked++
				m.Nack()
				continue
			}
			if m.Metadata.Get("k") != "v" || string(m.Payload) != "payload-"+m.UUID {
				t.Fatalf("message %s: metadata %v payload %q", m.UUID, m.Metadata, m.Payload)
			}
			if o, _ := kafka.OffsetFromContext(m.Context()); fmt.Sprintf("0-%d", o) != m.UUID {
				t.Fatalf("message %s has offset %d", m.UUID, o)
			}
			if acked[m.UUID] {
				t.Fatalf("%s delivered again after its ack", m.UUID)
			}
			acked[m.UUID] = true
			m.Ack()
		}
		if nacked != 2 {
			t.Fatalf("nacked %d times", nacked)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if got, _ := committed(t, c, group, topic); got[0] != 5 {
			t.Fatalf("committed %v, want 5", got)
		}
	})
}

func TestConcurrentSubscriberMaxInFlight(t *testing.T) {
	eachCluster(t, func(t *testing.T, c testkafka.Cluster) {
		const maxInFlight, parts, per = 10, 3, 100
		topic := testkafka.CreateTopic(t, c, "csub_cap", parts)
		produceNumbered(t, c, topic, parts, per)
		_, ch := newConcurrentSub(t, c, topic, kafka.ConcurrentSubscriberConfig{ConsumerGroup: topic + ".g", MaxInFlightPerPartition: maxInFlight})

		// Without acks, exactly the cap of each partition arrives.
		var held []*message.Message
		perPart := map[int32]int{}
		held = append(held, receive(t, ch, 20*time.Second))
	quiet:
		for {
			select {
			case m := <-ch:
				held = append(held, m)
			case <-time.After(time.Second):
				break quiet
			}
		}
		for _, m := range held {
			p, _ := kafka.PartitionFromContext(m.Context())
			perPart[p]++
		}
		for p := range int32(parts) {
			if perPart[p] != maxInFlight {
				t.Fatalf("unacked delivered per partition %v, want %d each", perPart, maxInFlight)
			}
		}

		// Acking slowly and concurrently, never more than the cap is unacked.
		var unacked [parts]atomic.Int32
		var maxSeen atomic.Int32
		ack := func(m *message.Message) {
			p, _ := kafka.PartitionFromContext(m.Context())
			time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
			unacked[p].Add(-1)
			m.Ack()
		}
		for _, m := range held {
			p, _ := kafka.PartitionFromContext(m.Context())
			unacked[p].Add(1)
		}
		for _, m := range held {
			go ack(m)
		}
		for n := len(held); n < parts*per; n++ {
			m := receive(t, ch, 20*time.Second)
			p, _ := kafka.PartitionFromContext(m.Context())
			if u := unacked[p].Add(1); u > maxSeen.Load() {
				maxSeen.Store(u)
			}
			go ack(m)
		}
		if m := maxSeen.Load(); m > maxInFlight {
			t.Fatalf("%d unacked messages of one partition delivered, cap %d", m, maxInFlight)
		}
	})
}

func TestConcurrentSubscriberThroughput(t *testing.T) {
	c := testkafka.Embedded(t)
	const parts, per = 12, 50_000 / 12
	topic := testkafka.CreateTopic(t, c, "csub_rate", parts)
	produceNumbered(t, c, topic, parts, per)
	start := time.Now()
	s, ch := newConcurrentSub(t, c, topic, kafka.ConcurrentSubscriberConfig{ConsumerGroup: topic + ".g"})
	for range parts * per {
		receive(t, ch, 20*time.Second).Ack()
	}
	el := time.Since(start)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d messages in %s: %.0f messages/s (immediate acks, embedded broker, including group join)",
		parts*per, el.Round(time.Millisecond), float64(parts*per)/el.Seconds())
}

func TestConcurrentSubscriberConfig(t *testing.T) {
	if _, err := kafka.NewConcurrentSubscriber(kafka.Config{Brokers: []string{"x:1"}}, kafka.ConcurrentSubscriberConfig{}, quietLog()); err == nil {
		t.Fatal("no error without a consumer group")
	}
	if _, err := kafka.NewConcurrentSubscriber(kafka.Config{Brokers: []string{"x:1"}}, kafka.ConcurrentSubscriberConfig{ConsumerGroup: "g", MaxInFlightPerPartition: -1}, quietLog()); err == nil {
		t.Fatal("no error for a negative cap")
	}
}

func TestConcurrentSubscriberSessionConfig(t *testing.T) {
	for _, sc := range []kafka.ConcurrentSubscriberConfig{
		{ConsumerGroup: "g", SessionTimeout: -time.Second},
		{ConsumerGroup: "g", SessionTimeout: 6 * time.Second, HeartbeatInterval: 6 * time.Second},
	} {
		if _, err := kafka.NewConcurrentSubscriber(kafka.Config{Brokers: []string{"x:1"}}, sc, quietLog()); err == nil {
			t.Errorf("%+v accepted", sc)
		}
	}
}

// TestConcurrentSubscriberWaiting: every assigned partition is reported, with the record
// timestamp of its oldest record not yet acked, or the zero time once all are acked; the
// record key is in each message's context.
func TestConcurrentSubscriberWaiting(t *testing.T) {
	eachCluster(t, func(t *testing.T, c testkafka.Cluster) {
		topic := testkafka.CreateTopic(t, c, "csub_waiting", 3)
		old := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
		prod := newProducer(t, c, kgo.RecordPartitioner(kgo.ManualPartitioner()))
		recs := []*kgo.Record{
			{Topic: topic, Partition: 1, Key: []byte("k-old"), Value: []byte("a"), Timestamp: old},
			{Topic: topic, Partition: 1, Key: []byte("k-new"), Value: []byte("b"), Timestamp: old.Add(30 * time.Second)},
		}
		if err := prod.ProduceSync(ctxT(t, 20*time.Second), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		s, ch := newConcurrentSub(t, c, topic, kafka.ConcurrentSubscriberConfig{ConsumerGroup: topic + ".g"})
		first, second := receive(t, ch, 30*time.Second), receive(t, ch, 30*time.Second)
		if string(first.Payload) != "a" {
			first, second = second, first
		}
		if k, ok := kafka.KeyFromContext(first.Context()); !ok || string(k) != "k-old" {
			t.Fatalf("key %q, %v", k, ok)
		}
		w := s.Waiting()
		if len(w) != 3 || !w[1].Equal(old) || !w[0].IsZero() || !w[2].IsZero() {
			t.Fatalf("waiting with two records in flight: %v, want partition 1 since %v and the others idle", w, old)
		}
		first.Ack()
		eventuallyKafka(t, 5*time.Second, "the newer record as the oldest waiting", func() bool { return s.Waiting()[1].Equal(old.Add(30 * time.Second)) })
		second.Ack()
		eventuallyKafka(t, 5*time.Second, "nothing waiting", func() bool { return s.Waiting()[1].IsZero() })
	})
}

func eventuallyKafka(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestConcurrentSubscriberRebalance(t *testing.T) {
	eachCluster(t, func(t *testing.T, c testkafka.Cluster) {
		const parts, per = 6, 200
		topic := testkafka.CreateTopic(t, c, "csub_rebalance", parts)
		group := topic + ".g"
		produceNumbered(t, c, topic, parts, per)
		var mu sync.Mutex
		seen := map[string]bool{}
		var byA, byB atomic.Int64
		consume := func(ch <-chan *message.Message, slow time.Duration, n *atomic.Int64) {
			for m := range ch {
				n.Add(1)
				time.Sleep(slow)
				mu.Lock()
				seen[m.UUID] = true
				mu.Unlock()
				m.Ack()
			}
		}
		a, chA := newConcurrentSub(t, c, topic, kafka.ConcurrentSubscriberConfig{ConsumerGroup: group, MaxInFlightPerPartition: 4})
		doneA := make(chan struct{})
		go func() { defer close(doneA); consume(chA, time.Millisecond, &byA) }()
		time.Sleep(200 * time.Millisecond) // a has partitions and messages in flight
		b, chB := newConcurrentSub(t, c, topic, kafka.ConcurrentSubscriberConfig{ConsumerGroup: group})
		doneB := make(chan struct{})
		go func() { defer close(doneB); consume(chB, 0, &byB) }()

		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			n := len(seen)
			mu.Unlock()
			if n == parts*per {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("received %d of %d", n, parts*per)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err := a.Close(); err != nil {
			t.Logf("close a: %v", err) // a may have lost partitions; b's commits count
		}
		<-doneA
		time.Sleep(500 * time.Millisecond) // b commits what it got
		if err := b.Close(); err != nil {
			t.Fatalf("close b: %v", err)
		}
		<-doneB
		t.Logf("a received %d, b %d", byA.Load(), byB.Load())
		if byB.Load() == 0 {
			t.Fatal("the second member got nothing: no rebalance")
		}
		got, end := committed(t, c, group, topic)
		for p, e := range end {
			if got[p] != e {
				t.Errorf("partition %d: committed %d, end %d", p, got[p], e)
			}
		}
	})
}
